/**
 * The per-UVM recovery journal file (docs/recovery.md "Format"). Every change is applied to an
 * in-memory document and recorded as one op line; a write appends the ops not yet on disk and
 * fsyncs the file (one `write` + one `fdatasync`), so a change is durable when its write resolves.
 * Concurrent changes are coalesced: at most one write is in flight, and a change resolves once a
 * write that includes it is durable. When the appended lines outgrow the live document, the file
 * is compacted: rewritten atomically (temp file + fsync + rename + directory fsync) as one
 * snapshot line, so its size stays bounded by what is live.
 */
import * as fs from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { invalidArgument, UvmError } from '../core/errors.js';
import { writeFileAtomic, writeFileExclusive } from './durable-file.js';
import {
  applyOp,
  documentOf,
  newJournalDocument,
  osOfJournal,
  parseJournal,
  snapshotLine,
  stateOf,
  type ContainerRecord,
  type JournalDocument,
  type JournalOp,
  type JournalState,
  type JsonObject,
  type LeaseRecord,
  type LeaseRecordKind,
} from './journal-format.js';
import { IoThreadLost, journalIo, type AppendHandle } from './journal-io.js';
import { JournalLock } from './journal-lock.js';
import type { HcsPart, PartChange, PartRecord } from './parts.js';
import { derivedParts } from './reconcile.js';

export { writeFileAtomic } from './durable-file.js';

/** The UtilityVm option that turns the journal on. */
export interface JournalOptions {
  /** Absolute path of the journal file (its directory must exist). One file per UVM. */
  path: string;
}

/** Validates `options.journal` (INVALID_ARGUMENT). */
export function resolveJournalOptions(options: unknown): JournalOptions | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') throw invalidArgument('journal must be an object {path}');
  const path = (options as { path?: unknown }).path;
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0') || !isAbsolute(path)) {
    throw invalidArgument('journal.path must be an absolute file path');
  }
  return { path };
}

/**
 * Reads and validates a journal file; undefined when it does not exist; RECOVERY_FAILED when
 * corrupt; JOURNAL_VERSION for an unknown format version. A version-1 journal comes back in the
 * current form, its records' parts taken as attached.
 */
export async function readJournalFile(path: string): Promise<JournalDocument | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UvmError('RECOVERY_FAILED', `cannot read the journal ${path}`, { cause: err, details: { reason: 'io', path } });
  }
  return parseJournal(text, path, (records, os) => records.flatMap((r) => derivedParts(r, os).map((p): PartRecord => ({ ...p, state: 'attached' }))));
}

/** A lease record before it is journaled (the journal assigns the id). */
export type NewLeaseRecord = Omit<LeaseRecord, 'id'>;

/** Appended lines after which the file is compacted, at least (else twice the live items). */
const COMPACT_AFTER_LINES = 256;

/**
 * How long the writer waits, idle, before it compacts (when due) and closes its descriptor:
 * compaction (a whole snapshot, fsync'd, renamed, directory fsync'd) never delays an intent of a
 * burst of changes, only a write that finds the log at 4 × its bound compacts on the spot.
 */
const IDLE_MS = 1000;

/**
 * How long a change nobody waits for (an outcome, a removal's intent, a container's lease) may
 * stay in memory when no awaited change comes to carry it.
 */
const FLUSH_MS = 20;

/** Internal knobs (tests): the idle delay and the compaction threshold. */
export interface JournalTuning {
  idleMs?: number;
  flushMs?: number;
  compactAfterLines?: number;
}

