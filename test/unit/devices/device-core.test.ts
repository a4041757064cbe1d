import { expect } from 'chai';
import type { LogFields, Logger } from '../../../src/core/logger.js';
import { Residue } from '../../../src/core/refcounted-table.js';
import { SlotAllocator } from '../../../src/core/slot-allocator.js';
import { UvmError } from '../../../src/core/errors.js';
import { DeviceCore, NameCounter, type DevicePolicy } from '../../../src/devices/device-core.js';
import { resourcePaths } from '../../../src/devices/resource-paths.js';
import { hostRequest } from '../../../src/devices/wire-requests.js';
import { deviceKit, rejectsWithCode, settle, silentLogger, type DeviceKit } from './device-test-kit.js';

/** A toy device over FakeHcs: host pipes (host-only Add/Remove), at most two, in slots 0 and 1. */
interface Toy {
  readonly pipe: string;
  readonly slot: number;
}
interface ToyParams {
  readonly pipe: string;
  /** The commit returns a Residue instead of adding. */
  readonly residue?: boolean;
}

function toyCore(
  kit: DeviceKit,
  options: { logger?: Logger; kept?: boolean; restore?: boolean; fields?: (t: Toy) => LogFields } = {},
): { core: DeviceCore<ToyParams, Toy, { pipe: string; slot: number }>; slots: SlotAllocator } {
  const slots = new SlotAllocator(2);
  const path = (t: Toy): string => resourcePaths.mappedPipe(`\\\\.\\pipe\\${t.pipe}`);
  const policy: DevicePolicy<ToyParams, Toy, { pipe: string; slot: number }> = {
    device: 'toy',
    kind: 'mapped-pipe',
    table: 'toy-pipe',
    only: { os: 'windows', message: 'toys are WCOW only' },
    key: (p) => p.pipe,
    place: (p) => {
      const slot = slots.allocate();
      if (slot === undefined) throw new UvmError('NO_SLOT', `no slot for ${p.pipe}`);
      const value = { pipe: p.pipe, slot };
      return {
        value,
        commit: async () => {
          await kit.delivery.host(hostRequest(path(value), 'Add'));
          if (p.residue) {
            // Added, then "failed": something is left behind for a retried teardown.
            return new Residue(new UvmError('HCS_ERROR', 'reported failed after it applied'), value);
          }
        },
      };
    },
    remove: (t) => kit.delivery.host(hostRequest(path(t), 'Remove')),
    forget: (t) => slots.free(t.slot),
    where: (t) => ({ hostPath: t.pipe, slot: String(t.slot), guestPath: undefined }),
    view: (t) => ({ pipe: t.pipe, slot: t.slot }),
    ...(options.fields ? { fields: options.fields } : {}),
    ...(options.kept ? { keepAtZero: () => true } : {}),
    ...(options.restore
      ? {
          claim: (p: ToyParams, recorded: { slot: number }) => {
            slots.claim(recorded.slot);
            return { pipe: p.pipe, slot: recorded.slot };
          },
          conflict: (t: Toy, recorded: { slot: number }) => (t.slot === recorded.slot ? undefined : `${t.pipe} is at ${t.slot}, recorded at ${recorded.slot}`),
        }
      : {}),
  };
  return { core: new DeviceCore('uvm1', kit.config.os, options.logger ?? silentLogger, policy), slots };
}

const isRemove = (c: { doc: unknown }): boolean => (c.doc as { RequestType?: string } | undefined)?.RequestType === 'Remove';
const isAdd = (c: { doc: unknown }): boolean => (c.doc as { RequestType?: string } | undefined)?.RequestType === 'Add';

