import type { ServiceIdentifier } from 'inversify';
import { UvmError } from './errors.js';
import { retainShape } from './retained-shapes.js';
import { directFsCalls, sharedHostFsWorker, type FsCalls, type FsDone } from './host-fs-worker.js';

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

/** One call per path: `fs` answers it in its callback form. */
type FsCall<R> = (path: string, done: FsDone<R>) => void;

/** One caller waiting for a path's call. */
interface Waiter<T> {
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/**
 * One call per path at a time: a request for a path whose call is still in flight shares it (e.g.
 * fifty allocations started together, each stat'ing the shared layers, make one call per layer
 * while the first is under way, whether they ask in one synchronous run or one per event-loop
 * turn). The answer is the path as it was after the first of those requests; a request after the
 * call settled makes a new one. Each caller turns the outcome into its own error (`fail`).
 */
class Batched<T> {
  readonly #inFlight = new Map<string, Waiter<T>[]>();

  constructor(
    private readonly call: FsCall<T>,
    private readonly fail: (err: unknown, path: string) => unknown,
  ) {}

  ask(path: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending = this.#inFlight.get(path);
      if (pending !== undefined) {
        pending.push({ resolve, reject });
        return;
      }
      const waiters: Waiter<T>[] = [{ resolve, reject }];
      this.#inFlight.set(path, waiters);
      const settle = (err: unknown, result?: T): void => {
        if (this.#inFlight.get(path) === waiters) this.#inFlight.delete(path);
        for (const w of waiters) {
          if (err) w.reject(this.fail(err, path));
          // A copy per caller: callers own their answer.
          else w.resolve(typeof result === 'object' && result !== null ? ({ ...result } as T) : (result as T));
        }
      };
      try {
        this.call(path, settle);
      } catch (err) {
        settle(err ?? new Error(`cannot ask for ${String(path)}`));
      }
    });
  }
}

export interface NodeHostFsOptions {
  /**
   * Where the calls run: by default the process's HostFsWorker (`sharedHostFsWorker()`), which
   * batches them on a worker thread; `false` for one node:fs call per request
   * (core/host-fs-worker.ts); or any `FsCalls` of the caller's (two callback-style calls
   * answering as node:fs does: an error with node's `code`, or the result).
   */
  worker?: FsCalls | false;
}

/** HostFs over node:fs: `stat` and the native `realpath`, batched on a worker thread by default. */
export class NodeHostFs implements HostFs {
  readonly #stat: Batched<HostStat>;
  readonly #realpath: Batched<string>;

  constructor(options: NodeHostFsOptions = {}) {
    const own = options.worker;
    if (own !== undefined && own !== false && (typeof own?.stat !== 'function' || typeof own.realpath !== 'function')) {
      throw new UvmError('INVALID_ARGUMENT', 'NodeHostFs: worker must be false or an object with stat and realpath functions');
    }
    const calls: FsCalls = own === false ? directFsCalls : (own ?? sharedHostFsWorker());
    this.#stat = new Batched<HostStat>(
      (path, done) => calls.stat(path, done),
      (err, path) => new UvmError('NOT_FOUND', `cannot stat ${path}`, { cause: err, details: { hostPath: path } }),
    );
    this.#realpath = new Batched<string>(
      (path, done) => calls.realpath(path, done),
      (err, path) => new UvmError('NOT_FOUND', `cannot resolve ${path}`, { cause: err, details: { hostPath: path } }),
    );
  }

  stat(path: string): Promise<HostStat> {
    return this.#stat.ask(path);
  }

  realpath(path: string): Promise<string> {
    return this.#realpath.ask(path);
  }
}

/**
 * A view of `inner` whose stat of a path `known` knows is answered with that (no I/O), e.g. a
 * layer the UVM already holds; everything else is asked of `inner`.
 */
export function withKnownFiles(inner: HostFs, known: (path: string) => HostStat | undefined): HostFs {
  return new KnownFiles(inner, known);
}

// The views below are classes, not objects of closures made per allocation: V8 keeps a function's
// optimized code only while a function object using it is alive, so closures made for one pod
// would run unoptimized in the next one after a full collection and be compiled again.

class KnownFiles implements HostFs {
  constructor(
    private readonly inner: HostFs,
    private readonly known: (path: string) => HostStat | undefined,
  ) {}

  stat(path: string): Promise<HostStat> {
    const stat = this.known(path);
    return stat === undefined ? this.inner.stat(path) : Promise.resolve(stat);
  }

  realpath(path: string): Promise<string> {
    return this.inner.realpath(path);
  }
}

/**
 * A view of `inner` that asks it at most once per path and operation: one allocation stats a
 * layer to check its kind and again for its size, and this makes that one `fs.stat`. Scope it to
 * one allocation (a file that changes meanwhile is seen as it first was). A failure is not shared:
 * a later caller asks again and gets its own error (callers add their own details to it).
 */
export function oncePerPath(inner: HostFs): HostFs {
  return new OncePerPath(inner);
}

class OncePerPath implements HostFs {
  readonly #stats = new Map<string, Promise<HostStat>>();
  readonly #realpaths = new Map<string, Promise<string>>();

  constructor(private readonly inner: HostFs) {}

  stat(path: string): Promise<HostStat> {
    return once(this.#stats, path, this.inner, statOf);
  }

  realpath(path: string): Promise<string> {
    return once(this.#realpaths, path, this.inner, realpathOf);
  }
}

/** `ask(inner, path)`'s promise, made once per path in `cache`; after a failure, asked again. */
function once<T>(cache: Map<string, Promise<T>>, path: string, inner: HostFs, ask: (inner: HostFs, path: string) => Promise<T>): Promise<T> {
  const cached = cache.get(path);
  if (cached !== undefined) return cached.catch(() => ask(inner, path));
  const first = ask(inner, path);
  cache.set(path, first);
  return first;
}

const statOf = (inner: HostFs, path: string): Promise<HostStat> => inner.stat(path);
const realpathOf = (inner: HostFs, path: string): Promise<string> => inner.realpath(path);

const idleView = retainShape(new OncePerPath(undefined as unknown as HostFs));
retainShape(new KnownFiles(idleView, () => undefined));
