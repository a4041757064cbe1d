import path from 'node:path';

/** A `.` or `..` segment, or an empty one inside the path (`//`): what `path.posix.normalize` would change. */
const NOT_NORMAL_POSIX = /\/\/|(?:^|\/)\.\.?(?:\/|$)/;

/**
 * `flavour.join(first, ...rest)`, without normalising when it would change nothing: POSIX parts that are
 * non-empty and join to a path with no `.`, `..` or empty segment are returned joined with `/`
 * (what `path.posix.join` returns for them, without its character-by-character rebuild; a pod
 * joins thousands of layer and guest paths). Anything else goes through `flavour.join`.
 */
export function joinPath(flavour: path.PlatformPath, first: string, rest: readonly string[]): string {
  if (flavour === path.posix && first.length > 0) {
    let joined = first;
    for (const part of rest) {
      if (part.length === 0) return flavour.join(first, ...rest);
      joined = `${joined}/${part}`;
    }
    if (!NOT_NORMAL_POSIX.test(joined)) return joined;
  }
  return flavour.join(first, ...rest);
}

/**
 * Host path helpers. The host is Windows in production and Linux under the simulator, so the path
 * flavour is chosen per path: anything with a drive letter, a backslash or a UNC/device prefix is a
 * Windows path; everything else is POSIX.
 */
export const hostPaths = {
  /** True when `p` is a Windows-style path (drive letter, backslash, `\\?\`, `\\.\`). */
  isWindows(p: string): boolean {
    return /^[A-Za-z]:/.test(p) || p.includes('\\');
  },

  /** `dir` joined with `names` in `dir`'s flavour (`path.join`). */
  join(dir: string, ...names: string[]): string {
    return joinPath(hostPaths.flavour(dir), dir, names);
  },

  /** The `node:path` flavour for `p`. */
  flavour(p: string): path.PlatformPath {
    return hostPaths.isWindows(p) ? path.win32 : path.posix;
  },

  /** True when `p` is absolute in its flavour (`C:\x`, `\\server\share`, `\\.\PHYSICALDRIVE0`, `/x`). */
  isAbsolute(p: string): boolean {
    if (hostPaths.isWindows(p)) return /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\');
    return path.posix.isAbsolute(p);
  },

  /** Normalised, without a trailing separator (except for a root such as `C:\` or `/`). */
  clean(p: string): string {
    const f = hostPaths.flavour(p);
    const n = f.normalize(p);
    const root = f.parse(n).root;
    return n.length > root.length && (n.endsWith(f.sep) || n.endsWith('/')) ? n.slice(0, -1) : n;
  },

  /** The parent directory of a cleaned path. */
  dirname(p: string): string {
    return hostPaths.flavour(p).dirname(hostPaths.clean(p));
  },

  /** The last component of a cleaned path. */
  basename(p: string): string {
    return hostPaths.flavour(p).basename(hostPaths.clean(p));
  },

  /** `dir` with exactly one trailing separator (hcsshim's Plan9 single-file share path). */
  withTrailingSeparator(dir: string): string {
    const f = hostPaths.flavour(dir);
    return dir.endsWith(f.sep) ? dir : `${dir}${f.sep}`;
  },
} as const;
