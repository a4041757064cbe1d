/**
 * The per-UVM recovery journal file. Every change is applied to an in-memory document and then
 * made durable by rewriting the whole file: write to a temporary file in the same directory,
 * fsync it, rename it over the journal, fsync the directory. A crash at any point leaves either
 * the previous or the new document, never a torn one (rename is atomic). Concurrent changes are
 * coalesced: a change resolves once a write that includes it is durable, and at most one write
 * is in flight at a time.
 */
import { readFile, unlink } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { writeFileAtomic, writeFileExclusive } from './durable-file.js';
import { invalidArgument, UvmError } from '../core/errors.js';
import {
  newJournalDocument,
  parseJournal,
  type ContainerRecord,
  type JournalDocument,
  type JsonObject,
  type LeaseRecord,
  type LeaseRecordKind,
} from './journal-format.js';
import { JournalLock } from './journal-lock.js';

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

/** Reads and validates a journal file; undefined when it does not exist; RECOVERY_FAILED when corrupt. */
export async function readJournalFile(path: string): Promise<JournalDocument | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UvmError('RECOVERY_FAILED', `cannot read the journal ${path}`, { cause: err, details: { reason: 'io', path } });
  }
  return parseJournal(text, path);
}

/** A lease record before it is journaled (the journal assigns the id). */
export type NewLeaseRecord = Omit<LeaseRecord, 'id'>;

/**
 * One UVM's journal. Every mutator changes the in-memory document synchronously (so the order of
 * calls is the order of the document) and resolves once the change is durable; it rejects with
 * RECOVERY_FAILED when the file cannot be written (the in-memory change stays, and the next
 * successful write persists it).
 *
 * The class itself is the DI service identifier (bound in a UVM scope when the journal is on).
 */
export class RecoveryJournal {
  readonly path: string;
  #doc: JournalDocument;
  /** Bumped by every change. */
  #version = 0;
  /** The highest version known to be on disk. */
  #durable = 0;
  #writing: Promise<void> | undefined;
  #discarded = false;
  #closed = false;
  /** Number of file writes so far (diagnostics and tests). */
  writes = 0;

  /** The owner's lock (docs/recovery.md "Ownership"); absent for a journal built in memory. */
  readonly #lock: JournalLock | undefined;

  /** Use `create` (new UVM) or `open` (restart); `doc` is taken as what the file holds. */
  constructor(path: string, doc: JournalDocument, lock?: JournalLock) {
    this.path = path;
    this.#doc = doc;
    this.#lock = lock;
  }

