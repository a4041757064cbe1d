import path from 'node:path';

/**
 * True when `p` is absolute on either kind of host: `/x`, `C:\x`, `\\server\share`, `\\.\pipe\x`.
 * A Windows path is never treated as relative on Linux (the simulator takes Windows host paths
 * as they are), nor a POSIX one on Windows.
 */
export function isAbsoluteHostPath(p: string): boolean {
  return path.posix.isAbsolute(p) || path.win32.isAbsolute(p);
}

/** `p` itself when absolute (see `isAbsoluteHostPath`), else resolved against `baseDir`. */
export function resolveHostPath(baseDir: string, p: string): string {
  return isAbsoluteHostPath(p) ? p : path.resolve(baseDir, p);
}
