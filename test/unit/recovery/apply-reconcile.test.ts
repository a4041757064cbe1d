// The removal half of reconcile: the documents sent for unknown parts, their order, and which
// failures count as "already gone".
import { expect } from 'chai';
import { createLogger } from '../../../src/core/logger.js';
import type { ResourceDelivery } from '../../../src/devices/guest-delivery.js';
import { SCSI_CONTROLLER_GUIDS } from '../../../src/devices/resource-paths.js';
import type { HostRequest } from '../../../src/devices/wire-requests.js';
import { HcsError } from '../../../src/hcs/hcs-error.js';
import type { GuestRequest } from '../../../src/hcs/schema.js';
import { nameCountersFromParts, removeUnknownParts } from '../../../src/recovery/apply-reconcile.js';
import { partsFromSimulatorState } from '../../support/simulator-parts.js';
import { planReconcile } from '../../../src/recovery/reconcile.js';
import { expectCode } from '../../fakes/expect-code.js';

const logger = createLogger({ level: 'silent' });
const HCS_E_INVALID_STATE = 0x80370105 | 0;
const HCS_E_NOT_FOUND = 0x80070490 | 0;

/** A delivery that records what it is asked to send, failing the requests `fail` picks. */
function recordingDelivery(fail: (doc: HostRequest | GuestRequest) => number | undefined = () => undefined) {
  const sent: string[] = [];
  const send = async (kind: 'host' | 'guest', doc: HostRequest | GuestRequest): Promise<void> => {
    sent.push(`${kind} ${JSON.stringify(doc)}`);
    const hr = fail(doc);
    if (hr !== undefined) throw new HcsError({ op: 'HcsModifyComputeSystem', hresult: hr });
  };
  const delivery: ResourceDelivery = {
    host: (r) => send('host', r),
    guest: (r) => send('guest', r),
    addCombined: () => Promise.reject(new Error('not used')),
    removeCombined: () => Promise.reject(new Error('not used')),
  };
  return { delivery, sent };
}

const lcowState = {
  Devices: {
    Scsi: { [SCSI_CONTROLLER_GUIDS[0]]: { Attachments: { '3': { Type: 'VirtualDisk', Path: '/l/x.vhd', ReadOnly: true } } } },
    VirtualSmb: { Shares: [] },
    VirtualPMem: { Devices: { '1': { Mappings: { '1048576': { HostPath: '/l/m.vhd', ImageFormat: 'Vhd1' } } } } },
    Plan9: { Shares: [{ Name: '4', AccessName: '4', Path: '/data', Port: 564, Flags: 4 }] },
    MappedPipes: [],
  },
  Guest: {
    MappedVirtualDisks: [{ MountPath: '/run/mounts/scsi/m2', Lun: 3, ReadOnly: true, Options: ['ro'] }],
    VPMemDevices: [{ MountPath: '/run/layers/p1-1048576-4096', DeviceNumber: 1, MappingInfo: { DeviceOffsetInBytes: 1048576, DeviceSizeInBytes: 4096 } }],
    MappedDirectories: [{ MountPath: '/run/mounts/plan9/4', ShareName: '4', Port: 564 }],
    CombinedLayers: [{ ContainerRootPath: '/run/gcs/c/x/rootfs', Layers: [] }],
  },
  VmAccess: [],
  HotAdded: 8,
};

