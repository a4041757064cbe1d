import { expect } from 'chai';
import { SCSI_CONTROLLER_GUIDS } from '../../../src/devices/resource-paths.js';
import type { HcsPart } from '../../../src/recovery/parts.js';
import { partsFromSimulatorState } from '../../support/simulator-parts.js';
import type { ContainerRecord, LeaseRecord } from '../../../src/recovery/journal-format.js';
import { derivedParts, planReconcile, type ReconcilePlan } from '../../../src/recovery/reconcile.js';

// ---- records (what the journal says)
const scsiLayer: LeaseRecord = {
  id: 1,
  kind: 'scsi',
  owner: 'c1',
  request: { hostPath: '/l/big/layer.vhd', readOnly: true, mount: { options: ['ro'] } },
  value: { controller: 0, lun: 0, hostPath: '/l/big/layer.vhd', readOnly: true, type: 'VirtualDisk', guestPath: '/run/mounts/scsi/m0' },
};
const vpmemLayer: LeaseRecord = {
  id: 2,
  kind: 'vpmem',
  owner: 'c1',
  request: { hostPath: '/l/base/layer.vhd' },
  value: { device: 0, hostPath: '/l/base/layer.vhd', guestPath: '/run/layers/p0' },
};
const mapped: LeaseRecord = {
  id: 3,
  kind: 'vpmem',
  owner: 'c1',
  request: { hostPath: '/l/mid/layer.vhd' },
  value: { device: 1, offset: 1048576, size: 4096, hostPath: '/l/mid/layer.vhd', guestPath: '/run/layers/p1-1048576-4096' },
};
const plan9: LeaseRecord = {
  id: 4,
  kind: 'plan9',
  owner: 'c1',
  request: { hostPath: '/data', readOnly: false },
  value: { name: '3', hostPath: '/data', readOnly: false, mountPath: '/run/mounts/plan9/3', guestPath: '/run/mounts/plan9/3' },
};
const combined: LeaseRecord = {
  id: 5,
  kind: 'combined-layers',
  owner: 'c1',
  request: { ContainerRootPath: '/run/gcs/c/c1/rootfs', Layers: [] },
  value: { ContainerRootPath: '/run/gcs/c/c1/rootfs' },
};
const uvmDisk: LeaseRecord = {
  id: 6,
  kind: 'scsi',
  request: { hostPath: '/d/tools.vhdx', readOnly: true },
  value: { controller: 0, lun: 1, hostPath: '/d/tools.vhdx', readOnly: true, type: 'VirtualDisk' },
};
const c1: ContainerRecord = { id: 'c1', rootfsPath: '/run/gcs/c/c1/rootfs', held: [], mounts: [], nextMountIndex: 0 };

