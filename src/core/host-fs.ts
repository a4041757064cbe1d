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

/**
 * The same call for one path asked several times in one synchronous run of code (e.g. fifty
 * allocations started together, each stat'ing the shared layers) is made once. The call is made at
 * the first request, so the file system works on it while the rest of the run goes on (fifty
 * allocations validating their specs one after the other: the first one's answers are ready when
 * the run ends, not queued behind every other allocation's calls); a later request of the same run
 * shares it. The answer is the path as it was after the first request of the run. Each caller
 * turns the outcome into its own result or error.
 */
class Batched<T> {
  #batch: Map<string, Promise<T>> | undefined;

  constructor(private readonly call: (path: string) => Promise<T>) {}

  ask(path: string): Promise<T> {
    let batch = this.#batch;
    if (batch === undefined) {
      const opened = new Map<string, Promise<T>>();
      batch = this.#batch = opened;
      // Closes the batch once the synchronous run that opened it is over.
      queueMicrotask(() => {
        if (this.#batch === opened) this.#batch = undefined;
      });
    }
    let pending = batch.get(path);
    if (pending === undefined) {
      try {
        pending = this.call(path);
      } catch (err) {
        pending = Promise.reject(err as Error);
      }
      batch.set(path, pending);
    }
    return pending;
  }
}

/** HostFs over node:fs. */
export class NodeHostFs implements HostFs {
  readonly #stat = new Batched((path) => fs.stat(path));
  readonly #realpath = new Batched((path) => fs.realpath(path));

  stat(path: string): Promise<HostStat> {
    return this.#stat.ask(path).then(
      (s) => ({ isFile: s.isFile(), isDirectory: s.isDirectory(), size: s.size }),
      (err: unknown) => {
        throw new UvmError('NOT_FOUND', `cannot stat ${path}`, { cause: err, details: { hostPath: path } });
      },
    );
  }

  realpath(path: string): Promise<string> {
    return this.#realpath.ask(path).catch((err: unknown) => {
      throw new UvmError('NOT_FOUND', `cannot resolve ${path}`, { cause: err, details: { hostPath: path } });
    });
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