describe('reconcile: removing unknown parts', () => {
  it('LCOW: overlay, then guest mounts, then unplugs, then host halves, with the managers\' documents', async () => {
    const parts = partsFromSimulatorState(lcowState, 'linux');
    const plan = planReconcile({ os: 'linux', records: [], containers: [], hcs: { state: 'Running', parts } });
    const { delivery, sent } = recordingDelivery();
    await removeUnknownParts(plan.remove, { os: 'linux', delivery, logger });
    const docs = sent.map((s) => [s.slice(0, s.indexOf(' ')), JSON.parse(s.slice(s.indexOf(' ') + 1))]);
    expect(docs.slice(0, 1)).to.deep.equal([['guest', { RequestType: 'Remove', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/run/gcs/c/x/rootfs' } }]]);
    expect(docs.slice(1, 4)).to.have.deep.members([
      [
        'guest',
        {
          RequestType: 'Remove',
          ResourceType: 'VPMemDevice',
          Settings: { DeviceNumber: 1, MountPath: '/run/layers/p1-1048576-4096', MappingInfo: { DeviceOffsetInBytes: 1048576, DeviceSizeInBytes: 4096 } },
        },
      ],
      ['guest', { RequestType: 'Remove', ResourceType: 'MappedDirectory', Settings: { MountPath: '/run/mounts/plan9/4', ShareName: '4', Port: 564 } }],
      ['guest', { RequestType: 'Remove', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/mounts/scsi/m2', Lun: 3, ReadOnly: true } }],
    ]);
    expect(docs[4]).to.deep.equal(['guest', { RequestType: 'Remove', ResourceType: 'SCSIDevice', Settings: { Lun: 3 } }]);
    expect(docs.slice(5)).to.have.deep.members([
      ['host', { ResourcePath: `VirtualMachine/Devices/Scsi/${SCSI_CONTROLLER_GUIDS[0]}/Attachments/3`, RequestType: 'Remove' }],
      ['host', { ResourcePath: 'VirtualMachine/Devices/VirtualPMem/Devices/1/Mappings/1048576', RequestType: 'Remove' }],
      ['host', { ResourcePath: 'VirtualMachine/Devices/Plan9/Shares', RequestType: 'Remove', Settings: { Name: '4', AccessName: '4', Port: 564 } }],
    ]);
    expect(docs).to.have.length(8);
  });

  it('WCOW: shares by name, pipes by path, scratch mounts by ContainerPath, no unplug', async () => {
    const state = {
      Devices: {
        Scsi: { [SCSI_CONTROLLER_GUIDS[0]]: { Attachments: { '0': { Type: 'VirtualDisk', Path: 'C:\\s\\sandbox.vhdx' } } } },
        VirtualSmb: { Shares: [{ Name: 's5', Path: 'C:\\l' }] },
        MappedPipes: [{ Name: '\\\\.\\pipe\\p' }],
      },
      Guest: { MappedVirtualDisks: [{ ContainerPath: 'c:\\mounts\\scsi\\m0', Lun: 0 }] },
    };
    const parts = partsFromSimulatorState(state, 'windows');
    const { delivery, sent } = recordingDelivery();
    await removeUnknownParts(planReconcile({ os: 'windows', records: [], containers: [], hcs: { state: 'Running', parts } }).remove, { os: 'windows', delivery, logger });
    expect(sent[0]).to.equal(`guest ${JSON.stringify({ RequestType: 'Remove', ResourceType: 'MappedVirtualDisk', Settings: { ContainerPath: 'c:\\mounts\\scsi\\m0' } })}`);
    expect(sent.slice(1).sort()).to.deep.equal(
      [
        `host ${JSON.stringify({ ResourcePath: `VirtualMachine/Devices/Scsi/${SCSI_CONTROLLER_GUIDS[0]}/Attachments/0`, RequestType: 'Remove' })}`,
        `host ${JSON.stringify({ ResourcePath: 'VirtualMachine/Devices/VirtualSmb/Shares', RequestType: 'Remove', Settings: { Name: 's5' } })}`,
        `host ${JSON.stringify({ ResourcePath: 'VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\p', RequestType: 'Remove' })}`,
      ].sort(),
    );
  });

  it('"not found" counts as removed; an unplug of an unplugged disk counts as done; anything else fails with RECOVERY_FAILED', async () => {
    const parts = partsFromSimulatorState(lcowState, 'linux');
    const remove = planReconcile({ os: 'linux', records: [], containers: [], hcs: { state: 'Running', parts } }).remove;
    const gone = recordingDelivery((d) => ('ResourceType' in d && d.ResourceType === 'SCSIDevice' ? HCS_E_INVALID_STATE : HCS_E_NOT_FOUND));
    await removeUnknownParts(remove, { os: 'linux', delivery: gone.delivery, logger });
    expect(gone.sent).to.have.length(8);

    const broken = recordingDelivery((d) => ('ResourcePath' in d && d.ResourcePath.includes('Plan9') ? 0x80004005 | 0 : undefined));
    const err = await expectCode(removeUnknownParts(remove, { os: 'linux', delivery: broken.delivery, logger }), 'RECOVERY_FAILED');
    expect((err as unknown as AggregateError).errors).to.have.length(1);
    // The other removals were still attempted.
    expect(broken.sent).to.have.length(8);
  });

  it('name counters are raised past every share name HCS reports', () => {
    const parts = [
      ...partsFromSimulatorState(lcowState, 'linux'),
      ...partsFromSimulatorState({ Devices: { VirtualSmb: { Shares: [{ Name: 's1f', Path: 'C:\\x' }, { Name: 'custom', Path: 'C:\\y' }] } } }, 'windows'),
    ];
    expect(nameCountersFromParts(parts)).to.deep.equal({ vsmb: 0x20, plan9: 5 });
    expect(nameCountersFromParts(undefined)).to.deep.equal({ vsmb: 0, plan9: 0 });
  });
});
