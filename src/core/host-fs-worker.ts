/**
 * How NodeHostFs reaches the file system: `stat` and `realpath` of host paths, in callback form.
 *
 * `directFsCalls` makes one node:fs call per request (libuv's thread pool). `HostFsWorker` runs
 * them in batches on one worker thread with the synchronous calls: every request made in one
 * event-loop turn goes in one message, answered by one message. On small hosts waking another
 * thread is what a request costs: a C = 64 pod start asks for about 300 paths, which through the
 * thread pool is about 300 wake-ups of a pool thread and as many of the main thread, and through
 * the worker a handful (docs/performance.md, "Session 10" under `pod:`).
 *
 * The event loop never waits on the worker, and a slow or hung path does not hold up the others:
 * - until the worker is up (it starts with the first request), requests go to node:fs directly;
 * - a batch unanswered after `stallMs` is asked again of node:fs, request by request (whichever
 *   answer comes first is taken), and while it stays unanswered every new request goes to node:fs
 *   directly (as if there were no worker; a hung path then holds a thread-pool thread, as it would);
 * - if the worker dies, its unanswered requests are asked of node:fs; it is started again on a later
 *   request, at most `MAX_STARTS` times per process.
 * The worker does not keep the process alive unless it has a request to answer.
 */
import fs, { type Stats } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { HostStat } from './host-fs.js';
import { errnoException } from './errors.js';
import { retainShape } from './retained-shapes.js';

/** One request's outcome, as node:fs reports it. */
export type FsDone<R> = (err: NodeJS.ErrnoException | null, result?: R) => void;

/** The two calls NodeHostFs makes. */
export interface FsCalls {
  stat(path: string, done: FsDone<HostStat>): void;
  realpath(path: string, done: FsDone<string>): void;
}

/** The first `fs.Stats` answer, kept so node's Stats map survives full collections (core/retained-shapes.ts). */
let statsShape: Stats | undefined;

const toHostStat = (s: Stats): HostStat => {
  if (statsShape === undefined) statsShape = retainShape(s);
  return { isFile: s.isFile(), isDirectory: s.isDirectory(), size: s.size };
};

/** One node:fs call per request (`realpath` is the native one, as `fs.promises.realpath`). */
export const directFsCalls: FsCalls = {
  stat(path, done) {
    try {
      fs.stat(path, (err, s) => (err ? done(err) : done(null, toHostStat(s))));
    } catch (err) {
      done(err as NodeJS.ErrnoException); // refused synchronously (e.g. a NUL byte)
    }
  },
  realpath(path, done) {
    try {
      fs.realpath.native(path, (err, resolved) => (err ? done(err) : done(null, resolved)));
    } catch (err) {
      done(err as NodeJS.ErrnoException);
    }
  },
};

/** Captured at load so that fake timers installed later (a consumer's tests) never hold a request back. */
const realSetImmediate = globalThis.setImmediate;
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

const STAT = 0;
const REALPATH = 1;
type FsOp = typeof STAT | typeof REALPATH;

/** Default for `stallMs`: far above a local stat (µs) or a batch of them, below any caller's deadline. */
const DEFAULT_STALL_MS = 100;
/** Worker starts per HostFsWorker; after that every request goes to node:fs directly. */
const MAX_STARTS = 3;

export interface HostFsWorkerOptions {
  /** How long a batch may go unanswered before it, and every new request, goes to node:fs (ms). */
  stallMs?: number;
  /** The worker's entry module (tests). */
  entry?: URL;
}

interface Request {
  op: FsOp;
  path: string;
  done: FsDone<HostStat> | FsDone<string>;
  settled: boolean;
}

interface Batch {
  requests: Request[];
  sentAt: number;
  /** Its unanswered requests were asked of node:fs (stalled, or the worker died). */
  reissued: boolean;
}

