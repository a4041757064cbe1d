import { expect } from 'chai';
import { InOrder } from '../../../src/core/in-order.js';
import { settleAll } from '../../../src/core/settle-all.js';
import { ReleaseStack } from '../../../src/core/release-stack.js';
import { ReleasableLease } from '../../../src/core/lease.js';
import { deferred, settle } from './deferred.js';

describe('InOrder', () => {
  it('runs steps in the order places were taken, whatever order the pre-steps finish in', async () => {
    const order = new InOrder();
    const stats = [deferred<void>(), deferred<void>(), deferred<void>()];
    const ran: number[] = [];
    const calls = stats.map(async (stat, i) => {
      const turn = order.take();
      try {
        await stat.promise;
        return await turn.run(() => {
          ran.push(i);
          return i * 10;
        });
      } finally {
        turn.done();
      }
    });
    stats[2].resolve();
    stats[1].resolve();
    await settle();
    expect(ran).to.deep.equal([]);
    stats[0].resolve();
    expect(await Promise.all(calls)).to.deep.equal([0, 10, 20]);
    expect(ran).to.deep.equal([0, 1, 2]);
  });

  it('lets later places through when an earlier one fails before its step or its step throws', async () => {
    const order = new InOrder();
    const first = order.take();
    const second = order.take();
    const third = order.take();
    first.done(); // failed before its step
    let failed: unknown;
    await second
      .run(() => {
        throw new Error('step failed');
      })
      .catch((e: unknown) => (failed = e));
    expect((failed as Error).message).to.equal('step failed');
    expect(await third.run(() => 'ok')).to.equal('ok');
  });
});

describe('settleAll', () => {
  it('waits for every promise before rejecting with the first failure in input order', async () => {
    const slow = deferred<string>();
    let slowDone = false;
    const p = settleAll([Promise.reject(new Error('first')), slow.promise.then((v) => ((slowDone = true), v)), Promise.reject(new Error('second'))]);
    let rejected: unknown;
    void p.catch((e: unknown) => (rejected = e));
    await settle();
    expect(rejected, 'still waiting for the slow one').to.equal(undefined);
    slow.resolve('x');
    await settle();
    expect(slowDone).to.equal(true);
    expect((rejected as Error).message).to.equal('first');
  });

  it('resolves with every value in order', async () => {
    expect(await settleAll([Promise.resolve(1), Promise.resolve('a')])).to.deep.equal([1, 'a']);
  });
});

describe('ReleaseStack phases', () => {
  it('releases phase by phase, each phase concurrently, newest first within it', async () => {
    const started: string[] = [];
    const gates = new Map<string, ReturnType<typeof deferred<void>>>();
    const item = (name: string, phase: number): ReleasableLease<{ name: string; phase: number }> => {
      gates.set(name, deferred<void>());
      return new ReleasableLease({ name, phase }, async () => {
        started.push(name);
        await gates.get(name)!.promise;
      });
    };
    const stack = new ReleaseStack<ReleasableLease<{ name: string; phase: number }>>({ phase: (l) => l.value.phase });
    for (const [name, phase] of [['layer1', 1], ['layer2', 1], ['scratch', 1], ['overlay', 0], ['mount', 0]] as const) stack.push(item(name, phase));
    const releasing = stack.releaseAll();
    await settle();
    expect(started).to.deep.equal(['mount', 'overlay']);
    gates.get('mount')!.resolve();
    await settle();
    expect(started, 'phase 1 waits for all of phase 0').to.deep.equal(['mount', 'overlay']);
    gates.get('overlay')!.resolve();
    await settle();
    expect(started).to.deep.equal(['mount', 'overlay', 'scratch', 'layer2', 'layer1']);
    for (const g of gates.values()) g.resolve();
    await releasing;
    expect(stack.size).to.equal(0);
  });

  it('a failed phase stops the later phases; their items wait untouched for the retry', async () => {
    const released: string[] = [];
    let overlayFails = true;
    const item = (name: string, phase: number): ReleasableLease<{ phase: number }> =>
      new ReleasableLease({ phase }, async () => {
        if (name === 'overlay' && overlayFails) throw new Error('overlay busy');
        released.push(name);
      });
    const stack = new ReleaseStack<ReleasableLease<{ phase: number }>>({ phase: (l) => l.value.phase });
    stack.push(item('disk', 1));
    stack.push(item('overlay', 0));
    stack.push(item('mount', 0));
    let failed: unknown;
    await stack.releaseAll().catch((e: unknown) => (failed = e));
    expect((failed as AggregateError).errors).to.have.length(1);
    expect(released).to.deep.equal(['mount']);
    expect(stack.size).to.equal(2);
    overlayFails = false;
    await stack.releaseAll();
    expect(released).to.deep.equal(['mount', 'overlay', 'disk']);
  });
});
