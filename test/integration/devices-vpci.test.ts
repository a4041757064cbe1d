// Assigned devices (vPCI) through the real UtilityVm, the FFI binding and the native simulator.
import { expect } from 'chai';
import { allocateContainer, planContainer } from '../../src/containers/allocate-container.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import type { OciSpec } from '../../src/oci/oci-spec.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { expectCode } from '../fakes/expect-code.js';
import { testGuestDelivery } from '../support/guest-delivery.js';
import { expectedWire, failGuestHalf, traceDuring, wireRequests, type HostHalf, type WireRequest } from '../support/guest-halves.js';
import { disposeUvms, expectEmpty, expectInSync, hostFs, modifyCalls, simulatorState, startUvm } from './devices-support.js';

const GPU = 'PCIP\\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\\6&1a2b3c4d&0&0';
const NIC = 'PCIP\\VEN_15B3&DEV_101C&SUBSYS_000715B3&REV_00\\5&2c3d4e5f&0&0';
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function spec(devices: unknown[]): OciSpec {
  return { root: { path: '/vpci-it/rootdir' }, windows: { devices: devices as never } };
}

/** The device requests the simulator traced for `uvm` while `fn` ran (the trace file; nothing faked), without their results. */
async function traced<T>(uvm: UtilityVm, fn: () => Promise<T>): Promise<{ result: T; docs: Omit<WireRequest, 'hr'>[] }> {
  const { result, trace } = await traceDuring(fn);
  return { result, docs: wireRequests(trace, uvm.id).map(({ hr: _hr, ...w }) => w) };
}

/** The vPCI requests (host halves on VirtualPci, guest VPCIDevice requests), in trace order. */
const vpciDocs = (docs: Omit<WireRequest, 'hr'>[], vmbusGuid?: string): Omit<WireRequest, 'hr'>[] =>
  docs.filter((d) => (d.host?.ResourcePath?.includes('/VirtualPci/') || d.guest?.ResourceType === 'VPCIDevice') && (vmbusGuid === undefined || JSON.stringify(d).includes(vmbusGuid)));

/** A host-only request on the wire. */
const hostOnly = (host: HostHalf): Omit<WireRequest, 'hr'> => ({ fn: 'HcsModifyComputeSystem', host });