/** What a HostFsWorker has done so far (tests and benchmarks). */
export interface HostFsWorkerCounts {
  /** Messages sent to the worker. */
  batches: number;
  /** Requests answered by the worker. */
  answered: number;
  /** Requests sent to node:fs directly (worker not up, stalled, or gone). */
  direct: number;
  /** Requests of stalled or lost batches asked again of node:fs. */
  reissued: number;
  /** Worker threads started. */
  starts: number;
}

function settle(request: Request, err: NodeJS.ErrnoException | null, result?: HostStat | string): void {
  if (request.settled) return;
  request.settled = true;
  (request.done as FsDone<HostStat | string>)(err, result);
}

function askDirect(request: Request): void {
  const done = (err: NodeJS.ErrnoException | null, result?: HostStat | string): void => settle(request, err, result);
  if (request.op === STAT) directFsCalls.stat(request.path, done);
  else directFsCalls.realpath(request.path, done);
}

export class HostFsWorker implements FsCalls {
  readonly #stallMs: number;
  readonly #entry: URL;
  #worker: Worker | undefined;
  #online = false;
  #queue: Request[] = [];
  #flushScheduled = false;
  /** Sent and not yet answered, oldest first (the worker answers in order). */
  #inFlight: Batch[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Resolves once the running worker takes requests, or with false once it is gone or could not start. */
  #ready: Promise<boolean> = Promise.resolve(false);
  readonly #counts: HostFsWorkerCounts = { batches: 0, answered: 0, direct: 0, reissued: 0, starts: 0 };
  readonly #flush = (): void => this.#send();
  readonly #checkStalled = (): void => this.#onTimer();

  constructor(options: HostFsWorkerOptions = {}) {
    this.#stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    this.#entry = options.entry ?? new URL('./host-fs-thread.js', import.meta.url);
  }

  get counts(): HostFsWorkerCounts {
    return { ...this.#counts };
  }

  /** Starts the worker if it is not running; resolves once it takes requests (false: it could not start). */
  start(): Promise<boolean> {
    this.#start();
    const worker = this.#worker;
    if (worker === undefined || this.#online) return this.#ready;
    // A caller waiting for it keeps the process alive until it is up.
    worker.ref();
    return this.#ready.then((up) => {
      this.#idleIfSettled();
      return up;
    });
  }

  stat(path: string, done: FsDone<HostStat>): void {
    this.#ask({ op: STAT, path, done, settled: false });
  }

  realpath(path: string, done: FsDone<string>): void {
    this.#ask({ op: REALPATH, path, done, settled: false });
  }

