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
 * One call per path at a time: a request for a path whose call is still in flight shares it (e.g.
 * fifty allocations started together, each stat'ing the shared layers, make one call per layer
 * while the first is under way, whether they ask in one synchronous run or one per event-loop
 * turn). The answer is the path as it was after the first of those requests; a request after the
 * call settled makes a new one. Each caller turns the outcome into its own result or error.
 */
class Batched<T> {
  readonly #inFlight = new Map<string, Promise<T>>();

  constructor(private readonly call: (path: string) => Promise<T>) {}

  ask(path: string): Promise<T> {
    let pending = this.#inFlight.get(path);
    if (pending === undefined) {
      let started: Promise<T>;
      try {
        started = this.call(path);
      } catch (err) {
        started = Promise.reject(err as Error);
      }
      const settled = (): void => {
        if (this.#inFlight.get(path) === started) this.#inFlight.delete(path);
      };
      started.then(settled, settled);
      this.#inFlight.set(path, started);
      pending = started;
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
