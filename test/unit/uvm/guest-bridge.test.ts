import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import type { Logger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeHcs } from '../../../src/hcs/fake-hcs.js';
import { LCOW_ENTROPY_SERVICE_ID, LCOW_GCS_SERVICE_ID, LCOW_LOG_SERVICE_ID, WCOW_GCS_HOST_ID, WCOW_GCS_SERVICE_ID } from '../../../src/hcs/hvsocket.js';
import type { UtilityVm } from '../../../src/uvm/utility-vm.js';
import type { UtilityVmOptions } from '../../../src/uvm/uvm-options.js';
import { FakeHvSocketTransport, type FakeGcs } from '../../fakes/fake-gcs.js';
import { rejectsWithCode } from '../devices/device-test-kit.js';

const NULL_ID = '00000000-0000-0000-0000-000000000000';

interface Logged {
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

function kit(profile: 'linux' | 'windows' = 'linux') {
  const hcs = new FakeHcs();
  const hostFs = new FakeHostFs().file('/l/a.vhd', 1024).file('/l/b.vhd', 1024);
  const transport = new FakeHvSocketTransport(profile);
  const logged: Logged[] = [];
  let waiter: { n: number; resolve: () => void } | undefined;
  const log = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    logged.push({ level, message, fields });
    if (waiter && logged.filter((l) => l.fields?.source === 'gcs').length >= waiter.n) waiter.resolve();
  };
  const logger: Logger = { error: log('error'), warn: log('warn'), info: log('info'), debug: log('debug') };
  /** Resolves once `n` guest log lines reached the logger. */
  const logsFromGuest = (n: number): Promise<void> =>
    logged.filter((l) => l.fields?.source === 'gcs').length >= n ? Promise.resolve() : new Promise((resolve) => (waiter = { n, resolve }));
  // FakeHcs alone defaults to HCS-owned delivery; these tests run the bridge over a fake guest.
  const o = createUvmOrchestrator({ hcs, hostFs, logger, hvSocket: transport, guestDelivery: 'bridge' });
  const create = (options: UtilityVmOptions): Promise<UtilityVm> => o.createUtilityVm(options);
  const gcsOf = (uvm: UtilityVm): FakeGcs => {
    const runtimeId = hcs.systems.get(uvm.id)!.runtimeId;
    return transport.gcs.get(runtimeId)!;
  };
  return { hcs, transport, logged, create, gcsOf, logsFromGuest };
}