  /** Stops the worker; its unanswered requests are asked of node:fs. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#lost(worker);
    await worker?.terminate();
  }

  #ask(request: Request): void {
    if (!this.#usable()) {
      this.#counts.direct++;
      askDirect(request);
      return;
    }
    this.#queue.push(request);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      realSetImmediate(this.#flush);
    }
  }

  /** The worker is up and not stalled; starts it (for later requests) if it is not running. */
  #usable(): boolean {
    if (!this.#online) {
      this.#start();
      return false;
    }
    const oldest = this.#inFlight[0];
    return oldest === undefined || performance.now() - oldest.sentAt < this.#stallMs;
  }

  #start(): void {
    if (this.#worker !== undefined || this.#counts.starts >= MAX_STARTS) return;
    this.#counts.starts++;
    let worker: Worker;
    try {
      // No flags of this process (`--input-type`, loaders, …): the entry needs none, and some stop it from loading.
      worker = new Worker(this.#entry, { execArgv: [] });
    } catch {
      this.#counts.starts = MAX_STARTS; // workers are not available here
      return;
    }
    this.#worker = worker;
    this.#ready = new Promise<boolean>((resolve) => {
      // Up once its module has loaded and said so (the worker's 'online' event comes before: a
      // thread that cannot load its module must not be sent requests).
      worker.on('message', (out: unknown[] | 'ready') => {
        if (this.#worker !== worker) return;
        if (out !== 'ready') return this.#answer(out);
        this.#online = true;
        resolve(true);
      });
      worker.on('error', () => {
        this.#lost(worker);
        resolve(false);
      });
      worker.on('exit', () => {
        this.#lost(worker);
        resolve(false);
      });
    });
    // After the listeners: adding a 'message' listener refs the worker again.
    worker.unref();
  }

  #send(): void {
    this.#flushScheduled = false;
    const requests = this.#queue;
    this.#queue = [];
    const worker = this.#worker;
    if (worker === undefined || !this.#usable()) {
      this.#counts.direct += requests.length;
      for (const r of requests) askDirect(r);
      return;
    }
    const message = new Array<unknown>(requests.length * 2);
    for (let i = 0; i < requests.length; i++) {
      message[2 * i] = requests[i]!.op;
      message[2 * i + 1] = requests[i]!.path;
    }
    this.#inFlight.push({ requests, sentAt: performance.now(), reissued: false });
    if (this.#inFlight.length === 1) worker.ref();
    this.#counts.batches++;
    worker.postMessage(message);
    this.#armTimer();
  }

  #answer(out: unknown[]): void {
    const batch = this.#inFlight.shift();
    if (batch === undefined) return;
    const { requests } = batch;
    for (let i = 0, o = 0; i < requests.length; i++, o += 4) {
      const request = requests[i]!;
      if (request.settled) continue;
      this.#counts.answered++;
      if (out[o] !== 0) {
        const errno = out[o + 2] as number;
        const syscall = request.op === STAT ? 'stat' : 'realpath';
        settle(request, errnoException({ message: String(out[o + 3]), code: String(out[o + 1]), errno: errno === 0 ? undefined : errno, syscall, path: request.path }));
      }
      else if (request.op === STAT) {
        const kind = out[o + 1];
        settle(request, null, { isFile: kind === 1, isDirectory: kind === 2, size: out[o + 2] as number });
      } else settle(request, null, out[o + 1] as string);
    }
    this.#idleIfSettled();
  }

  /** Drops the worker's hold on the process (and the stall timer) once nothing waits for it. */
  #idleIfSettled(): void {
    if (this.#inFlight.some((b) => !b.reissued)) return;
    this.#worker?.unref();
    if (this.#inFlight.length === 0 && this.#timer !== undefined) {
      realClearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #armTimer(): void {
    if (this.#timer !== undefined) return;
    const oldest = this.#inFlight.find((b) => !b.reissued);
    if (oldest === undefined) return;
    const wait = Math.max(0, oldest.sentAt + this.#stallMs - performance.now());
    this.#timer = realSetTimeout(this.#checkStalled, wait);
    this.#timer.unref();
  }

  #onTimer(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const batch of this.#inFlight) {
      if (!batch.reissued && now - batch.sentAt >= this.#stallMs) this.#reissue(batch);
    }
    this.#idleIfSettled();
    this.#armTimer();
  }

  #reissue(batch: Batch): void {
    batch.reissued = true;
    for (const request of batch.requests) {
      if (request.settled) continue;
      this.#counts.reissued++;
      askDirect(request);
    }
  }

  /** The worker is gone (exited, failed, or closed): what it still owed is asked of node:fs. */
  #lost(worker: Worker | undefined): void {
    if (worker === undefined || this.#worker !== worker) return;
    this.#worker = undefined;
    this.#online = false;
    this.#ready = Promise.resolve(false);
    const owed = this.#inFlight;
    this.#inFlight = [];
    if (this.#timer !== undefined) {
      realClearTimeout(this.#timer);
      this.#timer = undefined;
    }
    for (const batch of owed) if (!batch.reissued) this.#reissue(batch);
  }
}

let shared: HostFsWorker | undefined;

/** The process's HostFsWorker (one worker thread for every NodeHostFs that uses the default). */
export function sharedHostFsWorker(): HostFsWorker {
  return (shared ??= new HostFsWorker());
}
