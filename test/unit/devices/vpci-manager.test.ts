import { expect } from 'chai';
import { resolveBootDevices, validateVpciRequest, VpciManagerImpl, vpciCreateSection } from '../../../src/devices/vpci-manager.js';
import { expectCode, expectCodeSync } from '../../fakes/expect-code.js';
import { deviceKit, silentLogger, type DeviceKit } from './device-test-kit.js';

const GPU = 'PCIP\\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\\6&1a2b3c4d&0&0';
const NIC = 'PCIP\\VEN_15B3&DEV_101C&SUBSYS_000715B3&REV_00\\5&2c3d4e5f&0&0';

function manager(kit: DeviceKit, lifecycle = kit.lifecycle, boot: Parameters<typeof resolveBootDevices>[0] = []): VpciManagerImpl {
  return new VpciManagerImpl(kit.config, kit.delivery, silentLogger, lifecycle, resolveBootDevices(boot));
}

describe('VpciManager', () => {
  it('LCOW: one combined Add per function (VF 0 omitted), shared by refcount, host-only Remove at the last release', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const vpci = manager(kit);
    const [a, b, c] = await Promise.all([
      vpci.acquire({ instancePath: GPU }),
      vpci.acquire({ instancePath: GPU }),
      vpci.acquire({ instancePath: NIC, virtualFunction: 3, propagateNumaAffinity: true }),
    ]);
    expect(a.value.vmbusGuid).to.equal(b.value.vmbusGuid);
    expect(kit.docs()).to.have.deep.members([
      {
        ResourcePath: `VirtualMachine/Devices/VirtualPci/${a.value.vmbusGuid}`,
        RequestType: 'Add',
        Settings: { Functions: [{ DeviceInstancePath: GPU }] },
        GuestRequest: { RequestType: 'Add', ResourceType: 'VPCIDevice', Settings: { VMBusGUID: a.value.vmbusGuid } },
      },
      {
        ResourcePath: `VirtualMachine/Devices/VirtualPci/${c.value.vmbusGuid}`,
        RequestType: 'Add',
        Settings: { Functions: [{ DeviceInstancePath: NIC, VirtualFunction: 3 }], PropagateNumaAffinity: true },
        GuestRequest: { RequestType: 'Add', ResourceType: 'VPCIDevice', Settings: { VMBusGUID: c.value.vmbusGuid } },
      },
    ]);
    expect(vpci.describe().map((d) => [d.hostPath, d.refCount, d.guestPath])).to.deep.equal([
      [GPU, 2, `/sys/bus/vmbus/devices/${a.value.vmbusGuid}`],
      [NIC, 1, `/sys/bus/vmbus/devices/${c.value.vmbusGuid}`],
    ]);
    await a.release();
    expect(kit.docs()).to.have.length(2);
    await Promise.all([b.release(), c.release()]);
    expect(kit.docs().slice(2)).to.have.deep.members([
      { ResourcePath: `VirtualMachine/Devices/VirtualPci/${a.value.vmbusGuid}`, RequestType: 'Remove' },
      { ResourcePath: `VirtualMachine/Devices/VirtualPci/${c.value.vmbusGuid}`, RequestType: 'Remove' },
    ]);
    expect(vpci.describe()).to.deep.equal([]);
  });

  it('WCOW: host only; a failed Add leaves nothing and the next acquire gets a new GUID', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const vpci = manager(kit);
    kit.hcs.failNext((c) => c.fn === 'modify');
    await expectCode(vpci.acquire({ instancePath: GPU }), 'HCS_ERROR');
    expect(vpci.describe()).to.deep.equal([]);
    const lease = await vpci.acquire({ instancePath: GPU });
    expect(kit.docs().at(-1)).to.deep.equal({
      ResourcePath: `VirtualMachine/Devices/VirtualPci/${lease.value.vmbusGuid}`,
      RequestType: 'Add',
      Settings: { Functions: [{ DeviceInstancePath: GPU }] },
    });
    await lease.release();
  });

  it('a failed Remove is retried by the same lease (TEARDOWN_FAILED meanwhile)', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const vpci = manager(kit);
    const lease = await vpci.acquire({ instancePath: GPU });
    kit.hcs.failNext((c) => c.fn === 'modify');
    await expectCode(lease.release(), 'TEARDOWN_FAILED');
    await expectCode(vpci.acquire({ instancePath: GPU }), 'TEARDOWN_FAILED');
    await lease.release();
    expect(vpci.describe()).to.deep.equal([]);
  });

  it('boot devices: shared with no HCS call, never removed while the UVM runs, dropped without a call once terminated', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const lifecycle = kit.lifecycle; // shared with the delivery, as in a UtilityVm
    const vpci = manager(kit, lifecycle, [{ instancePath: GPU }]);
    const lease = await vpci.acquire({ instancePath: GPU });
    await lease.release();
    expect(kit.docs()).to.deep.equal([]);
    expect(vpci.describe().map((d) => [d.refCount, d.guestPath])).to.deep.equal([[1, undefined]]);
    lifecycle.markTerminating();
    lifecycle.markTerminated();
    await new Promise((r) => setImmediate(r));
    expect(vpci.describe()).to.deep.equal([]);
    expect(kit.docs()).to.deep.equal([]);
  });

  it('bad requests are INVALID_ARGUMENT before any HCS call; create options become Devices.VirtualPci', async () => {
    for (const bad of [null, {}, { instancePath: '' }, { instancePath: 'a/b' }, { instancePath: 'x\0' }, { instancePath: GPU, virtualFunction: -1 }, { instancePath: GPU, virtualFunction: 1.5 }]) {
      expectCodeSync(() => validateVpciRequest(bad as never), 'INVALID_ARGUMENT');
    }
    expectCodeSync(() => resolveBootDevices([{ instancePath: GPU }, { instancePath: GPU, virtualFunction: 0 }]), 'INVALID_ARGUMENT');
    const boot = resolveBootDevices([{ instancePath: GPU }, { instancePath: NIC, virtualFunction: 1 }]);
    expect(vpciCreateSection(boot)).to.deep.equal({
      [boot[0]!.vmbusGuid]: { Functions: [{ DeviceInstancePath: GPU }] },
      [boot[1]!.vmbusGuid]: { Functions: [{ DeviceInstancePath: NIC, VirtualFunction: 1 }] },
    });
  });
});