describe('UtilityVm guest delivery over the GCS bridge', () => {
  it('LCOW: listens on entropy, log and GCS at the RuntimeId after create and before start; start negotiates; entropy gets 512 bytes; log lines reach the logger', async () => {
    const { hcs, transport, logged, create, gcsOf, logsFromGuest } = kit();
    transport.logLines = ['{"level":"warning","msg":"guest says hi","time":"t"}', 'not json'];
    const uvm = await create({ id: 'p', os: 'linux' });
    const runtimeId = hcs.systems.get('p')!.runtimeId;
    expect(transport.listening).to.deep.equal([
      { vmId: runtimeId, serviceId: LCOW_ENTROPY_SERVICE_ID },
      { vmId: runtimeId, serviceId: LCOW_LOG_SERVICE_ID },
      { vmId: runtimeId, serviceId: LCOW_GCS_SERVICE_ID },
    ]);
    expect(hcs.calls.map((c) => c.fn)).to.deep.equal(['create', 'properties']);
    expect(hcs.calls[0]!.doc).to.not.have.nested.property('VirtualMachine.GuestConnection');
    await uvm.start();
    expect(transport.openListeners).to.equal(0);
    const gcs = gcsOf(uvm);
    expect(gcs.received.map((m) => m.rpc)).to.deep.equal(['NegotiateProtocol']);
    expect(transport.entropyBytes).to.equal(512);
    await logsFromGuest(2);
    expect(logged.filter((l) => l.fields?.source === 'gcs')).to.deep.equal([
      { level: 'warn', message: 'guest says hi', fields: { time: 't', uvmId: 'p', source: 'gcs' } },
      { level: 'info', message: 'not json', fields: { uvmId: 'p', source: 'gcs' } },
    ]);
    await uvm.terminate();
    await uvm.close();
  });

  it("VPMEM: host half through HCS (no GuestRequest), guest half over the bridge to the all-zero container; release guest first, then host", async () => {
    const { hcs, create, gcsOf } = kit();
    const uvm = await create({ id: 'p', os: 'linux', vpmem: { count: 2 } });
    await uvm.start();
    const gcs = gcsOf(uvm);
    const layer = await uvm.vpmem.acquire({ hostPath: '/l/a.vhd' });
    await layer.release();
    const modifies = hcs.docs('modify');
    expect(modifies.every((d) => !('GuestRequest' in (d as object)))).to.equal(true);
    expect(modifies.map((d) => (d as { RequestType: string }).RequestType)).to.deep.equal(['Add', 'Remove']);
    const bridge = gcs.received.filter((m) => m.rpc === 'ModifySettings');
    expect(bridge.map((m) => [m.body.ContainerId, m.body.Request.ResourceType, m.body.Request.RequestType])).to.deep.equal([
      [NULL_ID, 'VPMemDevice', 'Add'],
      [NULL_ID, 'VPMemDevice', 'Remove'],
    ]);
    expect(hcs.systems.get('p')!.attached()).to.deep.equal([]);
    await uvm.terminate();
    await uvm.close();
  });

  it('a guest half failing rolls its host half back (nothing attached, the slot free again)', async () => {
    const { hcs, create, gcsOf } = kit();
    const uvm = await create({ id: 'p', os: 'linux', vpmem: { count: 1 } });
    await uvm.start();
    gcsOf(uvm).on({ resourceType: 'VPMemDevice', requestType: 'Add', action: { kind: 'fail', message: 'no such device' }, times: 1 });
    await rejectsWithCode(uvm.vpmem.acquire({ hostPath: '/l/a.vhd' }), 'HCS_ERROR');
    expect(hcs.systems.get('p')!.attached()).to.deep.equal([]);
    const hostTypes = hcs.docs('modify').map((d) => (d as { RequestType: string }).RequestType);
    expect(hostTypes).to.deep.equal(['Add', 'Remove']);
    const layer = await uvm.vpmem.acquire({ hostPath: '/l/a.vhd' });
    await layer.release();
    expect(hcs.systems.get('p')!.attached()).to.deep.equal([]);
    await uvm.terminate();
    await uvm.close();
  });

  it('the bridge dropping mid-allocation rejects every pending guest call with BRIDGE_FAILED; the UVM is told; terminate leaves nothing', async () => {
    const { hcs, create, gcsOf } = kit();
    const uvm = await create({ id: 'p', os: 'linux', vpmem: { count: 2 } });
    await uvm.start();
    const gcs = gcsOf(uvm);
    gcs.on({ resourceType: 'VPMemDevice', action: { kind: 'hold' } });
    const a = uvm.vpmem.acquire({ hostPath: '/l/a.vhd' });
    const b = uvm.vpmem.acquire({ hostPath: '/l/b.vhd' });
    await gcs.receivedCount(3);
    gcs.drop();
    const codes = await Promise.all([a, b].map((p) => p.then(() => 'ok', (e: { code: string }) => e.code)));
    expect(codes).to.deep.equal(['BRIDGE_FAILED', 'BRIDGE_FAILED']);
    expect(uvm.guestConnectionFailure?.code).to.equal('BRIDGE_FAILED');
    await rejectsWithCode(uvm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: {} }), 'BRIDGE_FAILED');
    await uvm.terminate();
    // What the dead bridge could not undo stays for a retried teardown, which makes no call now.
    await uvm.retryFailedTeardowns();
    expect(uvm.describe()).to.deep.equal([]);
    expect(hcs.systems.get('p')!.state).to.equal('Stopped');
    await uvm.close();
  });

  it('the accept deadline: a guest that never dials fails start with GUEST_CONNECT_TIMEOUT and the VM is terminated', async () => {
    const { hcs, transport, create } = kit();
    transport.neverDial.add(LCOW_GCS_SERVICE_ID);
    const uvm = await create({ id: 'p', os: 'linux', guestConnectTimeoutMs: 50 });
    await rejectsWithCode(uvm.start(), 'GUEST_CONNECT_TIMEOUT');
    expect(hcs.systems.get('p')!.state).to.equal('Stopped');
    expect(uvm.phase).to.equal('terminated');
    expect(transport.openListeners).to.equal(0);
    await uvm.close();
  });

  it('WCOW: GCS only; negotiate, null-container Create and Start when asked, then the HvSocket Update with the RuntimeId', async () => {
    const { hcs, transport, create, gcsOf } = kit('windows');
    const uvm = await create({ id: 'w', os: 'windows' });
    const runtimeId = hcs.systems.get('w')!.runtimeId;
    expect(transport.listening).to.deep.equal([{ vmId: runtimeId, serviceId: WCOW_GCS_SERVICE_ID }]);
    await uvm.start();
    const gcs = gcsOf(uvm);
    expect(gcs.received.map((m) => m.rpc)).to.deep.equal(['NegotiateProtocol', 'Create', 'Start', 'ModifySettings']);
    expect(gcs.received[1]!.body.ContainerId).to.equal(NULL_ID);
    expect(JSON.parse(gcs.received[1]!.body.ContainerConfig as string)).to.have.property('SystemType', 'Container');
    expect(gcs.received[3]!.body.Request).to.deep.equal({ RequestType: 'Update', ResourceType: 'HvSocket', Settings: { LocalAddress: runtimeId, ParentAddress: WCOW_GCS_HOST_ID } });
    await uvm.terminate();
    await uvm.close();
  });

  it('HCS-owned mode: GuestConnection in the create document, GuestRequests through HCS; LCOW entropy and log still answered', async () => {
    const { hcs, transport, create } = kit();
    const uvm = await create({ id: 'p', os: 'linux', guestDelivery: 'hcs' });
    expect(hcs.calls[0]!.doc).to.have.nested.property('VirtualMachine.GuestConnection.UseVsock', true);
    expect(transport.listening.map((l) => l.serviceId)).to.deep.equal([LCOW_ENTROPY_SERVICE_ID, LCOW_LOG_SERVICE_ID]);
    await uvm.start();
    const req = { RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/run/gcs/c/x/rootfs', Layers: [] } } as const;
    await uvm.sendGuestRequest(req);
    expect(hcs.docs('modify')).to.deep.equal([{ GuestRequest: req }]);
    await uvm.sendGuestRequest({ ...req, RequestType: 'Remove' });
    await uvm.terminate();
    await uvm.close();
  });

  it('a caller guestConnection with guestDelivery "hcs" is INVALID_ARGUMENT before anything is created', async () => {
    const { hcs, create } = kit();
    await rejectsWithCode(create({ id: 'p', os: 'linux', guestDelivery: 'hcs', guestConnection: { modifySettings: () => Promise.resolve() } }), 'INVALID_ARGUMENT');
    expect(hcs.calls).to.deep.equal([]);
  });
});
