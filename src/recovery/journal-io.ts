/**
 * The journal's appends off libuv's thread pool and off the event loop's turn (docs/recovery.md
 * "The I/O thread").
 *
 * Node runs fs calls on a small shared pool (4 threads by default), and hands their results to JS
 * only when the main thread gets back to its event loop. A burst of container allocations fills
 * the pool with the layers' stat/realpath calls and keeps the main thread busy for tens of
 * milliseconds at a time; an append queued behind them (open, write, fdatasync), then waiting for
 * the loop to see it, held every intent waiting for it — the first HCS call of every container of
 * the burst — while the same calls without a journal went out at once.
 *
 * So the appends run on a thread of their own: one worker per process, shared by every journal,
 * doing blocking open/write/fdatasync/close one request at a time in arrival order. It publishes
 * each completion in a shared completion board (a SharedArrayBuffer) before it answers by
 * message, and `poll()` — called by the journal whenever it is used, one atomic load — settles
 * the requests the board shows done: a waiting intent goes as soon as any code touches the
 * journal, not only once the main thread returns to its loop. The message settles anything the
 * board did not (and every failure).
 *
 * Durability is unchanged: an append resolves once the thread's blocking write (O_DSYNC, or write
 * + fdatasync) has returned. The worker is started when the first journal is made (it takes tens
 * of milliseconds to start; until it is online, appends go through the thread pool as before),
 * keeps the process alive only while a request is in flight (unref'd otherwise), and is stopped
 * once no journal has used it for a while. If it fails, the requests in flight reject (the journal
 * then rewrites the file as a snapshot, as after any failed append) and later ones go through the
 * thread pool. A descriptor belongs to the side that opened it: closed there, and unusable once
 * the thread that opened it is gone (its descriptors close with it).
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { errnoException } from '../core/errors.js';

/** A request to the I/O thread (ids are int32, wrapping). */
export type IoRequest =
  | { id: number; op: 'append'; fd: number | undefined; path: string; flags: number; text: string; datasync: boolean }
  | { id: number; op: 'close'; fd: number };

/** The I/O thread's answer: the descriptor appended through (or closed), or the error. */
export type IoReply =
  | { id: number; fd: number; error?: undefined }
  | { id: number; error: { message: string; code?: string; errno?: number; syscall?: string; path?: string } };

/** The I/O thread's first message: its module loaded, it serves requests. */
export interface IoReady {
  ready: true;
}

/**
 * The I/O thread went away with the request in flight: its outcome is unknown (the journal
 * rewrites its file as a snapshot, on the thread pool, and its waiters do not see a failure).
 */
export class IoThreadLost extends Error {
  constructor(readonly reason: unknown) {
    super(`the journal I/O thread went away with a request in flight: ${String(reason)}`);
    this.name = 'IoThreadLost';
  }
}

/**
 * The completion board (Int32Array over a SharedArrayBuffer): at BOARD_DONE the id of the last
 * request the thread completed; then a ring of BOARD_SLOTS slots of two int32 (ok 1 / failed 0,
 * descriptor), the slot of request `id` at `boardSlot(id)`. A slot is overwritten only by the
 * request BOARD_SLOTS ids later, so it is read only while that request is not posted yet (the
 * thread may be writing it meanwhile: `done - id < BOARD_SLOTS` is not enough).
 */
export const BOARD_DONE = 0;
const BOARD_SLOTS = 64;
export function boardSlot(id: number): number {
  return 2 + 2 * (((id % BOARD_SLOTS) + BOARD_SLOTS) % BOARD_SLOTS);
}

/** An open log file: its descriptor, and who opened it (the thread, or the pool when undefined). */
export class AppendHandle {
  constructor(
    readonly fd: number,
    readonly owner: Worker | undefined,
  ) {}
}

/** The file operations the journal's writer makes on its log. */
export interface AppendIo {
  /**
   * Appends all of `text` through `handle` (or through a descriptor it opens on `path` with
   * `flags` when `handle` is undefined) and, with `datasync`, fdatasyncs it; resolves with the
   * handle once the text is durable. A descriptor opened by a failed append is closed again.
   */
  append(handle: AppendHandle | undefined, path: string, flags: number, text: string, datasync: boolean): Promise<AppendHandle>;
  close(handle: AppendHandle): Promise<void>;
}