// ---- parts (what HCS says)
const part = (key: string, kind: HcsPart['kind'], settings: HcsPart['settings']): HcsPart => ({
  key,
  kind,
  half: ['scsi-mount', 'vpmem-mount', 'plan9-mount', 'guest-directory', 'combined-layers'].includes(kind) ? 'guest' : 'host',
  settings,
});
const P = {
  scsi00: part('scsi:0:0', 'scsi-attachment', { Type: 'VirtualDisk', Path: '/l/big/layer.vhd', ReadOnly: true, Controller: 0, Lun: 0 }),
  mountM0: part('mount:/run/mounts/scsi/m0', 'scsi-mount', { MountPath: '/run/mounts/scsi/m0', Lun: 0, ReadOnly: true, Options: ['ro'] }),
  vpmem0: part('vpmem:0', 'vpmem-device', { HostPath: '/l/base/layer.vhd', ReadOnly: true, ImageFormat: 'Vhd1', DeviceNumber: 0 }),
  vpmemMount0: part('mount:/run/layers/p0', 'vpmem-mount', { MountPath: '/run/layers/p0' }),
  mapping: part('vpmem:1@1048576', 'vpmem-mapping', { HostPath: '/l/mid/layer.vhd', ImageFormat: 'Vhd1', DeviceNumber: 1, Offset: 1048576 }),
  mappingMount: part('mount:/run/layers/p1-1048576-4096', 'vpmem-mount', { MountPath: '/run/layers/p1-1048576-4096', DeviceNumber: 1 }),
  share3: part('plan9:3', 'plan9-share', { Name: '3', AccessName: '3', Path: '/data', Port: 564, Flags: 4 }),
  share3Mount: part('mount:/run/mounts/plan9/3', 'plan9-mount', { MountPath: '/run/mounts/plan9/3', ShareName: '3', Port: 564 }),
  combined: part('combined:/run/gcs/c/c1/rootfs', 'combined-layers', { ContainerRootPath: '/run/gcs/c/c1/rootfs' }),
  scsi01: part('scsi:0:1', 'scsi-attachment', { Type: 'VirtualDisk', Path: '/d/tools.vhdx', ReadOnly: true, Controller: 0, Lun: 1 }),
};
const ALL_C1 = [P.scsi00, P.mountM0, P.vpmem0, P.vpmemMount0, P.mapping, P.mappingMount, P.share3, P.share3Mount, P.combined];
const C1_RECORDS = [scsiLayer, vpmemLayer, mapped, plan9, combined];

function plan(records: LeaseRecord[], parts: HcsPart[], containers: ContainerRecord[] = [c1], state = 'Running'): ReconcilePlan {
  return planReconcile({ os: 'linux', records, containers, hcs: { state, parts } });
}
const ids = (rs: LeaseRecord[]): number[] => rs.map((r) => r.id);
const keys = (ps: HcsPart[]): string[] => ps.map((p) => p.key);

