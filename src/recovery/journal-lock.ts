/**
 * One owner per journal (docs/recovery.md "Ownership"). The owner of `<journal>` holds the lock
 * file `<journal>.lock`, created atomically with its content (written to a unique temporary file,
 * fsync'd, then hard-linked to the lock path: `link` fails when the path exists, so two claimants
 * never both succeed and nobody ever sees an empty lock). The content names the owner:
 * `{"pid", "host", "token", "since"}`.
 *
 * A lock is stale, and may be taken over, when its owner is gone: same host and the pid is not a
 * live process (`kill(pid, 0)` → ESRCH), or the pid is this process's but the token is not one
 * this process holds (a previous process with the same pid). Anything else is in use:
 * JOURNAL_IN_USE (`details.reason` `locked`, `details.owner`). A lock of another host is never
 * taken over (its pid cannot be checked from here).
 *
 * Taking over: the stale lock is renamed away (only one claimant's rename of it succeeds), checked
 * to still be the stale one, and the claim is retried once.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, readFile, rename, unlink } from 'node:fs/promises';
import { UvmError } from '../core/errors.js';
import { writeFileExclusive } from './durable-file.js';

/** The content of a lock file. */
export interface JournalLockOwner {
  pid: number;
  host: string;
  token: string;
  /** ISO time the lock was taken. */
  since: string;
}

/** Tokens of the locks this process holds or is claiming. */
const held = new Set<string>();

export function lockPathOf(journalPath: string): string {
  return `${journalPath}.lock`;
}

function inUse(journalPath: string, owner: JournalLockOwner | undefined, why: string): UvmError {
  return new UvmError('JOURNAL_IN_USE', `the journal ${journalPath} is in use: ${why}`, {
    details: { reason: 'locked', path: journalPath, ...(owner ? { owner } : {}) },
  });
}

function parseOwner(text: string): JournalLockOwner | undefined {
  try {
    const o = JSON.parse(text) as Partial<JournalLockOwner>;
    if (typeof o.pid === 'number' && Number.isSafeInteger(o.pid) && o.pid > 0 && typeof o.host === 'string' && typeof o.token === 'string') {
      return { pid: o.pid, host: o.host, token: o.token, since: String(o.since ?? '') };
    }
  } catch {
    // not JSON
  }
  return undefined;
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** True when `owner` is certainly gone (see the module comment). */
export function isStale(owner: JournalLockOwner): boolean {
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return !held.has(owner.token);
  return !processIsAlive(owner.pid);
}

async function readOwner(lockPath: string): Promise<{ owner: JournalLockOwner | undefined; text: string } | undefined> {
  try {
    const text = await readFile(lockPath, 'utf8');
    return { owner: parseOwner(text), text };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** A held journal lock. `release()` is idempotent. */
export class JournalLock {
  #released = false;
  private constructor(
    readonly journalPath: string,
    readonly owner: JournalLockOwner,
  ) {}

  /** Takes the lock of `journalPath` (JOURNAL_IN_USE when someone live holds it). */
  static async acquire(journalPath: string): Promise<JournalLock> {
    const lockPath = lockPathOf(journalPath);
    const owner: JournalLockOwner = { pid: process.pid, host: hostname(), token: randomBytes(8).toString('hex'), since: new Date().toISOString() };
    const text = JSON.stringify(owner);
    for (let attempt = 0; ; attempt++) {
      // Known as ours before the file exists: a concurrent claimant of this process must not
      // mistake it for a previous process's lock.
      held.add(owner.token);
      try {
        await writeFileExclusive(lockPath, text);
        return new JournalLock(journalPath, owner);
      } catch (err) {
        held.delete(owner.token);
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new UvmError('RECOVERY_FAILED', `cannot create the journal lock ${lockPath}`, { cause: err, details: { reason: 'io', path: lockPath } });
        }
      }
      const current = await readOwner(lockPath);
      if (current === undefined) continue; // released meanwhile: claim again
      if (!current.owner) throw inUse(journalPath, undefined, `${lockPath} is not a lock record (delete it once no process uses the journal)`);
      if (attempt > 0 || !isStale(current.owner)) {
        throw inUse(journalPath, current.owner, `held by process ${current.owner.pid} on ${current.owner.host} since ${current.owner.since}`);
      }
      await breakStale(lockPath, current.text);
    }
  }

  get released(): boolean {
    return this.#released;
  }

  /** Deletes the lock file if it is still this lock's. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const lockPath = lockPathOf(this.journalPath);
    held.delete(this.owner.token);
    const current = await readOwner(lockPath).catch(() => undefined);
    if (current?.owner?.token === this.owner.token) await unlink(lockPath).catch(() => undefined);
  }
}

/** Moves a stale lock away; puts it back (no-clobber) if what was moved is not the stale lock. */
async function breakStale(lockPath: string, staleText: string): Promise<void> {
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const moved = await readFile(aside, 'utf8').catch(() => staleText);
  if (moved !== staleText) {
    // Another claimant took over between our read and our rename: give its lock back.
    await link(aside, lockPath).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}
