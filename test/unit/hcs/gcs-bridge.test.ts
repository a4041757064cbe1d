import { expect } from 'chai';
import { createLogger } from '../../../src/core/logger.js';
import { UvmError } from '../../../src/core/errors.js';
import { GcsBridge } from '../../../src/hcs/gcs-bridge.js';
import { encodeFrame, FrameReader, NULL_CONTAINER_ID } from '../../../src/hcs/gcs-bridge-protocol.js';
import { HcsError } from '../../../src/hcs/hcs-error.js';
import type { GuestRequest } from '../../../src/hcs/schema.js';
import { E_FAIL, FakeGcs, socketPair } from '../../fakes/fake-gcs.js';

const logger = createLogger({ level: 'silent' });
const mount = (lun: number): GuestRequest => ({ RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: `/run/mounts/scsi/m${lun}`, Lun: lun, ReadOnly: true } });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as UvmError).code;
  }
  return 'resolved';
}

describe('GCS bridge framing', () => {
  it("encodes hcsshim's header: type, total size, id, little-endian", () => {
    const frame = encodeFrame(0x10100a01, 7n, { a: 1 });
    expect([...frame.subarray(0, 16)]).to.deep.equal([0x01, 0x0a, 0x10, 0x10, frame.length, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
    expect(frame.subarray(16).toString()).to.equal('{"a":1}');
  });

  it('reassembles frames split anywhere, and refuses a size under the header or over the limit before buffering the body', () => {
    const bytes = Buffer.concat([encodeFrame(0x20100a01, 1n, { x: 'é' }), encodeFrame(0x20100b01, 2n, {})]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = new FrameReader();
      const frames = [...r.push(bytes.subarray(0, cut)), ...r.push(bytes.subarray(cut))];
      expect(frames.map((f) => [f.type, f.id])).to.deep.equal([
        [0x20100a01, 1n],
        [0x20100b01, 2n],
      ]);
      expect(JSON.parse(frames[0]!.body.toString())).to.deep.equal({ x: 'é' });
    }
    const small = Buffer.alloc(16);
    small.writeUInt32LE(8, 4);
    expect(() => new FrameReader().push(small)).to.throw(/shorter than its header/);
    const big = Buffer.alloc(16);
    big.writeUInt32LE(0x10001, 4);
    expect(() => new FrameReader().push(big)).to.throw(/over the 65536-byte limit/);
  });
});

describe('GCS bridge client (in-process fake GCS)', () => {
  let dispose: () => Promise<void>;
  let bridge: GcsBridge;
  let gcs: FakeGcs;
  let failures: UvmError[];

  beforeEach(async () => {
    const pair = await socketPair();
    dispose = pair.dispose;
    gcs = new FakeGcs().attach(pair.guest);
    bridge = new GcsBridge(pair.host, { uvmId: 'u1', logger });
    failures = [];
    bridge.onFailure((e) => failures.push(e));
  });

  afterEach(async () => {
    bridge.close();
    await dispose();
    expect(bridge.pendingCount).to.equal(0);
  });

  it('negotiates v4 (id 0), then ModifySettings on the all-zero container id with ids counting up', async () => {
    const caps = await bridge.negotiate();
    expect(caps.RuntimeOsType).to.equal('Linux');
    await bridge.modifySettings(mount(2));
    expect(gcs.received.map((m) => [m.rpc, m.id])).to.deep.equal([
      ['NegotiateProtocol', 0n],
      ['ModifySettings', 1n],
    ]);
    expect(gcs.received[0]!.body).to.deep.equal({ ContainerId: '', ActivityId: NULL_CONTAINER_ID, MinimumVersion: 4, MaximumVersion: 4 });
    expect(gcs.received[1]!.body).to.deep.equal({ ContainerId: NULL_CONTAINER_ID, ActivityId: NULL_CONTAINER_ID, Request: mount(2) });
  });

  it('matches responses by id when the guest answers out of order', async () => {
    gcs.on({ rpc: 'ModifySettings', action: { kind: 'hold' }, times: 2 });
    const a = bridge.modifySettings(mount(1));
    const b = bridge.modifySettings(mount(2));
    await gcs.receivedCount(2);
    const [first, second] = gcs.held.splice(0);
    gcs.held.push(second!, first!);
    gcs.release();
    await Promise.all([a, b]);
    expect(failures).to.deep.equal([]);
  });

  it("a guest error rejects that call only: HCS_ERROR with the HRESULT, ErrorMessage and ErrorRecords", async () => {
    gcs.on({ resourceType: 'MappedVirtualDisk', action: { kind: 'fail', message: 'no disk at lun 3' }, times: 1 });
    const err = await bridge.modifySettings(mount(3)).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(HcsError);
    expect((err as HcsError).hresult).to.equal(E_FAIL);
    expect((err as HcsError).errorMessage).to.equal('no disk at lun 3');
    expect((err as HcsError).details.records).to.have.length(1);
    expect((err as HcsError).details.records).to.have.nested.property('[0].ModuleName', 'gcs');
    await bridge.modifySettings(mount(4));
    expect(failures).to.deep.equal([]);
  });

  for (const [what, kind, reason] of [
    ['an unknown response id', 'unknown-id', 'unknown-id'],
    ['a body that is not JSON', 'bad-json', 'bad-json'],
    ['a message over 64 KiB', 'oversized', 'oversized'],
    ['a dropped connection', 'drop', 'eof'],
  ] as const) {
    it(`${what} fails the bridge as a whole: every pending and later call rejects BRIDGE_FAILED, the owner is told once`, async () => {
      gcs.on({ resourceType: 'MappedVirtualDisk', action: { kind: 'hold' } });
      gcs.on({ resourceType: 'VPMemDevice', action: { kind } });
      const pending = [bridge.modifySettings(mount(1)), bridge.modifySettings(mount(2))];
      await gcs.receivedCount(2);
      const trigger = bridge.modifySettings({ RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: { DeviceNumber: 1, MountPath: '/run/layers/p1' } });
      const codes = await Promise.all([...pending, trigger].map(codeOf));
      expect(codes).to.deep.equal(['BRIDGE_FAILED', 'BRIDGE_FAILED', 'BRIDGE_FAILED']);
      expect(await codeOf(bridge.modifySettings(mount(5)))).to.equal('BRIDGE_FAILED');
      expect(failures).to.have.length(1);
      expect(failures[0]!.details.reason).to.equal(reason);
      expect(bridge.pendingCount).to.equal(0);
    });
  }

  it('a call passing its deadline fails the whole bridge (hcsshim: not just the call)', async () => {
    gcs.on({ resourceType: 'MappedVirtualDisk', action: { kind: 'hold' } });
    const other = codeOf(bridge.modifySettings(mount(1)));
    const late = codeOf(bridge.modifySettings(mount(2), { timeoutMs: 50 }));
    expect(await late).to.equal('BRIDGE_FAILED');
    expect(await other).to.equal('BRIDGE_FAILED');
    expect(failures.map((f) => f.details.reason)).to.deep.equal(['deadline']);
  });

  it('notifications are logged and dropped; a guest request fails the bridge', async () => {
    gcs.notify();
    await bridge.negotiate();
    expect(failures).to.deep.equal([]);
    gcs.writeRaw(encodeFrame(0x10100101, 9n, { ContainerId: 'x' }));
    gcs.on({ resourceType: 'MappedVirtualDisk', action: { kind: 'hold' } });
    expect(await codeOf(bridge.modifySettings(mount(1)))).to.equal('BRIDGE_FAILED');
    expect(failures.map((f) => f.details.reason)).to.deep.equal(['unexpected-message']);
  });

  it('an aborted signal before sending sends nothing (ABORTED); ModifySettings ignores an abort once sent', async () => {
    expect(await codeOf(bridge.modifySettings(mount(1), { signal: AbortSignal.abort() }))).to.equal('ABORTED');
    expect(gcs.received).to.have.length(0);
    gcs.on({ resourceType: 'MappedVirtualDisk', action: { kind: 'hold' }, times: 1 });
    const ac = new AbortController();
    const sent = bridge.modifySettings(mount(2), { signal: ac.signal });
    await gcs.receivedCount(1);
    ac.abort();
    gcs.release();
    await sent;
  });

  it('close() rejects pending calls with BRIDGE_FAILED without reporting a failure', async () => {
    gcs.on({ resourceType: 'MappedVirtualDisk', action: { kind: 'hold' } });
    const p = bridge.modifySettings(mount(1));
    await gcs.receivedCount(1);
    bridge.close();
    expect(await codeOf(p)).to.equal('BRIDGE_FAILED');
    expect(failures).to.deep.equal([]);
  });
});