/** A change waiting for a write that includes it. */
interface Waiter {
  version: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Appends are opened with O_DSYNC where the platform has it (a write returns once its data is
 * durable: one system call instead of write + fdatasync); elsewhere (Windows) each write is
 * followed by fdatasync (FlushFileBuffers).
 */
const { O_APPEND, O_WRONLY, O_DSYNC } = fs.constants as { O_APPEND: number; O_WRONLY: number; O_DSYNC?: number };
/** No O_CREAT: a journal file that vanished is rewritten whole (a snapshot), never started as a bare log. */
const APPEND_FLAGS = O_APPEND | O_WRONLY | (O_DSYNC ?? 0);

/**
 * One UVM's journal. Every mutator changes the in-memory document synchronously (so the order of
 * calls is the order of the document) and resolves once the change is durable; it rejects with
 * RECOVERY_FAILED when the file cannot be written (the in-memory change stays, and the next
 * successful write persists it). After `close()` every mutator rejects with HANDLE_CLOSED.
 *
 * Group commit: one writer drains the changes; each of its writes appends every op line queued
 * so far (one `write` + one `fdatasync` on a descriptor kept open while changes keep coming, closed
 * once it is idle) and resolves every change it includes.
 *
 * The class itself is the DI service identifier (bound in a UVM scope when the journal is on).
 */
export class RecoveryJournal {
  readonly path: string;
  #state: JournalState;
  /**
   * Op lines not on disk yet, each with its newline, as one string (concatenated as they come: no
   * array of lines joined per write), and how many.
   */
  #pending = '';
  #pendingLines = 0;
  /** The next write rewrites the whole file (a snapshot) instead of appending. */
  #rewrite = false;
  /** Lines appended since the last snapshot. */
  #appended = 0;
  /** The most records, containers and parts the document had since the last snapshot. */
  #peakLive = 0;
  /** Bumped by every change. */
  #version = 0;
  /** The highest version known to be on disk. */
  #durable = 0;
  /** Changes waiting for a write (each resolves once the durable version reaches its own). */
  #waiters: Waiter[] = [];
  /**
   * Parts announced ahead of their calls (`announce`) that no intent has claimed yet: key → the
   * version that journals the announcement, and the announcement it belongs to.
   */
  #announced = new Map<string, { version: number; by: Announcement }>();
  /** Announcements not withdrawn yet (their calls are under way). */
  readonly #open = new Set<Announcement>();
  /** The writer, while it runs. */
  #writer: Promise<void> | undefined;
  /** The descriptor the writer appends through (open while it runs, and briefly after). */
  #file: AppendHandle | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  /** Flushes the changes nobody waits for. */
  #flushTimer: NodeJS.Timeout | undefined;
  /**
   * The writer writes every change up to this version, waited for or not (0: none; Infinity:
   * every change so far). An announcement asks for its own version only: the intents and outcomes
   * that follow it ride with a later awaited write.
   */
  #flushTo = 0;
  readonly #idleMs: number;
  readonly #flushMs: number;
  readonly #compactAfter: number;
  #discarded = false;
  #closed = false;
  /** `journalIo.release()` was called. */
  #ioReleased = false;
  /** The writer's last write failed (it stops until the next commit). */
  #failed = false;
  /** Number of file writes so far (diagnostics and tests). */
  writes = 0;
  /** Number of compactions so far (diagnostics and tests). */
  compactions = 0;
  /** Announced parts withdrawn unclaimed (their calls were not made, or derived another key: diagnostics and tests). */
  unclaimed = 0;

  /** The owner's lock (docs/recovery.md "Ownership"); absent for a journal built in memory. */
  readonly #lock: JournalLock | undefined;

  /** Use `create` (new UVM) or `open` (restart); `doc` is taken as what the file holds. */
  constructor(path: string, doc: JournalDocument, lock?: JournalLock, options: { rewrite?: boolean } & JournalTuning = {}) {
    this.path = path;
    this.#state = stateOf(structuredClone(doc));
    this.#lock = lock;
    this.#rewrite = options.rewrite ?? false;
    this.#idleMs = options.idleMs ?? IDLE_MS;
    this.#flushMs = options.flushMs ?? FLUSH_MS;
    this.#compactAfter = options.compactAfterLines ?? COMPACT_AFTER_LINES;
    // Started now, so that it is online by the first append (src/recovery/journal-io.ts).
    journalIo.retain();
  }

