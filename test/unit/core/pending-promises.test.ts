import { expect } from 'chai';
import { pendingPromises } from '../../../src/core/pending-promises.js';

describe('pendingPromises (library-created promises, counted for the soak)', () => {
  it('open() counts one until its close function is called (idempotent)', () => {
    const before = pendingPromises.total;
    const close = pendingPromises.open('test-kind');
    expect(pendingPromises.total).to.equal(before + 1);
    expect(pendingPromises.byKind()['test-kind']).to.equal(1);
    close();
    close();
    expect(pendingPromises.total).to.equal(before);
    expect(pendingPromises.byKind()).to.not.have.property('test-kind');
  });

  it('track() counts a promise until it settles, and passes its outcome through', async () => {
    const before = pendingPromises.total;
    let resolve!: (v: number) => void;
    const ok = pendingPromises.track('test-ok', new Promise<number>((r) => (resolve = r)));
    const failed = pendingPromises.track('test-failed', Promise.reject(new Error('boom')));
    expect(pendingPromises.total).to.equal(before + 2);
    resolve(7);
    expect(await ok).to.equal(7);
    const err = await failed.catch((e: unknown) => e);
    expect((err as Error).message).to.equal('boom');
    expect(pendingPromises.total).to.equal(before);
  });

  it('counter() is one shared count per kind, in total and byKind() while non-zero', () => {
    const before = pendingPromises.total;
    const c = pendingPromises.counter('test-counter');
    expect(pendingPromises.counter('test-counter')).to.equal(c);
    c.n++;
    c.n++;
    const close = pendingPromises.open('test-counter');
    expect(pendingPromises.total).to.equal(before + 3);
    expect(pendingPromises.byKind()['test-counter']).to.equal(3);
    close();
    c.n -= 2;
    expect(pendingPromises.total).to.equal(before);
    expect(pendingPromises.byKind()).to.not.have.property('test-counter');
  });
});
