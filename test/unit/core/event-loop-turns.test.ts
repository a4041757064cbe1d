import { expect } from 'chai';
import sinon from 'sinon';
import { nextTurn } from '../../../src/core/event-loop-turns.js';

/** Resolves in the check phase of the next turn that runs the immediates queued so far. */
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('nextTurn (callers started together take turns on the event loop)', () => {
  beforeEach(async () => {
    // Let an earlier test's last turn end: the next caller is then alone.
    await immediate();
    await immediate();
  });

  it('lets a lone caller go at once, before any immediate queued with it', async () => {
    const order: string[] = [];
    const sentinel = immediate().then(() => order.push('immediate'));
    await nextTurn();
    order.push('caller');
    await sentinel;
    expect(order).to.deep.equal(['caller', 'immediate']);
  });

  it('lets callers that ask in one turn go one per turn, first come first served', async () => {
    const order: string[] = [];
    const callers = ['a', 'b', 'c'].map((name) => nextTurn().then(() => order.push(name)));
    await Promise.resolve();
    expect(order, 'the first goes in this turn').to.deep.equal(['a']);
    await immediate();
    expect(order, 'the second in the next one').to.deep.equal(['a', 'b']);
    await immediate();
    expect(order).to.deep.equal(['a', 'b', 'c']);
    await Promise.all(callers);
    // Everyone has gone: the next lone caller goes at once again (after the turn still scheduled ends).
    await immediate();
    let alone = false;
    const lone = nextTurn().then(() => (alone = true));
    await Promise.resolve();
    expect(alone).to.equal(true);
    await lone;
  });

  it("callers still take their turns while a caller's fake timers are installed", async () => {
    const clock = sinon.useFakeTimers();
    try {
      const order: string[] = [];
      await Promise.all(['a', 'b', 'c'].map((name) => nextTurn().then(() => order.push(name))));
      expect(order).to.deep.equal(['a', 'b', 'c']);
    } finally {
      clock.restore();
    }
  });
});