const WORKER_URL = new URL('./journal-io-thread.js', import.meta.url);

/** How long the thread stays up once no journal uses it. */
const STOP_AFTER_MS = 2000;

const poolOpen = promisify(fs.open);
const poolWrite = promisify(fs.write);
const poolDatasync = promisify(fs.fdatasync);
const poolClose = promisify(fs.close);

/** An append on libuv's thread pool (before the thread is online, or after it failed). */
async function appendOnPool(fd: number | undefined, path: string, flags: number, text: string, datasync: boolean): Promise<number> {
  const target = fd ?? (await poolOpen(path, flags));
  try {
    const bytes = Buffer.from(text, 'utf8');
    for (let done = 0; done < bytes.length; ) done += (await poolWrite(target, bytes, done, bytes.length - done)).bytesWritten;
    if (datasync) await poolDatasync(target);
  } catch (err) {
    if (fd === undefined) await poolClose(target).catch(() => undefined);
    throw err;
  }
  return target;
}

interface Pending {
  resolve: (fd: number) => void;
  reject: (err: unknown) => void;
}

type Request = Omit<Extract<IoRequest, { op: 'append' }>, 'id'> | Omit<Extract<IoRequest, { op: 'close' }>, 'id'>;

/** The process's I/O thread (module comment). Journals `retain` it while they live. */
class JournalIoThread implements AppendIo {
  #worker: Worker | undefined;
  #board: Int32Array | undefined;
  #online = false;
  /** It failed once: appends stay on the thread pool. */
  #failed = false;
  #users = 0;
  #stopTimer: NodeJS.Timeout | undefined;
  #nextId = 0;
  /** BOARD_DONE at the last `poll`. */
  #seen = 0;
  /** Requests in flight, in id order. */
  readonly #pending = new Map<number, Pending>();
  /** Resolved once the thread is online, or with false once it failed to start. */
  #ready: Promise<boolean> = Promise.resolve(false);
  /** Appends made on the thread, and on the thread pool (diagnostics and tests). */
  threadAppends = 0;
  poolAppends = 0;

