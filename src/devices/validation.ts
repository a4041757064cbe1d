import path from 'node:path';
import { invalidArgument, UvmError } from '../core/errors.js';
import type { GuestOs } from './device-types.js';
import { hostPaths } from './host-paths.js';

/**
 * Input validation shared by every manager and the UtilityVm options. Each check throws
 * INVALID_ARGUMENT (before any HCS call) and returns the value it accepted.
 */
export const validate = {
  /** A non-empty absolute host path without NUL characters. */
  hostPath(value: unknown, what = 'host path'): string {
    if (validate.isHostPath(value)) return value;
    const s = validate.nonEmpty(value, what);
    throw invalidArgument(`${what} must be absolute: ${s}`, { hostPath: s });
  },

  /** True when `hostPath` accepts `value` (the same check, for callers that name the input only on a failure). */
  isHostPath(value: unknown): value is string {
    return typeof value === 'string' && value.length > 0 && !value.includes('\0') && hostPaths.isAbsolute(value);
  },

  /** An absolute guest path (in the guest's flavour) without NUL characters or `..` components. */
  guestPath(os: GuestOs, value: unknown, what = 'guest path'): string {
    const s = validate.nonEmpty(value, what);
    const absolute = os === 'linux' ? s.startsWith('/') : /^[A-Za-z]:[\\/]/.test(s) || s.startsWith('\\\\');
    if (!absolute) throw invalidArgument(`${what} must be absolute: ${s}`, { guestPath: s });
    if (s.split(/[\\/]/).includes('..')) throw invalidArgument(`${what} must not contain "..": ${s}`, { guestPath: s });
    return s;
  },

  /** A single name: no separators, not `.`/`..`, no NUL, at most 255 characters. */
  name(value: unknown, what = 'name'): string {
    const s = validate.nonEmpty(value, what);
    if (/[\\/]/.test(s) || s === '.' || s === '..' || s.length > 255) {
      throw invalidArgument(`${what} must be a plain name without separators: ${s}`);
    }
    return s;
  },

  /** A non-empty string without NUL characters. */
  nonEmpty(value: unknown, what: string): string {
    if (typeof value !== 'string' || value.length === 0) throw invalidArgument(`${what} must be a non-empty string`);
    if (value.includes('\0')) throw invalidArgument(`${what} must not contain NUL characters`);
    return value;
  },

  /** A boolean (or absent → `fallback`). */
  boolean(value: unknown, what: string, fallback?: boolean): boolean {
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'boolean') throw invalidArgument(`${what} must be a boolean`);
    return value;
  },

  /** An integer in [min, max] (or absent → `fallback`). */
  integer(value: unknown, what: string, min: number, max: number, fallback?: number): number {
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw invalidArgument(`${what} must be an integer in ${min}..${max}, got ${String(value)}`);
    }
    return value;
  },
} as const;

/** `path.posix` or `path.win32` for a guest OS. */
export function guestFlavour(os: GuestOs): path.PlatformPath {
  return os === 'linux' ? path.posix : path.win32;
}

/** Stats `hostPath` for a share: a file or a directory; INVALID_ARGUMENT for anything else. */
export async function statKind(
  hostFs: { stat(path: string): Promise<{ isFile: boolean; isDirectory: boolean }> },
  hostPath: string,
  what: string,
): Promise<'file' | 'directory'> {
  const st = await hostFs.stat(hostPath);
  if (st.isDirectory) return 'directory';
  if (st.isFile) return 'file';
  throw new UvmError('INVALID_ARGUMENT', `${what} is neither a file nor a directory: ${hostPath}`, { details: { hostPath } });
}
