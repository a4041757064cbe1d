import fs, { type Stats } from 'node:fs';
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

/** A node:fs call in its callback form (no promise or per-request result array of `fs.promises`). */
type FsCall<R> = (path: string, done: (err: NodeJS.ErrnoException | null, result?: R) => void) => void;

/**
 * One call per path at a time: a request for a path whose call is still in flight shares it (e.g.
 * fifty allocations started together, each stat'ing the shared layers, make one call per layer
 * while the first is under way, whether they ask in one synchronous run or one per event-loop
 * turn). The answer is the path as it was after the first of those requests; a request after the
 * call settled makes a new one. Each caller turns the outcome into its own result or error.
 */
class Batched<R> {
  readonly #inFlight = new Map<string, ((err: unknown, result?: R) => void)[]>();

  constructor(private readonly call: FsCall<R>) {}

  ask<T>(path: string, answer: (result: R) => T, fail: (err: unknown) => unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter = (err: unknown, result?: R): void => {
        if (err) reject(fail(err));
        else resolve(answer(result as R));
      };
      const pending = this.#inFlight.get(path);
      if (pending !== undefined) {
        pending.push(waiter);
        return;
      }
      const waiters = [waiter];
      this.#inFlight.set(path, waiters);
      const settle = (err: unknown, result?: R): void => {
        if (this.#inFlight.get(path) === waiters) this.#inFlight.delete(path);
        for (const w of waiters) w(err, result);
      };
      try {
        this.call(path, settle);
      } catch (err) {
        settle(err ?? new Error(`cannot ask for ${String(path)}`));
      }
    });
  }
}

const toHostStat = (s: Stats): HostStat => ({ isFile: s.isFile(), isDirectory: s.isDirectory(), size: s.size });

/** HostFs over node:fs (callback forms; `realpath` is the native one, as `fs.promises.realpath`). */
export class NodeHostFs implements HostFs {
  readonly #stat = new Batched<Stats>((path, done) => fs.stat(path, done));
  readonly #realpath = new Batched<string>((path, done) => fs.realpath.native(path, done));

  stat(path: string): Promise<HostStat> {
    return this.#stat.ask(path, toHostStat, (err) => new UvmError('NOT_FOUND', `cannot stat ${path}`, { cause: err, details: { hostPath: path } }));
  }

  realpath(path: string): Promise<string> {
    return this.#realpath.ask(
      path,
      (resolved) => resolved,
      (err) => new UvmError('NOT_FOUND', `cannot resolve ${path}`, { cause: err, details: { hostPath: path } }),
    );
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