  /** A journal will append: starts the thread unless it runs. */
  retain(): void {
    this.#users++;
    clearTimeout(this.#stopTimer);
    this.#stopTimer = undefined;
    if (this.#worker !== undefined || this.#failed) return;
    const shared = new SharedArrayBuffer(4 * (2 + 2 * BOARD_SLOTS));
    let worker: Worker;
    try {
      worker = new Worker(WORKER_URL, { workerData: shared });
    } catch {
      this.#failed = true;
      return;
    }
    worker.unref();
    this.#worker = worker;
    this.#board = new Int32Array(shared);
    this.#seen = 0;
    this.#ready = new Promise<boolean>((resolve) => {
      // Online once its module has loaded and said so (not at the worker's 'online' event, which
      // comes before: a thread that cannot load its module never gets a request).
      worker.on('message', (message: IoReply | IoReady) => {
        if (!('ready' in message)) return this.#answer(message);
        if (this.#worker === worker) this.#online = true;
        resolve(this.#online);
      });
      worker.once('error', (err) => {
        this.#lost(worker, err, true);
        resolve(false);
      });
      worker.once('exit', (code) => {
        this.#lost(worker, new Error(`the journal I/O thread exited (code ${code})`), false);
        resolve(false);
      });
    });
  }

  /** Resolves once the thread is online (true), or with false when none runs (diagnostics and tests). */
  ready(): Promise<boolean> {
    return this.#ready;
  }

  /**
   * Stops the thread now, as if it had failed (tests): what is in flight rejects, descriptors it
   * opened close; the next `retain` starts another one.
   */
  async stopThread(): Promise<void> {
    const worker = this.#worker;
    if (!worker) return;
    this.#lost(worker, new Error('stopped'), false);
    this.#failed = false;
    await worker.terminate();
  }

  /** A journal is done (closed or discarded): the thread stops once none used it for a while. */
  release(): void {
    this.#users = Math.max(0, this.#users - 1);
    if (this.#users > 0 || this.#worker === undefined) return;
    clearTimeout(this.#stopTimer);
    this.#stopTimer = setTimeout(() => {
      this.#stopTimer = undefined;
      if (this.#users === 0 && this.#pending.size === 0) this.#stop();
    }, STOP_AFTER_MS);
    this.#stopTimer.unref();
  }

  async append(handle: AppendHandle | undefined, path: string, flags: number, text: string, datasync: boolean): Promise<AppendHandle> {
    // The descriptor of a thread that is gone closed with it: the file is opened again (the
    // appends through it were complete, or the journal rewrites the file after the one that failed).
    const file = handle?.owner !== undefined && handle.owner !== this.#worker ? undefined : handle;
    if (!this.#online) {
      this.poolAppends++;
      const fd = await appendOnPool(file?.fd, path, flags, text, datasync);
      return file ?? new AppendHandle(fd, undefined);
    }
    const worker = this.#worker!;
    this.threadAppends++;
    const fd = await this.#request(worker, { op: 'append', fd: file?.fd, path, flags, text, datasync });
    return file ?? new AppendHandle(fd, worker);
  }

  async close(handle: AppendHandle): Promise<void> {
    if (handle.owner === undefined) return poolClose(handle.fd);
    // (A descriptor of a thread that is gone closed with it.)
    if (handle.owner === this.#worker && this.#online) await this.#request(handle.owner, { op: 'close', fd: handle.fd });
  }

  /**
   * Settles the requests the completion board shows done, in order, up to the first failure (a
   * failure is settled by its message, which carries the error). One atomic load when nothing is
   * in flight or nothing is new.
   */
  poll(): void {
    const board = this.#board;
    if (board === undefined || this.#pending.size === 0) return;
    const done = Atomics.load(board, BOARD_DONE);
    // Nothing new since the last look (what it left is settled by its message).
    if (done === this.#seen) return;
    this.#seen = done;
    for (const [id, pending] of this.#pending) {
      // Not done yet; or the request BOARD_SLOTS ids later is posted, so the thread may be
      // rewriting this slot while it is read (left to the message).
      if (((done - id) | 0) < 0 || ((this.#nextId - id) | 0) >= BOARD_SLOTS) break;
      const slot = boardSlot(id);
      if (board[slot] !== 1) break;
      this.#settle(id, pending, undefined, board[slot + 1]!);
    }
  }

  /** Whether appends run on the thread now (diagnostics and tests). */
  get online(): boolean {
    return this.#online;
  }

  #request(worker: Worker, request: Request): Promise<number> {
    this.#nextId = (this.#nextId + 1) | 0;
    const id = this.#nextId;
    return new Promise<number>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // In flight: the process waits for it, as for any fs call.
      if (this.#pending.size === 1) worker.ref();
      worker.postMessage({ ...request, id } as IoRequest);
    });
  }

  #answer(reply: IoReply): void {
    // Requests before it that the board did not settle are done too (answers come in order).
    this.poll();
    const pending = this.#pending.get(reply.id);
    if (pending) this.#settle(reply.id, pending, reply.error ? errnoException(reply.error) : undefined, reply.error ? -1 : reply.fd);
  }

  #settle(id: number, pending: Pending, error: unknown, fd: number): void {
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#worker?.unref();
    if (error !== undefined) pending.reject(error);
    else pending.resolve(fd);
  }

  /** The thread is gone (stopped, or failed: `failed`); what was in flight has an unknown outcome. */
  #lost(worker: Worker, err: unknown, failed: boolean): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    this.#board = undefined;
    this.#online = false;
    if (failed || this.#pending.size > 0) this.#failed = true;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(new IoThreadLost(err));
  }

  #stop(): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#worker = undefined;
    this.#board = undefined;
    this.#online = false;
    void worker.terminate();
  }
}

/** The appends of every journal of this process. */
export const journalIo = new JournalIoThread();
