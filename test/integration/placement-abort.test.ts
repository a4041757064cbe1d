// Placement by reservation and abort-safe acquisition, through the FFI binding and the simulator:
// hcsshim's slot numbers whatever the HCS timing; an abort at every step leaves nothing attached.
import { expect } from 'chai';
import { allocateContainer } from '../../src/containers/allocate-container.js';
import { UvmError } from '../../src/core/errors.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import type { OciSpec } from '../../src/oci/oci-spec.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { disposeUvms, expectEmpty, expectInSync, hostFs, onHcsCall, startUvm } from './devices-support.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Four layers (top-most first), a scratch, a disk mount and one directory bound ro and rw. */
function podSpec(root = 'rootfs'): OciSpec {
  return {
    root: { path: root },
    windows: { layerFolders: ['/pa/l0', '/pa/l1', '/pa/l2', '/pa/big', '/pa/c1'] },
    mounts: [
      { destination: '/disk', type: 'virtual-disk', source: '/pa/disks/d.vhdx' },
      { destination: '/ro', type: 'bind', source: '/pa/data', options: ['rbind', 'ro'] },
      { destination: '/rw', type: 'bind', source: '/pa/data', options: ['rbind', 'rw'] },
    ],
  };
}

/** Where everything landed, by what it is. */
function placements(uvm: UtilityVm): string[] {
  return uvm
    .describe()
    .map((r) => `${r.kind} ${r.hostPath ?? ''} ${r.slot ?? ''} ${r.guestPath ?? ''}`)
    .sort();
}

/** Runs `op` and aborts it as HCS call number `step` (1-based) starts; returns the calls seen. */
async function abortAtStep<T>(uvm: UtilityVm, step: number, op: (signal: AbortSignal) => Promise<T>): Promise<{ calls: string[]; result: PromiseSettledResult<T> }> {
  const controller = new AbortController();
  const calls: string[] = [];
  onHcsCall(uvm.id, (call) => {
    calls.push(call);
    if (calls.length === step) controller.abort();
  });
  try {
    const [result] = await Promise.allSettled([op(controller.signal)]);
    return { calls, result: result! };
  } finally {
    onHcsCall(uvm.id, undefined);
  }
}

