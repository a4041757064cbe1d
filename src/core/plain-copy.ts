/**
 * `structuredClone` for the JSON-like trees the library copies on its hot paths (OCI specs and
 * mounts: plain objects, dense arrays, primitives), without the serializer round trip. Anything
 * else anywhere in the tree — a class instance, a null-prototype object, an array with holes or
 * extra members, a value reached twice (shared or cyclic), a function or symbol — makes it copy
 * the whole value with `structuredClone` instead, so the result (or the DataCloneError) is
 * exactly `structuredClone(value)`'s.
 */
export function plainCopy<T>(value: T): T {
  if (value === null || typeof value !== 'object') return typeof value === 'function' || typeof value === 'symbol' ? structuredClone(value) : value;
  const seen = new Set<object>();
  const copy = copyTree(value as object, seen);
  return (copy === NOT_PLAIN ? structuredClone(value) : copy) as T;
}

const NOT_PLAIN = Symbol('not plain');

function copyTree(value: object, seen: Set<object>): unknown {
  if (seen.has(value)) return NOT_PLAIN;
  seen.add(value);
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype || Object.keys(value).length !== value.length) return NOT_PLAIN;
    const out: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const c = copyMember(value[i], seen);
      if (c === NOT_PLAIN) return NOT_PLAIN;
      out[i] = c;
    }
    return out;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return NOT_PLAIN;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const c = copyMember((value as Record<string, unknown>)[key], seen);
    if (c === NOT_PLAIN) return NOT_PLAIN;
    setOwn(out, key, c);
  }
  return out;
}

function copyMember(member: unknown, seen: Set<object>): unknown {
  if (member === null) return null;
  switch (typeof member) {
    case 'object':
      return copyTree(member, seen);
    case 'function':
    case 'symbol':
      return NOT_PLAIN;
    default:
      return member;
  }
}

/**
 * `{ ...o, [key]: value }` for a hot path: a copy of `o`'s own enumerable properties (string keys
 * in order, then symbols, as a spread) with `key` set last (or replaced in place). On Node 20 an
 * object spread followed by another property takes V8's slow path — about a microsecond per
 * property after the spread, against tens of nanoseconds for this copy (docs/performance.md,
 * session 12).
 */
export function withOwn<T extends object, K extends string, V>(o: T, key: K, value: V): Omit<T, K> & { [P in K]: V } {
  const out: Record<string | symbol, unknown> = {};
  for (const k of Object.keys(o)) setOwn(out as Record<string, unknown>, k, (o as Record<string, unknown>)[k]);
  for (const s of Object.getOwnPropertySymbols(o)) if (Object.prototype.propertyIsEnumerable.call(o, s)) out[s] = (o as Record<symbol, unknown>)[s];
  setOwn(out as Record<string, unknown>, key, value);
  return out as Omit<T, K> & { [P in K]: V };
}

/**
 * `out[key] = value` as an own, enumerable data property — also for the key `__proto__`, which an
 * assignment would take as the object's prototype (a JSON document may have that key: JSON.parse
 * and structuredClone keep it as an own property). For copies made key by key from input.
 */
export function setOwn(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
  else out[key] = value;
}