  /**
   * Creates the journal of a new UVM: takes the lock, then writes the file without ever replacing
   * one (JOURNAL_IN_USE `exists` when a journal is already there: it is left byte-for-byte as it
   * was; JOURNAL_IN_USE `locked` when someone live owns it).
   */
  static async create(path: string, uvmId: string, uvmOptions: JsonObject): Promise<RecoveryJournal> {
    const lock = await JournalLock.acquire(path);
    try {
      const doc = newJournalDocument(uvmId, uvmOptions);
      await writeFileExclusive(path, JSON.stringify(doc));
      const journal = new RecoveryJournal(path, doc, lock);
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
   * RECOVERY_FAILED when missing or corrupt; JOURNAL_VERSION for an unknown format version).
   */
  static async open(path: string): Promise<RecoveryJournal> {
    const lock = await JournalLock.acquire(path);
    try {
      const doc = await readJournalFile(path);
      if (!doc) throw new UvmError('RECOVERY_FAILED', `no journal at ${path}`, { details: { reason: 'missing', path } });
      return new RecoveryJournal(path, doc, lock);
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** Gives up ownership (the file stays for the next owner). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#writing?.catch(() => undefined);
    await this.#lock?.release();
  }

  /** A deep copy of the current document. */
  snapshot(): JournalDocument {
    return structuredClone(this.#doc);
  }

  get uvmId(): string {
    return this.#doc.uvmId;
  }

  /** Live lease records, in id order. */
  records(): readonly LeaseRecord[] {
    return this.#doc.records;
  }

  /** Journals a lease that was acquired; resolves with its record id once durable. */
  async addLease(record: NewLeaseRecord): Promise<number> {
    const id = this.#doc.nextRecordId++;
    this.#doc.records.push({ id, ...record });
    this.#noteName(record.kind, record.value.name);
    await this.#commit();
    return id;
  }

  /** Removes a lease record (no-op when absent); resolves once durable. */
  async removeLease(id: number): Promise<void> {
    const i = this.#doc.records.findIndex((r) => r.id === id);
    if (i < 0) return;
    this.#doc.records.splice(i, 1);
    await this.#commit();
  }

  /** Adds or replaces a container record. */
  async putContainer(container: ContainerRecord): Promise<void> {
    const i = this.#doc.containers.findIndex((c) => c.id === container.id);
    if (i < 0) this.#doc.containers.push(structuredClone(container));
    else this.#doc.containers[i] = structuredClone(container);
    await this.#commit();
  }

  /** Removes a container record (no-op when absent). */
  async removeContainer(id: string): Promise<void> {
    const i = this.#doc.containers.findIndex((c) => c.id === id);
    if (i < 0) return;
    this.#doc.containers.splice(i, 1);
    await this.#commit();
  }

  /**
   * Replaces the records and containers (after a reconcile: only what was adopted stays) and
   * raises the name counters to at least `counters`.
   */
  async rewrite(records: LeaseRecord[], containers: ContainerRecord[], counters: Partial<JournalDocument['nameCounters']> = {}): Promise<void> {
    this.#doc.records = structuredClone(records).sort((a, b) => a.id - b.id);
    this.#doc.containers = structuredClone(containers);
    this.#doc.nameCounters.vsmb = Math.max(this.#doc.nameCounters.vsmb, counters.vsmb ?? 0);
    this.#doc.nameCounters.plan9 = Math.max(this.#doc.nameCounters.plan9, counters.plan9 ?? 0);
    await this.#commit();
  }

  /** Deletes the journal file (the UVM is gone); later changes are kept in memory only. */
  async discard(): Promise<void> {
    this.#discarded = true;
    await this.#writing?.catch(() => undefined);
    await unlink(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await this.#lock?.release();
  }

  /** Keeps the name counters above every name handed out (names are never reused). */
  #noteName(kind: LeaseRecordKind, name: unknown): void {
    if (typeof name !== 'string') return;
    if (kind === 'plan9' && /^\d+$/.test(name)) {
      this.#doc.nameCounters.plan9 = Math.max(this.#doc.nameCounters.plan9, Number(name) + 1);
    } else if (kind === 'vsmb' && /^s[0-9a-f]+$/.test(name)) {
      this.#doc.nameCounters.vsmb = Math.max(this.#doc.nameCounters.vsmb, parseInt(name.slice(1), 16) + 1);
    }
  }

  /** Marks a change and waits until a write including it is durable. */
  async #commit(): Promise<void> {
    if (this.#closed) throw new UvmError('HANDLE_CLOSED', `the journal ${this.path} was closed (its file belongs to its next owner)`, { details: { path: this.path } });
    const target = ++this.#version;
    if (this.#discarded) return;
    while (this.#durable < target) {
      if (!this.#writing) {
        const version = this.#version;
        const text = JSON.stringify(this.#doc);
        this.writes++;
        this.#writing = writeFileAtomic(this.path, text)
          .then(() => {
            this.#durable = Math.max(this.#durable, version);
          })
          .finally(() => {
            this.#writing = undefined;
          });
      }
      try {
        await this.#writing;
      } catch (err) {
        throw new UvmError('RECOVERY_FAILED', `cannot write the journal ${this.path}`, { cause: err, details: { reason: 'io', path: this.path } });
      }
      if (this.#discarded) return;
    }
  }
}