describe('integration: placement by reservation and abort-safe acquisition', function () {
  this.timeout(120000);
  afterEach(async () => {
    configureSimulator({ latency: {} });
    await disposeUvms();
  });
  before(() => {
    hostFs
      .file('/pa/l0/layer.vhd', 3 * MiB)
      .file('/pa/l1/layer.vhd', 3 * MiB)
      .file('/pa/l2/layer.vhd', 3 * MiB)
      .file('/pa/big/layer.vhd', 6 * GiB)
      .file('/pa/c1/sandbox.vhdx', 20 * GiB)
      .file('/pa/disks/d.vhdx', GiB)
      .dir('/pa/data');
  });

  it("gives hcsshim's slot numbers whatever the HCS timing: layers (fallbacks included) before the scratch, then the mounts in spec order", async () => {
    const seen = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5]) {
      const uvm = await startUvm({ os: 'linux', vpmem: { count: 2 } });
      configureSimulator({ latency: { HcsModifyComputeSystem: { ms: 0, jitterMs: 4 } }, seed });
      const c = await allocateContainer(uvm, podSpec(), { containerId: 'c1' });
      configureSimulator({ latency: {} });
      expect(c.resources.layers!.layers.map((l) => [l.target, l.reason ?? null, l.guestPath])).to.deep.equal([
        ['vpmem', null, '/run/layers/p0'],
        ['vpmem', null, '/run/layers/p1'],
        ['scsi', 'no-slot', '/run/mounts/scsi/m0'],
        ['scsi', 'too-large', '/run/mounts/scsi/m1'],
      ]);
      const scsi = uvm.scsi.describe().filter((r) => r.kind === 'scsi-attachment');
      expect(scsi.map((r) => [r.hostPath, r.slot])).to.have.deep.members([
        ['/pa/l2/layer.vhd', '0:0'],
        ['/pa/big/layer.vhd', '0:1'],
        ['/pa/c1/sandbox.vhdx', '0:2'],
        ['/pa/disks/d.vhdx', '0:3'],
      ]);
      // The same directory read-only and read-write: two Plan9 shares, named in spec order.
      expect(c.spec.mounts!.map((m) => m.source)).to.deep.equal(['/run/mounts/scsi/m2', '/run/mounts/plan9/0', '/run/mounts/plan9/1']);
      expect(uvm.plan9.describe().map((r) => [r.slot, r.key])).to.deep.equal([
        ['0', JSON.stringify(['/pa/data', true, false])],
        ['1', JSON.stringify(['/pa/data', false, false])],
      ]);
      await expectInSync(uvm);
      seen.add(JSON.stringify(placements(uvm)));
      await c.resources.release();
      await expectEmpty(uvm);
    }
    expect(seen.size).to.equal(1);
  });

  it('an abort before the first HCS call cancels the reservation: nothing is sent', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 2 } });
    const controller = new AbortController();
    controller.abort();
    const calls: string[] = [];
    onHcsCall(uvm.id, (call) => calls.push(call));
    try {
      const err = await allocateContainer(uvm, podSpec(), { containerId: 'c1', signal: controller.signal }).catch((e: unknown) => e);
      expect(UvmError.is(err, 'ABORTED'), String(err)).to.equal(true);
      const disk = await uvm.scsi.acquire({ hostPath: '/pa/disks/d.vhdx', readOnly: false, grantVmAccess: true, mount: {} }, { signal: controller.signal }).catch((e: unknown) => e);
      expect(UvmError.is(disk, 'ABORTED'), String(disk)).to.equal(true);
    } finally {
      onHcsCall(uvm.id, undefined);
    }
    expect(calls).to.deep.equal([]);
    await expectEmpty(uvm);
  });

  it('an abort at every step of a SCSI acquire (grant, attach, mount) ends with nothing attached', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 2 } });
    const request = { hostPath: '/pa/disks/d.vhdx', readOnly: false, grantVmAccess: true, mount: { options: ['rw'] } };
    const reference = await abortAtStep(uvm, 0, () => uvm.scsi.acquire(request));
    const steps = reference.calls.length;
    expect(steps).to.equal(3);
    await (reference.result as PromiseFulfilledResult<{ release(): Promise<void> }>).value.release();
    for (let step = 1; step <= steps; step++) {
      const { result, calls } = await abortAtStep(uvm, step, (signal) => uvm.scsi.acquire(request, { signal }));
      expect(result.status, `step ${step}`).to.equal('rejected');
      expect(UvmError.is((result as PromiseRejectedResult).reason, 'ABORTED'), `step ${step}: ${String((result as PromiseRejectedResult).reason)}`).to.equal(true);
      // Undone in order after the step in flight: never an unplug before the mount settled.
      const order = calls.map((c) => (c.includes('"SCSIDevice"') ? 'unplug' : c.includes('"MappedVirtualDisk"') ? (c.includes('"Remove"') ? 'unmount' : 'mount') : c.split(' ')[0]));
      if (order.includes('mount')) expect(order.indexOf('unmount'), `step ${step}: ${order.join(',')}`).to.be.lessThan(order.indexOf('unplug'));
      await expectEmpty(uvm);
    }
  });

  it('an abort at every step of allocateContainer ends with nothing attached', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 2 } });
    const reference = await abortAtStep(uvm, 0, () => allocateContainer(uvm, podSpec(), { containerId: 'c1' }));
    const steps = reference.calls.length;
    expect(steps).to.be.greaterThan(8);
    await (reference.result as PromiseFulfilledResult<Awaited<ReturnType<typeof allocateContainer>>>).value.resources.release();
    await expectEmpty(uvm);
    for (let step = 1; step <= steps; step++) {
      const { result } = await abortAtStep(uvm, step, (signal) => allocateContainer(uvm, podSpec(), { containerId: 'c1', signal }));
      expect(result.status, `step ${step}`).to.equal('rejected');
      const reason = (result as PromiseRejectedResult).reason as UvmError;
      expect(reason.code, `step ${step}: ${String(reason)}`).to.equal('ABORTED');
      expect(reason.details?.rollbackError, `step ${step}`).to.equal(undefined);
      await expectEmpty(uvm);
    }
    // The next allocation with that scratch works.
    const again = await allocateContainer(uvm, podSpec(), { containerId: 'c1' });
    await again.resources.release();
    await expectEmpty(uvm);
  });

  it('addMount during or after release() fails with ALREADY_RELEASED and leaves nothing', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 2 } });
    const c = await allocateContainer(uvm, podSpec(), { containerId: 'c1' });
    const adding = c.resources.addMount({ destination: '/hot', type: 'bind', source: '/pa/data', options: ['rbind', 'ro'] });
    const releasing = c.resources.release();
    const [added, released] = await Promise.allSettled([adding, releasing]);
    expect(released.status).to.equal('fulfilled');
    expect(added.status).to.equal('rejected');
    expect(UvmError.is((added as PromiseRejectedResult).reason, 'ALREADY_RELEASED')).to.equal(true);
    await expectEmpty(uvm);
    const after = await c.resources.addMount({ destination: '/hot2', type: 'bind', source: '/pa/data' }).catch((e: unknown) => e);
    expect(UvmError.is(after, 'ALREADY_RELEASED')).to.equal(true);
    await expectEmpty(uvm);
  });

  it('accepts root.path "" together with layer folders', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 2 } });
    const c = await allocateContainer(uvm, { ...podSpec(''), mounts: [] }, { containerId: 'c1' });
    expect(c.spec.root!.path).to.equal('/run/gcs/c/c1/rootfs');
    await c.resources.release();
    await expectEmpty(uvm);
  });
});