describe('DeviceCore', () => {
  it('shares one resource per key, describes it with its slot, removes it on the last release', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core, slots } = toyCore(kit);
    const a = await core.acquire({ pipe: 'a' });
    const a2 = await core.acquire({ pipe: 'a' });
    const b = await core.acquire({ pipe: 'b' });
    expect([a.value, a2.value, b.value]).to.deep.equal([
      { pipe: 'a', slot: 0 },
      { pipe: 'a', slot: 0 },
      { pipe: 'b', slot: 1 },
    ]);
    expect(core.describe()).to.deep.equal([
      { kind: 'mapped-pipe', key: 'a', state: 'live', refCount: 2, hostPath: 'a', slot: '0' },
      { kind: 'mapped-pipe', key: 'b', state: 'live', refCount: 1, hostPath: 'b', slot: '1' },
    ]);
    await a.release();
    expect(kit.system.attached()).to.have.length(2);
    await a2.release();
    await b.release();
    expect(core.describe()).to.deep.equal([]);
    expect(slots.freeCount).to.equal(2);
    expect(kit.docs().map((d) => (d as { RequestType: string }).RequestType)).to.deep.equal(['Add', 'Add', 'Remove', 'Remove']);
  });

  it('concurrent acquires of one key make one Add and share it; the last release removes it', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core } = toyCore(kit);
    const gate = kit.hcs.gate(isAdd);
    const pending = Promise.all([core.acquire({ pipe: 'a' }), core.acquire({ pipe: 'a' }), core.acquire({ pipe: 'a' })]);
    await settle();
    expect(core.describe().map((i) => [i.state, i.refCount])).to.deep.equal([['creating', 3]]);
    gate.open();
    const leases = await pending;
    expect(kit.docs()).to.have.length(1);
    await Promise.all(leases.map((l) => l.release()));
    expect(kit.docs()).to.have.length(2);
    expect(core.describe()).to.deep.equal([]);
  });

  it('a placement that refuses (NO_SLOT) reserves nothing; a freed slot is handed out again, lowest first', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core } = toyCore(kit);
    const a = await core.acquire({ pipe: 'a' });
    const b = await core.acquire({ pipe: 'b' });
    expect(() => core.reserve({ pipe: 'c' })).to.throw().with.property('code', 'NO_SLOT');
    expect(core.describe().map((i) => i.key)).to.deep.equal(['a', 'b']);
    await a.release();
    const c = await core.acquire({ pipe: 'c' });
    expect(c.value.slot).to.equal(0);
    await b.release();
    await c.release();
    expect(core.describe()).to.deep.equal([]);
  });

  it('reserve is synchronous and sends nothing; cancel gives the slot back; an aborted commit sends nothing', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core, slots } = toyCore(kit);
    const r = core.reserve({ pipe: 'a' });
    expect(r.value).to.deep.equal({ pipe: 'a', slot: 0 });
    expect(r.shared).to.equal(false);
    expect(core.describe().map((i) => i.state)).to.deep.equal(['reserved']);
    r.cancel();
    expect(slots.freeCount).to.equal(2);
    const ac = new AbortController();
    ac.abort();
    await rejectsWithCode(core.reserve({ pipe: 'b' }).commit({ signal: ac.signal }), 'ABORTED');
    expect(kit.docs()).to.deep.equal([]);
    expect(core.describe()).to.deep.equal([]);
    expect(slots.freeCount).to.equal(2);
  });

  it('an abort while the Add is in flight lets it finish, then undoes it: ABORTED, nothing attached', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core, slots } = toyCore(kit);
    const gate = kit.hcs.gate(isAdd);
    const ac = new AbortController();
    const pending = core.acquire({ pipe: 'a' }, { signal: ac.signal });
    await settle();
    ac.abort();
    gate.open();
    await rejectsWithCode(pending, 'ABORTED');
    expect(kit.system.attached()).to.deep.equal([]);
    expect(core.describe()).to.deep.equal([]);
    expect(slots.freeCount).to.equal(2);
  });

  it('a failed Add rejects with its code and forgets the entry and its slot', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core, slots } = toyCore(kit);
    kit.hcs.failNext(isAdd);
    await rejectsWithCode(core.acquire({ pipe: 'a' }), 'HCS_ERROR');
    expect(core.describe()).to.deep.equal([]);
    expect(slots.freeCount).to.equal(2);
    await (await core.acquire({ pipe: 'a' })).release();
  });

  it('a Residue keeps the entry in teardown-failed (acquires refused) until retryFailedTeardowns removes it', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core, slots } = toyCore(kit);
    await rejectsWithCode(core.acquire({ pipe: 'a', residue: true }), 'HCS_ERROR');
    expect(core.describe()).to.deep.equal([{ kind: 'mapped-pipe', key: 'a', state: 'teardown-failed', refCount: 0, hostPath: 'a', slot: '0' }]);
    expect(() => core.reserve({ pipe: 'a' })).to.throw().with.property('code', 'TEARDOWN_FAILED');
    expect(slots.freeCount).to.equal(1);
    await core.retryFailedTeardowns();
    expect(core.describe()).to.deep.equal([]);
    expect(slots.freeCount).to.equal(2);
  });

  it('a failed removal is TEARDOWN_FAILED and resumes on release() again or retryFailedTeardowns()', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core } = toyCore(kit);
    const a = await core.acquire({ pipe: 'a' });
    kit.hcs.failNext(isRemove);
    await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
    expect(core.describe().map((i) => i.state)).to.deep.equal(['teardown-failed']);
    await rejectsWithCode(core.acquire({ pipe: 'a' }), 'TEARDOWN_FAILED');
    await a.release();
    const b = await core.acquire({ pipe: 'b' });
    kit.hcs.failNext(isRemove);
    await rejectsWithCode(b.release(), 'TEARDOWN_FAILED');
    kit.hcs.failNext(isRemove);
    await rejectsWithCode(core.retryFailedTeardowns(), 'TEARDOWN_FAILED');
    await core.retryFailedTeardowns();
    expect(core.describe()).to.deep.equal([]);
  });

  it('adopt claims the recorded slot with no HCS call; a conflicting record is RECOVERY_FAILED and drops only its reference', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core, slots } = toyCore(kit, { restore: true });
    await kit.delivery.host(hostRequest(resourcePaths.mappedPipe('\\\\.\\pipe\\a'), 'Add')); // attached before the "crash"
    const start = kit.docs().length;
    const a = await core.adopt({ pipe: 'a' }, { pipe: 'a', slot: 1 });
    expect(a.value).to.deep.equal({ pipe: 'a', slot: 1 });
    expect(slots.isFree(1)).to.equal(false);
    const again = await core.adopt({ pipe: 'a' }, { pipe: 'a', slot: 1 });
    const err = await rejectsWithCode(core.adopt({ pipe: 'a' }, { pipe: 'a', slot: 0 }), 'RECOVERY_FAILED');
    expect((err as unknown as { details: unknown }).details).to.deep.include({ kind: 'mapped-pipe', key: 'a', hostPath: 'a' });
    expect(kit.docs().length).to.equal(start);
    expect(core.describe().map((i) => i.refCount)).to.deep.equal([2]);
    // A new key after an adopted one takes the lowest free slot.
    const b = await core.acquire({ pipe: 'b' });
    expect(b.value.slot).to.equal(0);
    for (const l of [a, again, b]) await l.release();
    expect(core.describe()).to.deep.equal([]);
  });

  it('adopt without a claim is NOT_SUPPORTED; check() refuses the other guest OS and a non-object', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const { core } = toyCore(kit);
    await rejectsWithCode(core.adopt({ pipe: 'a' }, { pipe: 'a', slot: 0 }), 'NOT_SUPPORTED');
    expect(() => core.check(null, 'toy request')).to.throw().with.property('code', 'INVALID_ARGUMENT');
    expect(core.check({ pipe: 'a' }, 'toy request')).to.deep.equal({ pipe: 'a' });
    const lcow = await deviceKit({ os: 'linux' });
    expect(() => toyCore(lcow).core.check({ pipe: 'a' }, 'toy request')).to.throw().with.property('code', 'NOT_SUPPORTED');
  });

  it('keepAtZero keeps a released value attached (state kept, reused by the next acquire); purge forgets it', async () => {
    const kit = await deviceKit({ os: 'windows' }, { leakCheck: false });
    const { core, slots } = toyCore(kit, { kept: true });
    await (await core.acquire({ pipe: 'a' })).release();
    expect(core.describe().map((i) => [i.state, i.refCount])).to.deep.equal([['kept', 0]]);
    const again = await core.acquire({ pipe: 'a' });
    expect(kit.docs()).to.have.length(1);
    await again.release();
    core.purge();
    expect(core.describe()).to.deep.equal([]);
    expect(slots.freeCount).to.equal(2);
    expect(kit.system.attached()).to.have.length(1); // it goes with the VM
  });

  it('logs structured lines (uvm id, kind, host path, slot, policy fields); builds no fields for a level that is off', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const lines: { level: string; message: string; fields?: LogFields }[] = [];
    let built = 0;
    const at = (level: string) => (message: string, fields?: LogFields) => void lines.push({ level, message, fields });
    const logger: Logger = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), isLevelEnabled: (l) => l !== 'debug' };
    const { core } = toyCore(kit, { logger, fields: (t) => (built++, { extra: t.pipe.toUpperCase() }) });
    const a = await core.acquire({ pipe: 'a' });
    kit.hcs.failNext(isRemove);
    await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
    await a.release();
    expect(lines.map((l) => [l.level, l.message])).to.deep.equal([['warn', 'remove failed; release() again to resume']]);
    expect(lines[0].fields).to.deep.include({ uvmId: 'uvm1', kind: 'toy', hostPath: 'a', slot: '0', extra: 'A' });
    expect(lines[0].fields).to.not.have.property('guestPath');
    expect(built).to.equal(1);
  });
});

describe('NameCounter', () => {
  it('counts up, gives back only the newest, and moves past recorded names', () => {
    const names = new NameCounter(1);
    const a = names.take();
    const b = names.take();
    expect([a.n, b.n]).to.deep.equal([1, 2]);
    a.giveBack(); // not the newest: a gap
    expect(names.take().n).to.equal(3);
    names.atLeast(10);
    const c = names.take();
    expect(c.n).to.equal(10);
    c.giveBack();
    expect(names.take().n).to.equal(10);
    names.atLeast(Number.NaN);
    names.atLeast(4);
    expect(names.take().n).to.equal(11);
  });
});
