import { expect } from 'chai';
import { ReleaseStack } from '../../../src/core/release-stack.js';
import { ReleasableLease } from '../../../src/core/lease.js';
import { UvmError } from '../../../src/core/errors.js';

describe('ReleaseStack', () => {
  it('releases in LIFO order', async () => {
    const order: string[] = [];
    const stack = new ReleaseStack();
    for (const name of ['a', 'b', 'c']) stack.push(new ReleasableLease(name, async () => void order.push(name)));
    await stack.releaseAll();
    expect(order).to.deep.equal(['c', 'b', 'a']);
    expect(stack.size).to.equal(0);
  });

  it('continues past failures, names every failure, and retries only the failed items', async () => {
    const order: string[] = [];
    let failing = new Set(['b', 'd']);
    const stack = new ReleaseStack();
    for (const name of ['a', 'b', 'c', 'd']) {
      stack.push(
        new ReleasableLease(name, async () => {
          order.push(name);
          if (failing.has(name)) throw new UvmError('HCS_ERROR', `fail ${name}`);
        }),
      );
    }
    let caught: unknown;
    try {
      await stack.releaseAll();
    } catch (err) {
      caught = err;
    }
    expect(caught).to.be.instanceOf(AggregateError);
    expect(UvmError.is(caught, 'RELEASE_FAILED')).to.equal(true);
    expect((caught as AggregateError).errors).to.have.length(2);
    expect(order).to.deep.equal(['d', 'c', 'b', 'a']);
    expect(stack.size).to.equal(2);
    failing = new Set();
    await stack.releaseAll();
    expect(order).to.deep.equal(['d', 'c', 'b', 'a', 'd', 'b']);
    expect(stack.size).to.equal(0);
  });

  it('is AsyncDisposable and supports removing an item its owner released', async () => {
    const order: string[] = [];
    const stack = new ReleaseStack();
    const a = stack.push(new ReleasableLease('a', async () => void order.push('a')));
    const b = stack.push(new ReleasableLease('b', async () => void order.push('b')));
    expect(stack.remove(a)).to.equal(true);
    expect(stack.remove(a)).to.equal(false);
    await stack[Symbol.asyncDispose]();
    expect(order).to.deep.equal(['b']);
    expect(b.released).to.equal(true);
  });
});

describe('ReleasableLease', () => {
  it('retries a failed release and never runs a successful one twice', async () => {
    let calls = 0;
    const lease = new ReleasableLease('v', async () => {
      calls++;
      if (calls === 1) throw new Error('first');
    });
    let failed = false;
    await lease.release().catch(() => (failed = true));
    expect(failed).to.equal(true);
    expect(lease.released).to.equal(false);
    await lease.release();
    await lease.release();
    expect(calls).to.equal(2);
    expect(lease.released).to.equal(true);
    let code: string | undefined;
    try {
      lease.assertLive();
    } catch (err) {
      code = UvmError.is(err) ? err.code : undefined;
    }
    expect(code).to.equal('ALREADY_RELEASED');
  });
});

describe('UvmError', () => {
  it('is recognised by brand and code, and keeps its cause', () => {
    const cause = new Error('inner');
    const err = new UvmError('NO_SLOT', 'full', { cause, details: { kind: 'scsi' } });
    expect(UvmError.is(err)).to.equal(true);
    expect(UvmError.is(err, 'NO_SLOT', 'LAYER_TOO_LARGE')).to.equal(true);
    expect(UvmError.is(err, 'LAYER_TOO_LARGE')).to.equal(false);
    expect(UvmError.is(new Error('x'))).to.equal(false);
    expect(UvmError.is({ code: 'NO_SLOT' })).to.equal(false);
    expect(err.cause).to.equal(cause);
    expect(err.details).to.deep.equal({ kind: 'scsi' });
  });
});