describe('reconcile planner', () => {
  it('adopts every record whose parts are all present, and removes nothing else', () => {
    const p = plan([...C1_RECORDS, uvmDisk], [...ALL_C1, P.scsi01]);
    expect(p.inventory).to.equal('journal');
    expect(ids(p.adopt)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect(p.remove).to.deep.equal([]);
    expect(p.forget).to.deep.equal([]);
    expect(p.rollback).to.deep.equal([]);
    expect(p.containers.adopt.map((c) => c.id)).to.deep.equal(['c1']);
  });

  it('is independent of the order of records and parts', () => {
    const a = plan([...C1_RECORDS].reverse(), [...ALL_C1].reverse());
    const b = plan(C1_RECORDS, ALL_C1);
    expect(a).to.deep.equal(b);
  });

  // One row per way HCS and the journal can disagree after a crash.
  const table: { name: string; records: LeaseRecord[]; parts: HcsPart[]; adopt: number[]; remove: string[]; forget: [number, string[]][] }[] = [
    {
      name: 'crash after the HCS calls of an acquire, before its journal write: present but unknown → removed, guest first',
      records: [vpmemLayer],
      parts: [P.vpmem0, P.vpmemMount0, P.scsi00, P.mountM0],
      adopt: [2],
      remove: ['mount:/run/mounts/scsi/m0', 'scsi:0:0'],
      forget: [],
    },
    {
      name: 'crash between the host and guest halves of an acquire: the host half alone is removed',
      records: [],
      parts: [P.scsi00],
      adopt: [],
      remove: ['scsi:0:0'],
      forget: [],
    },
    {
      name: 'crash after a record was dropped, before its removal: removed (overlay, then mounts, then host halves)',
      records: [],
      parts: ALL_C1,
      adopt: [],
      remove: [
        'combined:/run/gcs/c/c1/rootfs',
        'mount:/run/layers/p0',
        'mount:/run/layers/p1-1048576-4096',
        'mount:/run/mounts/plan9/3',
        'mount:/run/mounts/scsi/m0',
        'plan9:3',
        'scsi:0:0',
        'vpmem:0',
        'vpmem:1@1048576',
      ],
      forget: [],
    },
    {
      name: 'crash in the middle of a removal (guest half gone, host half left): record forgotten, host half removed',
      records: [plan9],
      parts: [P.share3],
      adopt: [],
      remove: ['plan9:3'],
      forget: [[4, ['mount:/run/mounts/plan9/3']]],
    },
    {
      name: 'journaled but gone entirely: forgotten, nothing removed',
      records: [scsiLayer, vpmemLayer],
      parts: [P.vpmem0, P.vpmemMount0],
      adopt: [2],
      remove: [],
      forget: [[1, ['scsi:0:0', 'mount:/run/mounts/scsi/m0']]],
    },
    {
      name: 'a slot that holds another disk than the recorded one is not adopted (and is removed)',
      records: [scsiLayer],
      parts: [{ ...P.scsi00, settings: { ...P.scsi00.settings, Path: '/other.vhdx' } }, P.mountM0],
      adopt: [],
      remove: ['mount:/run/mounts/scsi/m0', 'scsi:0:0'],
      forget: [[1, ['scsi:0:0']]],
    },
    {
      name: 'a guest mount on another LUN than recorded is not the recorded mount',
      records: [scsiLayer],
      parts: [P.scsi00, { ...P.mountM0, settings: { ...P.mountM0.settings, Lun: 5 } }],
      adopt: [],
      remove: ['mount:/run/mounts/scsi/m0', 'scsi:0:0'],
      forget: [[1, ['mount:/run/mounts/scsi/m0']]],
    },
    {
      name: 'a read-write attachment does not satisfy a read-only record',
      records: [uvmDisk],
      parts: [{ ...P.scsi01, settings: { ...P.scsi01.settings, ReadOnly: false } }],
      adopt: [],
      remove: ['scsi:0:1'],
      forget: [[6, ['scsi:0:1']]],
    },
    {
      name: 'a Plan9 mount of another share is not the recorded mount',
      records: [plan9],
      parts: [P.share3, { ...P.share3Mount, settings: { ...P.share3Mount.settings, ShareName: '9' } }],
      adopt: [],
      remove: ['mount:/run/mounts/plan9/3', 'plan9:3'],
      forget: [[4, ['mount:/run/mounts/plan9/3']]],
    },
    {
      name: 'a VPMEM device holding another layer is not adopted',
      records: [vpmemLayer],
      parts: [{ ...P.vpmem0, settings: { ...P.vpmem0.settings, HostPath: '/l/other' } }, P.vpmemMount0],
      adopt: [],
      remove: ['mount:/run/layers/p0', 'vpmem:0'],
      forget: [[2, ['vpmem:0']]],
    },
    {
      name: 'a part of the wrong kind under the expected key does not match',
      records: [vpmemLayer],
      parts: [P.vpmem0, { ...P.mountM0, key: 'mount:/run/layers/p0' }],
      adopt: [],
      remove: ['mount:/run/layers/p0', 'vpmem:0'],
      forget: [[2, ['mount:/run/layers/p0']]],
    },
    {
      name: 'a part shared by an adopted and a forgotten record stays (claimed by the adopted one)',
      records: [scsiLayer, { ...scsiLayer, id: 9, owner: 'c2', value: { ...scsiLayer.value, guestPath: '/run/mounts/scsi/m7' } }],
      parts: [P.scsi00, P.mountM0],
      adopt: [1],
      remove: [],
      forget: [[9, ['mount:/run/mounts/scsi/m7']]],
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const p = plan(row.records, row.parts);
      expect(ids(p.adopt), 'adopt').to.deep.equal(row.adopt);
      expect(keys(p.remove), 'remove').to.deep.equal(row.remove);
      expect(p.forget.map((f) => [f.record.id, f.missing]), 'forget').to.deep.equal(row.forget);
    });
  }

  it('an EVD record matches the path HCS got (without the evd:// prefix)', () => {
    const evd: LeaseRecord = {
      id: 1,
      kind: 'scsi',
      request: { hostPath: 'evd://space/disk-1', readOnly: false, type: 'ExtensibleVirtualDisk' },
      value: { controller: 1, lun: 3, hostPath: 'evd://space/disk-1', readOnly: false, type: 'ExtensibleVirtualDisk' },
    };
    const p = plan([evd], [part('scsi:1:3', 'scsi-attachment', { Type: 'ExtensibleVirtualDisk', Path: 'disk-1', ExtensibleVirtualDiskType: 'space' })]);
    expect(ids(p.adopt)).to.deep.equal([1]);
  });

  it('WCOW: VSMB shares by name and path (a single file is its directory share), pipes by path, mounts by LUN', () => {
    const dirShare: LeaseRecord = {
      id: 1,
      kind: 'vsmb',
      request: { hostPath: 'C:\\layers\\base\\', readOnly: true, layer: true },
      value: { name: 's1', hostPath: 'C:\\layers\\base\\', readOnly: true, sharePath: 'S\\s1', guestPath: 'S\\s1' },
    };
    const fileShare: LeaseRecord = {
      id: 2,
      kind: 'vsmb',
      request: { hostPath: 'C:\\cfg\\app.conf', readOnly: true },
      value: { name: 's2', hostPath: 'C:\\cfg\\app.conf', readOnly: true, sharePath: 'S\\s2', guestPath: 'S\\s2\\app.conf' },
    };
    const pipe: LeaseRecord = { id: 3, kind: 'pipe', request: { hostPath: '\\\\.\\pipe\\p1' }, value: { hostPath: '\\\\.\\pipe\\p1', guestPath: 'x' } };
    const scratch: LeaseRecord = {
      id: 4,
      kind: 'scsi',
      request: { hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, mount: {} },
      value: { controller: 0, lun: 0, hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, type: 'VirtualDisk', guestPath: 'c:\\mounts\\scsi\\m0' },
    };
    const parts = [
      part('vsmb:s1', 'vsmb-share', { Name: 's1', Path: 'C:\\layers\\base' }),
      part('vsmb:s2', 'vsmb-share', { Name: 's2', Path: 'C:\\cfg', AllowedFiles: ['C:\\cfg\\app.conf'] }),
      part('vsmb:s3', 'vsmb-share', { Name: 's3', Path: 'C:\\idle' }),
      part('pipe:\\\\.\\pipe\\p1', 'mapped-pipe', { Name: '\\\\.\\pipe\\p1' }),
      part('scsi:0:0', 'scsi-attachment', { Type: 'VirtualDisk', Path: 'C:\\s\\sandbox.vhdx', Controller: 0, Lun: 0 }),
      part('mount:c:\\mounts\\scsi\\m0', 'scsi-mount', { ContainerPath: 'c:\\mounts\\scsi\\m0', Lun: 0 }),
    ];
    const p = planReconcile({ os: 'windows', records: [dirShare, fileShare, pipe, scratch], containers: [], hcs: { state: 'Running', parts } });
    expect(ids(p.adopt)).to.deep.equal([1, 2, 3, 4]);
    expect(keys(p.remove)).to.deep.equal(['vsmb:s3']);
  });

  it('the parts a version-1 journal is taken to have (derivedParts) are exactly what its records claim', () => {
    const parts = C1_RECORDS.flatMap((r) => derivedParts(r, 'linux'));
    const p = plan(C1_RECORDS, parts);
    expect(ids(p.adopt)).to.deep.equal([1, 2, 3, 4, 5]);
    expect(p.remove).to.deep.equal([]);
    expect(p.forget).to.deep.equal([]);
  });

  it('a system that is not running holds nothing: every record is forgotten, nothing is removed', () => {
    for (const state of ['Created', 'Stopped']) {
      const p = plan(C1_RECORDS, ALL_C1, [c1], state);
      expect(p.inventory).to.equal('not-running');
      expect(p.adopt).to.deep.equal([]);
      expect(p.remove).to.deep.equal([]);
      expect(p.forget.map((f) => f.record.id)).to.deep.equal([1, 2, 3, 4, 5]);
      expect(p.containers.forget.map((c) => c.id)).to.deep.equal(['c1']);
    }
  });

  it('rolls back the adopted leases of a container whose allocation never completed (no container record)', () => {
    const p = plan([...C1_RECORDS, uvmDisk], [...ALL_C1, P.scsi01], []);
    expect(ids(p.adopt)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect(ids(p.rollback)).to.deep.equal([1, 2, 3, 4, 5]);
    expect(p.containers.adopt).to.deep.equal([]);
  });

  it('forgets a container record none of whose leases is adopted', () => {
    const p = plan([], ALL_C1);
    expect(p.containers).to.deep.equal({ adopt: [], forget: [c1] });
  });
});

describe('HCS inventory from SimulatorState', () => {
  const state = {
    Devices: {
      Scsi: {
        [SCSI_CONTROLLER_GUIDS[0]]: { Attachments: { '0': { Type: 'VirtualDisk', Path: '/boot.vhdx' }, '2': { Type: 'VirtualDisk', Path: '/a.vhdx', ReadOnly: true } } },
        'ffffffff-0000-0000-0000-000000000000': { Attachments: { '0': { Type: 'VirtualDisk', Path: '/foreign.vhdx' } } },
      },
      VirtualSmb: { Shares: [] },
      VirtualPMem: { Devices: { '0': { HostPath: '/l.vhd', ImageFormat: 'Vhd1', Mappings: {} }, '1': { Mappings: { '4096': { HostPath: '/m.vhd', ImageFormat: 'Vhd1' } } } } },
      Plan9: { Shares: [{ Name: '0', Path: '/d', Port: 564 }] },
      MappedPipes: [],
    },
    Guest: {
      MappedVirtualDisks: [{ MountPath: '/run/mounts/scsi/m0', Lun: 2 }],
      VPMemDevices: [{ MountPath: '/run/layers/p0' }],
      MappedDirectories: [{ MountPath: '/run/mounts/plan9/0', ShareName: '0', Port: 564 }],
      CombinedLayers: [{ ContainerRootPath: '/run/gcs/c/x/rootfs', Layers: [] }],
    },
    VmAccess: [],
    HotAdded: 8,
  };

  it('lists one part per host half and guest entry, skipping reserved slots and unknown controllers', () => {
    const parts = partsFromSimulatorState(state, 'linux', [0]);
    expect(parts.map((p) => [p.key, p.kind, p.half])).to.deep.equal([
      ['scsi:0:2', 'scsi-attachment', 'host'],
      ['vpmem:0', 'vpmem-device', 'host'],
      ['vpmem:1@4096', 'vpmem-mapping', 'host'],
      ['plan9:0', 'plan9-share', 'host'],
      ['mount:/run/mounts/scsi/m0', 'scsi-mount', 'guest'],
      ['mount:/run/layers/p0', 'vpmem-mount', 'guest'],
      ['mount:/run/mounts/plan9/0', 'plan9-mount', 'guest'],
      ['combined:/run/gcs/c/x/rootfs', 'combined-layers', 'guest'],
    ]);
    expect(parts[0]!.settings).to.deep.equal({ Type: 'VirtualDisk', Path: '/a.vhdx', ReadOnly: true, Controller: 0, Lun: 2 });
    expect(parts[2]!.settings).to.deep.equal({ HostPath: '/m.vhd', ImageFormat: 'Vhd1', DeviceNumber: 1, Offset: 4096 });
  });

  it('tolerates missing sections (an empty inventory)', () => {
    expect(partsFromSimulatorState({}, 'linux')).to.deep.equal([]);
  });
});
