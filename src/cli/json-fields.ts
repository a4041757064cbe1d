import { ScenarioError } from './scenario-error.js';

/**
 * Typed readers over parsed JSON that throw a `ScenarioError` naming the field. `field` is the
 * path of `value` itself (`scenario.uvm.vpmem`); object members are read as `${field}.${key}` and
 * array items as `${field}[${i}]`.
 */
export const JsonFields = {
  /** A plain object whose keys are all in `allowed` (an unknown key is an error naming it). */
  object(value: unknown, field: string, allowed: readonly string[]): Record<string, unknown> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ScenarioError(field, `expected an object, got ${describeJson(value)}`);
    }
    const obj = value as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) {
        throw new ScenarioError(memberName(field, key), `unknown field (expected one of: ${allowed.join(', ')})`);
      }
    }
    return obj;
  },

  /** A plain object with any keys. */
  anyObject(value: unknown, field: string): Record<string, unknown> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ScenarioError(field, `expected an object, got ${describeJson(value)}`);
    }
    return value as Record<string, unknown>;
  },

  array(value: unknown, field: string): unknown[] {
    if (!Array.isArray(value)) throw new ScenarioError(field, `expected an array, got ${describeJson(value)}`);
    return value;
  },

  /** A string; non-empty unless `allowEmpty`. */
  string(value: unknown, field: string, options: { allowEmpty?: boolean } = {}): string {
    if (typeof value !== 'string') throw new ScenarioError(field, `expected a string, got ${describeJson(value)}`);
    if (!options.allowEmpty && value.length === 0) throw new ScenarioError(field, 'expected a non-empty string');
    return value;
  },

  boolean(value: unknown, field: string): boolean {
    if (typeof value !== 'boolean') throw new ScenarioError(field, `expected a boolean, got ${describeJson(value)}`);
    return value;
  },

  /** A non-negative safe integer. */
  count(value: unknown, field: string): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new ScenarioError(field, `expected a non-negative integer, got ${describeJson(value)}`);
    }
    return value;
  },

  /** One of `choices`. */
  oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
      throw new ScenarioError(field, `expected one of ${choices.map((c) => JSON.stringify(c)).join(', ')}, got ${describeJson(value)}`);
    }
    return value as T;
  },

  /** Throws "missing field" when `obj[key]` is undefined, else returns it. */
  required(obj: Record<string, unknown>, key: string, field: string): unknown {
    if (obj[key] === undefined) throw new ScenarioError(memberName(field, key), 'missing field');
    return obj[key];
  },
};

/** `scenario.uvm` + `id` → `scenario.uvm.id`. */
export function memberName(field: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${field}.${key}` : `${field}[${JSON.stringify(key)}]`;
}

/** A short description of a JSON value for error messages: `a number (3)`, `null`, `an array`. */
export function describeJson(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return `a string (${truncate(JSON.stringify(value))})`;
    case 'number':
      return `a number (${value})`;
    case 'boolean':
      return `a boolean (${value})`;
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