  /**
   * Creates the journal of a new UVM: takes the lock, then writes the file without ever replacing
   * one (JOURNAL_IN_USE `exists` when a journal is already there: it is left byte-for-byte as it
   * was; JOURNAL_IN_USE `locked` when someone live owns it).
   */
  static async create(path: string, uvmId: string, uvmOptions: JsonObject, tuning: JournalTuning = {}): Promise<RecoveryJournal> {
    const lock = await JournalLock.acquire(path);
    try {
      const doc = newJournalDocument(uvmId, uvmOptions);
      await writeFileExclusive(path, snapshotLine(doc));
      const journal = new RecoveryJournal(path, doc, lock, tuning);
      journal.writes++;
      return journal;
    } catch (err) {
      await lock.release();
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new UvmError('JOURNAL_IN_USE', `a journal already exists at ${path}: open its UVM, or delete it once that UVM is gone`, {
          details: { reason: 'exists', path },
        });
      }
      throw UvmError.is(err) ? err : new UvmError('RECOVERY_FAILED', `cannot create the journal ${path}`, { cause: err, details: { reason: 'io', path } });
    }
  }

  /**
   * Opens an existing journal and becomes its owner (JOURNAL_IN_USE when someone live owns it;
   * RECOVERY_FAILED when missing or corrupt; JOURNAL_VERSION for an unknown format version). The
   * first write rewrites it in the current format (a torn last line, or an older version, is gone).
   */
  static async open(path: string, tuning: JournalTuning = {}): Promise<RecoveryJournal> {
    const lock = await JournalLock.acquire(path);
    try {
      const doc = await readJournalFile(path);
      if (!doc) throw new UvmError('RECOVERY_FAILED', `no journal at ${path}`, { details: { reason: 'missing', path } });
      return new RecoveryJournal(path, doc, lock, { ...tuning, rewrite: true });
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** Gives up ownership (the file stays for the next owner). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clearTimers();
    // What nobody waited for is written before the file is given up.
    this.#flushTo = Infinity;
    this.#schedule();
    await this.#idle();
    await this.#closeFd();
    this.#releaseIo();
    await this.#lock?.release();
  }

  /** A deep copy of the current document, as it reads back from the file. */
  snapshot(): JournalDocument {
    return JSON.parse(JSON.stringify(documentOf(this.#state))) as JournalDocument;
  }

  get uvmId(): string {
    return this.#state.uvmId;
  }

  get os(): 'linux' | 'windows' {
    return osOfJournal(documentOf(this.#state));
  }

  /** Live lease records, in id order. */
  records(): readonly LeaseRecord[] {
    return [...this.#state.records.values()];
  }

  /** The first live lease record (in id order) that `match` accepts, without copying the records. */
  findRecord(match: (record: LeaseRecord) => boolean): LeaseRecord | undefined {
    for (const record of this.#state.records.values()) if (match(record)) return record;
    return undefined;
  }

  /** The state of the part `key`, if it is journaled. */
  partState(key: string): PartRecord['state'] | undefined {
    return this.#state.parts.get(key)?.state;
  }

  /** The journaled parts (what the library sent to HCS and did not remove). */
  parts(): readonly PartRecord[] {
    return [...this.#state.parts.values()];
  }

  /**
   * Journals a lease that was acquired; resolves with its record id once durable. With
   * `durable: false` it resolves at once and the next write carries it: for a lease whose owner
   * is not recorded yet (a container being allocated), made durable by the owner's record, which
   * is appended after it (a failed write is retried as a snapshot of everything).
   */
  async addLease(record: NewLeaseRecord, options: { durable?: boolean } = {}): Promise<number> {
    const id = this.#state.nextRecordId;
    this.#change({ op: 'lease', record: { id, ...record } });
    this.#noteName(record.kind, record.value.name);
    if (options.durable === false) this.#defer();
    else await this.#commit();
    return id;
  }

  /** Removes a lease record (no-op when absent); resolves once durable. */
  async removeLease(id: number): Promise<void> {
    if (!this.#state.records.has(id)) return;
    this.#change({ op: 'unlease', id });
    await this.#commit();
  }

  /** Adds or replaces a container record (the journal keeps `container`: do not change it afterwards). */
  async putContainer(container: ContainerRecord): Promise<void> {
    this.#change({ op: 'container', container });
    await this.#commit();
  }

  /** Removes a container record (no-op when absent). */
  async removeContainer(id: string): Promise<void> {
    if (!this.#state.containers.has(id)) return;
    this.#change({ op: 'uncontainer', id });
    await this.#commit();
  }

  /**
   * Write-ahead: journals the parts a call is about to add (`adding`), update or remove
   * (`removing`). Resolves once durable when the call adds a part (recovery must know it to undo
   * it): an Add of a part announced ahead (`announce`) waits only for the announcement's write,
   * and its exact settings ride with the next write. Removals and updates are journaled ahead in
   * order but not waited for: recovery does the same for an unclaimed part whether it is
   * `attached` or `removing`, re-asserts AllowedFiles from the leases whatever the last Update
   * was, and a lease record dropped before a removal was made durable by its own write. Call
   * `settle` with the same changes once the call succeeded.
   */
  async intend(changes: readonly PartChange[]): Promise<void> {
    if (changes.length === 0) return;
    /** The version the call must wait for: 0 none, Infinity every change so far. */
    let wait = 0;
    for (const c of changes) {
      if (c.op === 'add') {
        const announced = this.#announced.get(c.part.key);
        this.#announced.delete(c.part.key);
        this.#change({ op: 'part', part: { ...c.part, state: 'adding' } });
        wait = Math.max(wait, announced?.version ?? Infinity);
      } else if (c.op === 'update') {
        const current = this.#state.parts.get(c.part.key);
        this.#change({ op: 'part', part: { ...c.part, state: current?.state ?? 'adding' } });
      } else {
        const current = this.#state.parts.get(c.key);
        if (current && current.state !== 'removing') this.#change({ op: 'state', key: c.key, state: 'removing' });
      }
    }
    if (wait === Infinity) return this.#commit();
    this.#defer();
    if (wait > 0) await this.#durableAt(wait);
  }

  /**
   * Write-ahead for a batch of calls, before the first of them (a container's reservations, at
   * its first commit): journals each group's parts as `adding` — those whose key is neither
   * journaled nor announced already — and starts a write at once, without waiting for it. A later
   * `intend` of an Add of an announced key then waits only for this write (usually done by the
   * time the call comes) instead of a write of its own. An announced part is what an intent is
   * to recovery (its settings are derived from the reservation: enough to remove it; the call's
   * intent replaces them with the document's). Returns one announcement per group: `withdraw()`
   * once the group's calls are over drops the parts no intent claimed (their calls were not made).
   */
  announce(groups: readonly (readonly HcsPart[])[]): Announcement[] {
    if (this.#closed) throw closedError(this.path);
    const announcements = groups.map((parts) => {
      const announcement = new Announcement(this);
      for (const part of parts) {
        if (this.#state.parts.has(part.key) || this.#announced.has(part.key)) continue;
        this.#change({ op: 'part', part: { ...part, state: 'adding' } });
        announcement.keys.push(part.key);
      }
      return announcement;
    });
    for (const a of announcements) {
      this.#open.add(a);
      for (const key of a.keys) this.#announced.set(key, { version: this.#version, by: a });
    }
    if (announcements.some((a) => a.keys.length > 0)) {
      this.#flushTo = Math.max(this.#flushTo, this.#version);
      this.#schedule();
    }
    return announcements;
  }

  /** `Announcement.withdraw()`: unparts the keys of `announcement` no intent claimed. */
  withdraw(announcement: Announcement): void {
    this.#open.delete(announcement);
    let changed = false;
    for (const key of announcement.keys.splice(0)) {
      if (this.#announced.get(key)?.by !== announcement) continue;
      this.#announced.delete(key);
      if (this.#closed || this.#state.parts.get(key)?.state !== 'adding') continue;
      this.#change({ op: 'unpart', key });
      this.unclaimed++;
      changed = true;
    }
    if (changed) this.#defer();
  }

  /**
   * The outcome of a call whose `intend` resolved: its adds are attached, its removals gone. Not
   * awaited (the next write carries it): a lost outcome leaves the part unknown, which recovery
   * converges (docs/recovery.md). A failed call is simply not settled.
   */
  settle(changes: readonly PartChange[]): void {
    if (this.#closed) return;
    let changed = false;
    for (const c of changes) {
      if (c.op === 'remove') {
        if (this.#state.parts.has(c.key)) {
          this.#change({ op: 'unpart', key: c.key });
          changed = true;
        }
      } else {
        const current = this.#state.parts.get(c.part.key);
        if (current && current.state !== 'attached') {
          this.#change({ op: 'state', key: c.part.key, state: 'attached' });
          changed = true;
        }
      }
    }
    if (changed) this.#defer();
  }

  /**
   * Replaces the records, containers and parts (after a reconcile: only what was adopted stays)
   * and raises the name counters to at least `counters`. Written as a new snapshot.
   */
  async rewrite(records: LeaseRecord[], containers: ContainerRecord[], parts: PartRecord[], counters: Partial<JournalDocument['nameCounters']> = {}): Promise<void> {
    const current = documentOf(this.#state);
    this.#state = stateOf(
      structuredClone({
        ...current,
        records,
        containers,
        parts,
        nameCounters: {
          vsmb: Math.max(current.nameCounters.vsmb, counters.vsmb ?? 0),
          plan9: Math.max(current.nameCounters.plan9, counters.plan9 ?? 0),
        },
      }),
    );
    this.#rewrite = true;
    this.#pending = '';
    this.#pendingLines = 0;
    this.#announced.clear();
    this.#open.clear();
    this.#version++;
    await this.#commit();
  }

  /** Deletes the journal file (the UVM is gone); later changes are kept in memory only. */
  async discard(): Promise<void> {
    this.#discarded = true;
    this.#clearTimers();
    await this.#idle();
    await this.#closeFd();
    this.#releaseIo();
    await unlink(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await this.#lock?.release();
  }

  /** The journal will not append any more (closed or discarded). Once. */
  #releaseIo(): void {
    if (this.#ioReleased) return;
    this.#ioReleased = true;
    journalIo.release();
  }

  #change(op: JournalOp): void {
    if (this.#closed) throw closedError(this.path);
    // Appends done meanwhile are settled now, not when the event loop comes round (journal-io.ts).
    journalIo.poll();
    applyOp(this.#state, op);
    this.#pending += `${JSON.stringify(op)}\n`;
    this.#pendingLines++;
    this.#version++;
  }

  /** Keeps the name counters above every name handed out (names are never reused). */
  #noteName(kind: LeaseRecordKind, name: unknown): void {
    if (typeof name !== 'string') return;
    const { vsmb, plan9 } = this.#state.nameCounters;
    let next = { vsmb, plan9 };
    if (kind === 'plan9' && /^\d+$/.test(name)) next = { vsmb, plan9: Math.max(plan9, Number(name) + 1) };
    else if (kind === 'vsmb' && /^s[0-9a-f]+$/.test(name)) next = { vsmb: Math.max(vsmb, parseInt(name.slice(1), 16) + 1), plan9 };
    if (next.vsmb !== vsmb || next.plan9 !== plan9) this.#change({ op: 'counters', ...next });
  }

  /** Waits until a write including every change so far is durable. */
  #commit(): Promise<void> {
    return this.#durableAt(this.#version);
  }

  /** Waits until a write including every change up to `version` is durable. */
  #durableAt(version: number): Promise<void> {
    if (this.#closed) return Promise.reject(closedError(this.path));
    journalIo.poll();
    if (this.#discarded || this.#durable >= version) return Promise.resolve();
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ version, resolve, reject }));
    this.#schedule();
    return done;
  }

  /**
   * A change nobody waits for: the next write carries it (a burst's intents carry its outcomes),
   * else it is flushed `flushMs` later — or up to `idleMs` later while announcements are open:
   * their allocations end with an awaited write (a container record) that carries it.
   * Never a write of its own that a waiting intent would queue behind.
   */
  #defer(): void {
    if (this.#writer || this.#discarded || this.#closed || this.#flushTimer) return;
    let waited = 0;
    const arm = (): void => {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined;
        waited += this.#flushMs;
        if (this.#open.size > 0 && waited < this.#idleMs) return arm();
        this.#flushTo = Infinity;
        this.#schedule();
      }, this.#flushMs);
      this.#flushTimer.unref();
    };
    arm();
  }

  /** Starts the writer, unless it runs. */
  #schedule(): void {
    if (this.#writer || this.#discarded) return;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#writer = this.#drain().finally(() => {
      this.#writer = undefined;
      // Waiters that came while the writer was finishing.
      if (this.#flushDue()) this.#schedule();
      else this.#rest();
    });
  }

  /**
   * The writer stopped: changes nobody waited for are flushed soon; with nothing left, the writer
   * compacts (when due) and closes its descriptor once idle (no descriptor outlives its use for
   * long, even for a UVM dropped without close()).
   */
  #rest(): void {
    if (this.#closed || this.#discarded || this.#failed) return;
    if (this.#durable < this.#version) this.#defer();
    else if (this.#file !== undefined || this.#compactionDue()) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = setTimeout(() => this.#onIdle(), this.#idleMs);
      this.#idleTimer.unref();
    }
  }

  /** Resolves once no write is in flight. */
  async #idle(): Promise<void> {
    while (this.#writer) await this.#writer;
  }

  #clearTimers(): void {
    clearTimeout(this.#flushTimer);
    clearTimeout(this.#idleTimer);
    this.#flushTimer = undefined;
    this.#idleTimer = undefined;
  }

  /**
   * The writer: writes while changes are waited for (or a flush was asked for), each write
   * carrying every change so far, until they are durable (or a write failed and nobody waits).
   * Never rejects.
   */
  async #drain(): Promise<void> {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#failed = false;
    while (!this.#discarded && this.#durable < this.#version && this.#flushDue()) {
      // A failed write fails the changes made before it started.
      let version = this.#version;
      let failure: unknown;
      try {
        version = await this.#write();
        this.#durable = Math.max(this.#durable, version);
      } catch (err) {
        // The I/O thread went away mid-append (not the file's fault): written again, as a snapshot
        // on the thread pool (#write asked for it), before anyone hears of it.
        if (err instanceof IoThreadLost) continue;
        failure = new UvmError('RECOVERY_FAILED', `cannot write the journal ${this.path}`, { cause: err, details: { reason: 'io', path: this.path } });
      }
      // Every change up to `version` was in this write (or failed with it).
      const covered = this.#waiters.filter((w) => w.version <= version);
      this.#waiters = this.#waiters.filter((w) => w.version > version);
      for (const w of covered) {
        if (failure === undefined) w.resolve();
        else w.reject(failure);
      }
      // The next commit retries (as a snapshot); nobody waits now.
      this.#failed = failure !== undefined;
      if (this.#failed && this.#waiters.length === 0) break;
    }
    this.#flushTo = 0;
    if (this.#discarded) for (const w of this.#waiters.splice(0)) w.resolve();
    if (this.#closed || this.#discarded) await this.#closeFd();
  }

  /** Someone waits for a change that is not durable, or a flush asks for one. */
  #flushDue(): boolean {
    return this.#waiters.length > 0 || this.#durable < Math.min(this.#flushTo, this.#version);
  }

  /** The appended lines outgrew the live document. */
  #compactionDue(): boolean {
    return !this.#failed && this.#appended > Math.max(this.#compactAfter, 2 * this.#live());
  }

  /** The idle work, run as the writer (a change that comes meanwhile waits for it). */
  #onIdle(): void {
    this.#idleTimer = undefined;
    if (this.#writer || this.#closed || this.#discarded) return;
    this.#writer = this.#idleWork().finally(() => {
      this.#writer = undefined;
      if (this.#flushDue()) this.#schedule();
      else this.#rest();
    });
  }

  async #idleWork(): Promise<void> {
    if (this.#compactionDue()) {
      this.#rewrite = true;
      try {
        this.#durable = Math.max(this.#durable, await this.#write());
      } catch {
        // The next write retries (as a snapshot).
      }
    }
    await this.#closeFd();
  }

  /**
   * Resolves once every change is durable and the writer is idle, its idle work (compaction when
   * due) done (diagnostics and tests).
   */
  async idle(): Promise<void> {
    this.#flushTo = Infinity;
    this.#schedule();
    await this.#idle();
    if (this.#idleTimer !== undefined) {
      clearTimeout(this.#idleTimer);
      this.#onIdle();
      await this.#idle();
    }
  }

  async #closeFd(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    if (file !== undefined) await journalIo.close(file).catch(() => undefined);
  }

  /** Records, containers and parts in the document. */
  #live(): number {
    return this.#state.records.size + this.#state.containers.size + this.#state.parts.size;
  }

  /**
   * One durable write: append the pending ops, or compact into a snapshot. Resolves with the
   * version it made durable (every change up to it).
   */
  async #write(): Promise<number> {
    this.writes++;
    // Compaction waits until the writer is idle (#onIdle), unless the log grows far past the
    // document (as large as it was since the last snapshot: a burst of releases, shrinking it,
    // does not compact in its tail).
    this.#peakLive = Math.max(this.#peakLive, this.#live());
    if (this.#rewrite || this.#appended + this.#pendingLines > 4 * Math.max(this.#compactAfter, 2 * this.#peakLive)) {
      const version = this.#version;
      const text = snapshotLine(documentOf(this.#state));
      this.#pending = '';
      this.#pendingLines = 0;
      this.#rewrite = false;
      // The file is replaced: appends go to the new one.
      await this.#closeFd();
      try {
        await writeFileAtomic(this.path, text);
      } catch (err) {
        this.#rewrite = true;
        throw err;
      }
      this.#appended = 0;
      this.#peakLive = this.#live();
      this.compactions++;
      return version;
    }
    const version = this.#version;
    const text = this.#pending;
    const lines = this.#pendingLines;
    this.#pending = '';
    this.#pendingLines = 0;
    if (lines === 0) return version;
    try {
      // (Through the I/O thread: src/recovery/journal-io.ts. The descriptor is opened by the first
      // append after an idle close, and kept open while changes keep coming.)
      this.#file = await journalIo.append(this.#file, this.path, APPEND_FLAGS, text, O_DSYNC === undefined);
    } catch (err) {
      // What was (maybe partly) appended is replaced by a snapshot on the next write (an open
      // that failed, too: the file may be gone).
      this.#rewrite = true;
      await this.#closeFd();
      throw err;
    }
    this.#appended += lines;
    return version;
  }
}

function closedError(path: string): UvmError {
  return new UvmError('HANDLE_CLOSED', `the journal ${path} was closed (its file belongs to its next owner)`, { details: { path } });
}

/** Parts announced ahead of a group of calls (`RecoveryJournal.announce`). */
export class Announcement {
  /** The keys this announcement journaled and no intent claimed yet. */
  readonly keys: string[] = [];
  constructor(readonly journal: RecoveryJournal) {}

  /** The group's calls are over: drops the parts no intent claimed. Idempotent. */
  withdraw(): void {
    this.journal.withdraw(this);
  }
}
