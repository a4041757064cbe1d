import { promises as fs } from 'node:fs';
import type { ServiceIdentifier } from 'inversify';
import { UvmError } from './errors.js';

/** What the managers and planners need to know about a host path. */
export interface HostStat {
  isFile: boolean;
  isDirectory: boolean;
  /** Size in bytes (files). */
  size: number;
}

/**
 * The host file system, as a port: the only I/O the planners and managers do besides HCS.
 * Rejects with NOT_FOUND when the path does not exist.
 */
export interface HostFs {
  stat(path: string): Promise<HostStat>;
  /** The path with every symlink resolved. */
  realpath(path: string): Promise<string>;
}
/** DI token of the `HostFs` port. */
export const HostFs: ServiceIdentifier<HostFs> = Symbol.for('uvm-orchestrator.HostFs');

/** HostFs over node:fs. */
export class NodeHostFs implements HostFs {
  async stat(path: string): Promise<HostStat> {
    try {
      const s = await fs.stat(path);
      return { isFile: s.isFile(), isDirectory: s.isDirectory(), size: s.size };
    } catch (err) {
      throw new UvmError('NOT_FOUND', `cannot stat ${path}`, { cause: err, details: { hostPath: path } });
    }
  }

  async realpath(path: string): Promise<string> {
    try {
      return await fs.realpath(path);
    } catch (err) {
      throw new UvmError('NOT_FOUND', `cannot resolve ${path}`, { cause: err, details: { hostPath: path } });
    }
  }
}

/**
 * A view of `inner` that asks it at most once per path and operation: one allocation stats a
 * layer to check its kind and again for its size, and this makes that one `fs.stat`. Scope it to
 * one allocation (a file that changes meanwhile is seen as it first was). A failure is not shared:
 * a later caller asks again and gets its own error (callers add their own details to it).
 */
export function oncePerPath(inner: HostFs): HostFs {
  const stats = new Map<string, Promise<HostStat>>();
  const realpaths = new Map<string, Promise<string>>();
  const once = <T>(cache: Map<string, Promise<T>>, path: string, call: () => Promise<T>): Promise<T> => {
    const cached = cache.get(path);
    if (cached !== undefined) return cached.catch(call);
    const first = call();
    cache.set(path, first);
    return first;
  };
  return {
    stat: (path) => once(stats, path, () => inner.stat(path)),
    realpath: (path) => once(realpaths, path, () => inner.realpath(path)),
  };
}
