import { expect } from 'chai';
import fc from 'fast-check';
import { plainCopy, setOwn, withOwn } from '../../../src/core/plain-copy.js';
import { omitEmpty } from '../../../src/hcs/schema.js';
import { plain } from '../../../src/recovery/records/codec.js';

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

describe('a "__proto__" key of input copied key by key stays an own property (never the copy\'s prototype)', () => {
  // JSON.parse (and structuredClone) keep `"__proto__"` as an own data property; an assignment
  // `out[key] = value` would instead set the copy's prototype, so the copy would inherit the input's fields.
  const doc = (): Record<string, unknown> => JSON.parse('{"a":1,"__proto__":{"readonly":true},"b":[{"__proto__":false}]}') as Record<string, unknown>;
  const check = (copy: Record<string, unknown>, expected: Record<string, unknown>): void => {
    expect(Object.getPrototypeOf(copy)).to.equal(Object.prototype);
    expect(Object.keys(copy)).to.deep.equal(Object.keys(expected));
    expect(copy.readonly).to.equal(undefined);
    expect(Object.getOwnPropertyDescriptor(copy, '__proto__')).to.deep.include({ enumerable: true, writable: true });
    expect(JSON.stringify(copy)).to.equal(JSON.stringify(expected));
  };

  it('plainCopy (equals structuredClone)', () => {
    const value = doc();
    const copy = plainCopy(value);
    expect(copy).to.deep.equal(structuredClone(value));
    check(copy, value);
  });

  it('omitEmpty (wire documents)', () => {
    const value = doc();
    check(omitEmpty(value), { a: 1, ['__proto__']: { readonly: true }, b: [{}] });
  });

  it('the journal codec (plain)', () => {
    const value = doc();
    check(plain(value) as Record<string, unknown>, value);
  });

  it('withOwn', () => {
    const value = doc();
    const copy = withOwn(value, 'c', 3);
    check(copy, { ...value, c: 3 });
  });

  it('setOwn', () => {
    const out: Record<string, unknown> = {};
    setOwn(out, '__proto__', { x: 1 });
    setOwn(out, 'y', 2);
    expect(Object.getPrototypeOf(out)).to.equal(Object.prototype);
    expect(Object.keys(out)).to.deep.equal(['__proto__', 'y']);
    expect(out.x).to.equal(undefined);
  });
});

describe('withOwn (`{ ...o, [key]: value }` without the spread)', () => {
  it('equals the spread for random objects and keys: same own keys in the same order, same values, a new object', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.string(), fc.jsonValue(), (o, key, value) => {
        const copy = withOwn(o, key, value);
        const spread = { ...o, [key]: value };
        expect(Object.keys(copy)).to.deep.equal(Object.keys(spread));
        expect(copy).to.deep.equal(spread);
        expect(copy).to.not.equal(o);
      }),
    );
  });

  it('copies enumerable symbol keys and leaves out non-enumerable and inherited ones, as a spread', () => {
    const sym = Symbol('s');
    const hidden = Symbol('h');
    const o: Record<string | symbol, unknown> = Object.create({ inherited: 1 }) as Record<string | symbol, unknown>;
    o.a = 1;
    o[sym] = 2;
    Object.defineProperty(o, 'nonEnum', { value: 3, enumerable: false });
    Object.defineProperty(o, hidden, { value: 4, enumerable: false });
    const copy = withOwn(o, 'b', 5) as Record<string | symbol, unknown>;
    expect(Reflect.ownKeys(copy)).to.deep.equal(Reflect.ownKeys({ ...o, b: 5 }));
    expect(copy[sym]).to.equal(2);
    expect(Object.getPrototypeOf(copy)).to.equal(Object.prototype);
  });
});
