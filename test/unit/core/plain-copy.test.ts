import { expect } from 'chai';
import fc from 'fast-check';
import { plainCopy } from '../../../src/core/plain-copy.js';

describe('plainCopy (structuredClone of JSON-like trees, without the serializer)', () => {
  it('equals structuredClone for random JSON values, shares nothing with the input and keeps key order', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const copy = plainCopy(value);
        expect(copy).to.deep.equal(structuredClone(value));
        expect(JSON.stringify(copy)).to.equal(JSON.stringify(value));
        if (value !== null && typeof value === 'object') expect(copy).to.not.equal(value);
      }),
    );
  });

  it('anything that is not a plain tree is copied by structuredClone (shared and cyclic values, holes, extra array members, instances)', () => {
    const shared = { a: 1 };
    const dag = { x: shared, y: shared };
    const copy = plainCopy(dag);
    expect(copy.x).to.equal(copy.y); // one copy, referenced twice, as structuredClone does
    const cyclic: Record<string, unknown> = { n: 1 };
    cyclic.self = cyclic;
    const c2 = plainCopy(cyclic);
    expect(c2.self).to.equal(c2);
    const holes = [1, , 3]; // eslint-disable-line no-sparse-arrays
    expect(Object.keys(plainCopy(holes))).to.deep.equal(['0', '2']);
    const extra = Object.assign([1, 2], { tag: 'x' });
    expect(plainCopy(extra)).to.have.property('tag', 'x');
    const date = new Date(5);
    const withDate = plainCopy({ when: date });
    expect(withDate.when).to.be.instanceOf(Date).and.not.equal(date);
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { k: 1 });
    expect(Object.getPrototypeOf(plainCopy({ bare }).bare)).to.equal(Object.prototype);
  });

  it('throws as structuredClone does for what it cannot clone', () => {
    expect(() => plainCopy({ f: () => 1 })).to.throw(/could not be cloned/);
    expect(() => plainCopy([Symbol('s')])).to.throw(/could not be cloned/);
  });
});