describe('integration: assigned devices (vPCI) on the simulator', function () {
  this.timeout(60000);
  afterEach(disposeUvms);
  before(() => {
    hostFs.dir('/vpci-it/rootdir');
  });

  it('LCOW: a GPU and a NIC get hcsshim\'s documents and VMBus GUIDs, are shared by refcount and removed once at the end', async () => {
    const uvm = await startUvm({ os: 'linux' });
    const { result: first, docs } = await traced(uvm, () =>
      allocateContainer(uvm, spec([{ id: GPU, idType: 'gpu' }, { id: `${NIC}/2`, idType: 'vpci-instance-id' }]), { containerId: 'a' }),
    );
    const [gpu, nic] = first.assignedDevices;
    expect(gpu!.vmbusGuid).to.match(GUID);
    expect(nic!.vmbusGuid).to.match(GUID);
    expect([gpu!.instancePath, gpu!.virtualFunction, nic!.instancePath, nic!.virtualFunction]).to.deep.equal([GPU, 0, NIC, 2]);
    expect(first.spec.windows!.devices).to.deep.equal([
      { id: gpu!.vmbusGuid, idType: 'gpu' },
      { id: nic!.vmbusGuid, idType: 'vpci-instance-id' },
    ]);
    // hcsshim's documents: one combined modify (HCS-owned), or host half then guest half (bridge).
    expect(vpciDocs(docs)).to.have.length(testGuestDelivery === 'bridge' ? 4 : 2);
    expect(vpciDocs(docs, gpu!.vmbusGuid)).to.deep.equal(
      expectedWire(
        { ResourcePath: `VirtualMachine/Devices/VirtualPci/${gpu!.vmbusGuid}`, RequestType: 'Add', Settings: { Functions: [{ DeviceInstancePath: GPU }] } },
        { RequestType: 'Add', ResourceType: 'VPCIDevice', Settings: { VMBusGUID: gpu!.vmbusGuid } },
      ),
    );
    expect(vpciDocs(docs, nic!.vmbusGuid)).to.deep.equal(
      expectedWire(
        { ResourcePath: `VirtualMachine/Devices/VirtualPci/${nic!.vmbusGuid}`, RequestType: 'Add', Settings: { Functions: [{ DeviceInstancePath: NIC, VirtualFunction: 2 }] } },
        { RequestType: 'Add', ResourceType: 'VPCIDevice', Settings: { VMBusGUID: nic!.vmbusGuid } },
      ),
    );
    const state = await simulatorState(uvm);
    expect(Object.keys(state.Devices.VirtualPci).sort()).to.deep.equal([gpu!.vmbusGuid, nic!.vmbusGuid].sort());
    expect(Object.values(state.Devices.VirtualPci).every((d) => d.Guest)).to.equal(true);
    await expectInSync(uvm);

    // A second container with the same GPU: the plan says shared; no HCS call; same GUID.
    const plan = await planContainer(uvm, spec([{ id: GPU, idType: 'vpci' }]), { containerId: 'b' });
    expect(plan.devices).to.deep.equal([{ kind: 'vpci', index: 0, idType: 'vpci', id: GPU, instancePath: GPU, virtualFunction: 0, shared: true }]);
    const calls = modifyCalls(uvm.id);
    const second = await allocateContainer(uvm, spec([{ id: GPU, idType: 'vpci' }]), { containerId: 'b' });
    expect(second.spec.windows!.devices).to.deep.equal([{ id: gpu!.vmbusGuid, idType: 'vpci' }]);
    // No HCS call: the device and the root share are both shared.
    expect(modifyCalls(uvm.id) - calls).to.equal(0);
    expect(uvm.vpci.describe().find((d) => d.hostPath === GPU)!.refCount).to.equal(2);

    // The GPU stays for b; the NIC is removed, host-only.
    const released = await traced(uvm, () => first.resources.release());
    expect(vpciDocs(released.docs)).to.deep.equal([hostOnly({ ResourcePath: `VirtualMachine/Devices/VirtualPci/${nic!.vmbusGuid}`, RequestType: 'Remove' })]);
    expect(Object.keys((await simulatorState(uvm)).Devices.VirtualPci)).to.deep.equal([gpu!.vmbusGuid]);
    const last = await traced(uvm, () => second.resources.release());
    expect(vpciDocs(last.docs)).to.deep.equal([hostOnly({ ResourcePath: `VirtualMachine/Devices/VirtualPci/${gpu!.vmbusGuid}`, RequestType: 'Remove' })]);
    await expectEmpty(uvm);
  });

  it('rejects an unsupported idType (and a WCOW-only type on LCOW) naming the entry, before any HCS call', async () => {
    const uvm = await startUvm({ os: 'linux' });
    const calls = modifyCalls(uvm.id);
    const bad = await expectCode(allocateContainer(uvm, spec([{ id: GPU, idType: 'gpu' }, { id: 'x', idType: 'usb' }]), { containerId: 'c' }), 'INVALID_SPEC');
    expect(bad.details.field).to.equal('windows.devices[1]');
    expect(bad.message).to.contain('unsupported type "usb"');
    const wcowOnly = await expectCode(allocateContainer(uvm, spec([{ id: 'PCIROOT(0)#PCI(0100)', idType: 'vpci-location-path' }]), { containerId: 'c' }), 'INVALID_SPEC');
    expect(wcowOnly.details.field).to.equal('windows.devices[0]');
    await expectCode(planContainer(uvm, spec([{ id: 5, idType: 'gpu' }]), { containerId: 'c' }), 'INVALID_SPEC');
    expect(modifyCalls(uvm.id)).to.equal(calls);
    await expectEmpty(uvm);
  });

  it('a device the host does not have fails the allocation and releases everything else', async () => {
    const uvm = await startUvm({ os: 'linux' });
    const err = await expectCode(allocateContainer(uvm, spec([{ id: GPU, idType: 'gpu' }, { id: 'PCIP\\NOT-A-DEVICE', idType: 'gpu' }]), { containerId: 'd' }), 'HCS_ERROR');
    expect(err.details.field).to.equal('windows.devices[1]');
    await expectEmpty(uvm);
  });

  it('one function is assigned to one VM only; a failed guest add leaves nothing on the host', async () => {
    const one = await startUvm({ os: 'linux' });
    const two = await startUvm({ os: 'linux' });
    const lease = await one.vpci.acquire({ instancePath: GPU });
    await expectCode(two.vpci.acquire({ instancePath: GPU }), 'HCS_ERROR');
    failGuestHalf({ nth: 1 });
    await expectCode(two.vpci.acquire({ instancePath: NIC }), 'HCS_ERROR');
    configureSimulator({ clearFaults: true });
    await expectEmpty(two);
    await lease.release();
    await expectEmpty(one);
  });

  it('WCOW: host-only assignment, the VMBus node id for the shim, container-document devices passed through', async () => {
    const uvm = await startUvm({ os: 'windows', vsmbNoDirectMap: true });
    hostFs.dir('C:\\vpci-it\\l\\base').file('C:\\vpci-it\\w\\sandbox.vhdx', 1 << 30);
    const devices = [
      { id: GPU, idType: 'gpu' },
      { id: 'PCIROOT(0)#PCI(0100)', idType: 'vpci-location-path' },
      { id: '5B45201D-F2F2-4F3B-85BB-30FF1F953599', idType: 'class' },
    ];
    const wcowSpec: OciSpec = { windows: { layerFolders: ['C:\\vpci-it\\l\\base', 'C:\\vpci-it\\w'], devices } };
    const { result, docs } = await traced(uvm, () => allocateContainer(uvm, wcowSpec, { containerId: 'w' }));
    const [gpu] = result.assignedDevices;
    expect(vpciDocs(docs)).to.deep.equal([
      hostOnly({ ResourcePath: `VirtualMachine/Devices/VirtualPci/${gpu!.vmbusGuid}`, RequestType: 'Add', Settings: { Functions: [{ DeviceInstancePath: GPU }] } }),
    ]);
    expect(gpu!.vmbusNodeInstanceId).to.equal(`VMBUS\\{44c4f61d-4444-4400-9d52-802e27ede19f}\\{${gpu!.vmbusGuid}}`);
    expect(result.containerDevices).to.deep.equal([
      { Type: 'DeviceInstance', LocationPath: 'PCIROOT(0)#PCI(0100)' },
      { InterfaceClassGuid: '5B45201D-F2F2-4F3B-85BB-30FF1F953599' },
    ]);
    expect(result.spec.windows!.devices).to.deep.equal([{ id: gpu!.vmbusGuid, idType: 'gpu' }, devices[1], devices[2]]);
    await expectInSync(uvm);
    await result.resources.release();
    await expectEmpty(uvm);
  });

  it('devices in the create options are in the create document, shared by containers, and stay until the VM dies', async () => {
    const uvm = await startUvm({ os: 'linux', assignedDevices: [{ instancePath: GPU }] });
    const state = await simulatorState(uvm);
    const [guid] = Object.keys(state.Devices.VirtualPci);
    expect(state.Devices.VirtualPci[guid!]).to.deep.equal({ Settings: { Functions: [{ DeviceInstancePath: GPU }] }, Guest: false });
    expect(state.HotAdded).to.equal(0);
    const { result, docs } = await traced(uvm, () => allocateContainer(uvm, spec([{ id: GPU, idType: 'gpu' }]), { containerId: 'boot' }));
    expect(result.spec.windows!.devices).to.deep.equal([{ id: guid, idType: 'gpu' }]);
    expect(vpciDocs(docs)).to.deep.equal([]);
    await result.resources.release();
    expect(uvm.vpci.describe().map((d) => [d.slot, d.refCount])).to.deep.equal([[guid, 1]]);
    expect(Object.keys((await simulatorState(uvm)).Devices.VirtualPci)).to.deep.equal([guid]);
    await expectCode(startUvm({ os: 'linux', assignedDevices: [{ instancePath: GPU }, { instancePath: GPU }] }), 'INVALID_ARGUMENT');
  });
});
