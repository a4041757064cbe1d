import { expect } from 'chai';
import sinon from 'sinon';
import { RefCountedTable, Residue } from '../../../src/core/refcounted-table.js';
import { UvmError } from '../../../src/core/errors.js';
import { deferred, settle } from './deferred.js';

function table(destroy: (v: string, k: string) => Promise<void> = async () => undefined): RefCountedTable<string, string> {
  return new RefCountedTable<string, string>({ name: 'test', destroy });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('RefCountedTable', () => {
  it('creates once and shares the value; the last release destroys exactly once', async () => {
    const destroy = sinon.spy(async (_v: string, _k: string) => undefined);
    const t = table(destroy);
    const create = sinon.spy(async (k: string) => `v-${k}`);
    const a = await t.acquire('k', create);
    const b = await t.acquire('k', create);
    expect(a.value).to.equal('v-k');
    expect(b.value).to.equal('v-k');
    expect(create.callCount).to.equal(1);
    expect(t.entries()[0]).to.include({ key: 'k', state: 'live', refCount: 2 });
    await a.release();
    expect(destroy.callCount).to.equal(0);
    await b.release();
    expect(destroy.calledOnceWith('v-k', 'k')).to.equal(true);
    expect(t.size).to.equal(0);
  });

  it('1,000 concurrent acquires of one key make exactly one create', async () => {
    const t = table();
    const gate = deferred<void>();
    let creates = 0;
    const create = async (): Promise<string> => {
      creates++;
      await gate.promise;
      return 'v';
    };
    const pending = Array.from({ length: 1000 }, () => t.acquire('k', create));
    await settle();
    expect(t.entries()[0]).to.include({ state: 'creating', refCount: 1000 });
    gate.resolve();
    const leases = await Promise.all(pending);
    expect(creates).to.equal(1);
    expect(new Set(leases.map((l) => l.value)).size).to.equal(1);
    await Promise.all(leases.map((l) => l.release()));
    expect(t.size).to.equal(0);
  });

  it('a create failure reaches every waiter and leaves nothing behind', async () => {
    const t = table();
    const gate = deferred<void>();
    const boom = new UvmError('HCS_ERROR', 'boom');
    const create = async (): Promise<string> => {
      await gate.promise;
      throw boom;
    };
    const pending = Array.from({ length: 5 }, () => t.acquire('k', create));
    gate.resolve();
    const results = await Promise.allSettled(pending);
    for (const r of results) {
      expect(r.status).to.equal('rejected');
      expect((r as PromiseRejectedResult).reason).to.equal(boom);
    }
    expect(t.size).to.equal(0);
    const lease = await t.acquire('k', async () => 'again');
    expect(lease.value).to.equal('again');
    await lease.release();
  });

  it('a slow create of one key does not delay another key', async () => {
    const t = table();
    const gate = deferred<void>();
    const slow = t.acquire('slow', async () => {
      await gate.promise;
      return 'slow';
    });
    const fast = await t.acquire('fast', async () => 'fast');
    expect(fast.value).to.equal('fast');
    await fast.release();
    gate.resolve();
    await (await slow).release();
  });

  it('release is idempotent: a second call returns the first promise and never decrements twice', async () => {
    const destroy = sinon.spy(async () => undefined);
    const t = table(destroy);
    const a = await t.acquire('k', async () => 'v');
    const b = await t.acquire('k', async () => 'v');
    const p1 = a.release();
    const p2 = a.release();
    expect(p1).to.equal(p2);
    await p1;
    await a.release();
    expect(t.entries()[0].refCount).to.equal(1);
    expect(destroy.callCount).to.equal(0);
    await b[Symbol.asyncDispose]();
    expect(destroy.callCount).to.equal(1);
    expect(a.released && b.released).to.equal(true);
  });

  it('a destroy failure leaves teardown-failed; acquire rejects TEARDOWN_FAILED; release again resumes', async () => {
    let fail = true;
    const destroy = sinon.spy(async () => {
      if (fail) throw new UvmError('HCS_ERROR', 'remove failed');
    });
    const t = table(destroy);
    const lease = await t.acquire('k', async () => 'v');
    const err = await rejection(lease.release());
    expect(UvmError.is(err, 'TEARDOWN_FAILED')).to.equal(true);
    expect(t.entries()[0]).to.include({ state: 'teardown-failed', refCount: 0 });
    expect(UvmError.is(await rejection(t.acquire('k', async () => 'new')), 'TEARDOWN_FAILED')).to.equal(true);
    fail = false;
    await lease.release();
    expect(destroy.callCount).to.equal(2);
    expect(t.size).to.equal(0);
    expect(lease.released).to.equal(true);
  });

  it('retryFailedTeardowns resumes every failed teardown', async () => {
    let fail = true;
    const t = table(async () => {
      if (fail) throw new Error('no');
    });
    const leases = await Promise.all(['a', 'b'].map((k) => t.acquire(k, async () => k)));
    await Promise.allSettled(leases.map((l) => l.release()));
    expect(t.entries().map((e) => e.state)).to.deep.equal(['teardown-failed', 'teardown-failed']);
    expect(UvmError.is(await rejection(t.retryFailedTeardowns()), 'TEARDOWN_FAILED')).to.equal(true);
    fail = false;
    await t.retryFailedTeardowns();
    expect(t.size).to.equal(0);
  });

  it('an acquire arriving during destroy waits for it, then creates afresh', async () => {
    const gate = deferred<void>();
    const order: string[] = [];
    const t = table(async (v) => {
      order.push(`destroy ${v}`);
      await gate.promise;
      order.push(`destroyed ${v}`);
    });
    let n = 0;
    const create = async (): Promise<string> => {
      n++;
      order.push(`create v${n}`);
      return `v${n}`;
    };
    const first = await t.acquire('k', create);
    const releasing = first.release();
    const second = t.acquire('k', create);
    await settle();
    expect(order).to.deep.equal(['create v1', 'destroy v1']);
    gate.resolve();
    await releasing;
    const lease = await second;
    expect(lease.value).to.equal('v2');
    expect(order).to.deep.equal(['create v1', 'destroy v1', 'destroyed v1', 'create v2']);
    await lease.release();
  });

  it('an acquire waiting on a failed destroy rejects with TEARDOWN_FAILED', async () => {
    const gate = deferred<void>();
    let fail = true;
    const t = table(async () => {
      await gate.promise;
      if (fail) throw new Error('stuck');
    });
    const lease = await t.acquire('k', async () => 'v');
    const releasing = lease.release();
    const waiting = t.acquire('k', async () => 'w');
    gate.resolve();
    expect(UvmError.is(await rejection(releasing), 'TEARDOWN_FAILED')).to.equal(true);
    expect(UvmError.is(await rejection(waiting), 'TEARDOWN_FAILED')).to.equal(true);
    fail = false;
    await lease.release();
    expect(t.size).to.equal(0);
  });

  it('an aborted waiter rejects ABORTED; its reference is dropped once the creation settles', async () => {
    const destroy = sinon.spy(async () => undefined);
    const t = table(destroy);
    const gate = deferred<void>();
    const create = async (): Promise<string> => {
      await gate.promise;
      return 'v';
    };
    const owner = t.acquire('k', create);
    const ac = new AbortController();
    const waiter = t.acquire('k', create, { signal: ac.signal });
    await settle();
    expect(t.entries()[0].refCount).to.equal(2);
    ac.abort();
    expect(UvmError.is(await rejection(waiter), 'ABORTED')).to.equal(true);
    gate.resolve();
    const lease = await owner;
    await settle();
    expect(t.entries()[0].refCount).to.equal(1);
    await lease.release();
    expect(destroy.callCount).to.equal(1);
  });

  it('an already-aborted signal rejects before anything is created', async () => {
    const t = table();
    const create = sinon.spy(async () => 'v');
    const err = await rejection(t.acquire('k', create, { signal: AbortSignal.abort() }));
    expect(UvmError.is(err, 'ABORTED')).to.equal(true);
    expect(create.callCount).to.equal(0);
  });

  it('a create failure that left something behind (a Residue result) keeps it as teardown-failed until a retry removes it', async () => {
    const destroyed: string[] = [];
    const t = table(async (v) => void destroyed.push(v));
    const err = await rejection(t.acquire('k', async () => new Residue(new UvmError('HCS_ERROR', 'half added'), 'half')));
    expect(UvmError.is(err, 'HCS_ERROR')).to.equal(true);
    expect(t.entries()).to.deep.include({ key: 'k', state: 'teardown-failed', refCount: 0, value: 'half', error: err });
    expect(UvmError.is(await rejection(t.acquire('k', async () => 'new')), 'TEARDOWN_FAILED')).to.equal(true);
    await t.retryFailedTeardowns();
    expect(destroyed).to.deep.equal(['half']);
    expect(t.size).to.equal(0);
  });

  it('a reservation whose commit resolves with a Residue: the commit rejects with its error, the key stays teardown-failed', async () => {
    const destroyed: string[] = [];
    const t = table(async (v) => void destroyed.push(v));
    const failure = new UvmError('HCS_ERROR', 'guest half failed, host half could not be undone');
    const r = t.reserve('k', () => ({ value: 'placed', cancel: () => undefined, commit: async () => new Residue(failure, 'left') }));
    expect(await rejection(r.commit())).to.equal(failure);
    expect(t.entries()).to.deep.include({ key: 'k', state: 'teardown-failed', refCount: 0, value: 'left', error: failure });
    // A plain rejection forgets the key (nothing was left).
    const other = t.reserve('j', () => ({ value: 'x', cancel: () => undefined, commit: () => Promise.reject(new UvmError('HCS_ERROR', 'refused')) }));
    expect(UvmError.is(await rejection(other.commit()), 'HCS_ERROR')).to.equal(true);
    expect(t.entries().map((e) => e.key)).to.deep.equal(['k']);
    await t.retryFailedTeardowns();
    expect(destroyed).to.deep.equal(['left']);
    expect(t.size).to.equal(0);
  });

  it('an effect runs with its entry already creating: a reservation of the key made in its synchronous part shares it and cannot start the effect again', async () => {
    const t = table();
    let commits = 0;
    let seen: string | undefined;
    let shared: boolean | undefined;
    const place = (): { value: string; commit(): Promise<void>; cancel(): void } => ({
      value: 'v',
      commit: () => {
        commits++;
        // The synchronous part of the effect meets its own key (e.g. a caller's hook asking for it).
        seen = t.entries()[0]?.state;
        const nested = t.reserve('k', place);
        shared = nested.shared;
        nested.cancel();
        return Promise.resolve();
      },
      cancel: () => undefined,
    });
    const lease = await t.reserve('k', place).commit();
    expect(seen).to.equal('creating');
    expect(shared).to.equal(true);
    expect(commits).to.equal(1);
    expect(t.entries()[0]).to.include({ state: 'live', refCount: 1 });
    await lease.release();
    expect(t.size).to.equal(0);
  });
});
