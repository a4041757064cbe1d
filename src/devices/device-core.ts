/**
 * The device core: one refcounted table of one kind of resource in one UVM, driven by a small
 * per-device policy. The core owns what every manager used to repeat around `RefCountedTable`:
 * acquire (reserve, then commit), the restore path (`adopt`: claim the recorded slot or check an
 * existing entry against it), `describe()`, `retryFailedTeardowns()`, `purge()`, and structured
 * logging (uvm id, kind, host path, slot, guest path, plus the policy's fields, built only when
 * the line is written). What a placement takes (slot, name, device) lives in the table's value and
 * is given back through the policy's `forget` in the same step as the entry leaves the table.
 *
 * A policy says only what is particular to its device:
 * - `key` — what shares one resource;
 * - `place` — the synchronous placement of a new key (slot or name taken now, NO_SLOT to refuse)
 *   and its `commit` (the HCS calls; a `Residue` when a failed add left something behind);
 * - `remove` — the teardown steps after the last release (resumable: a rejection keeps the entry
 *   in `teardown-failed`, and the next release or `retryFailedTeardowns()` calls it again);
 * - `where` / `fields` — what `describe()` and the log lines show;
 * - `view` — what a caller's lease holds;
 * - `claim` / `conflict` — the restore checks (recovery, docs/recovery.md).
 */
import { invalidArgument, UvmError } from '../core/errors.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, logLevelEnabled, withFields, type LogFields, type Logger } from '../core/logger.js';
import { retainShape } from '../core/retained-shapes.js';
import { RefCountedTable, Residue, type AcquireOptions, type EntryInfo, type Placed, type Reservation } from '../core/refcounted-table.js';
import type { GuestOs, ResourceInfo } from './device-types.js';

/** Where a value sits: shown by `describe()` and on every log line about it. */
export interface DeviceWhere {
  hostPath?: string;
  /** `c:l` (SCSI), device or `device@offset` (VPMEM), share name (VSMB, Plan9), VMBus GUID (vPCI). */
  slot?: string;
  guestPath?: string;
}

/** A policy's placement: `cancel` defaults to the policy's `forget` of the value. */
export type DevicePlacement<V> = Omit<Placed<V>, 'cancel'> & Partial<Pick<Placed<V>, 'cancel'>>;

/**
 * What one device kind tells the core. `P` is a validated request (the manager validates), `V`
 * the table's value (with its slot), `W` what a caller's lease holds (and what a journal records).
 */
export interface DevicePolicy<P, V, W> {
  /** Log `kind` (`plan9`, `vpmem`, …). */
  readonly device: string;
  /** `describe()` kind; also the table's name in errors and leak reports unless `table` is set. */
  readonly kind: ResourceInfo['kind'];
  readonly table?: string;
  /** Managers of one guest OS only: every reserve and adopt of another is NOT_SUPPORTED with `message`. */
  readonly only?: { os: GuestOs; message: string };
  /** The refcount key: equal keys share one resource. */
  key(params: P): string;
  /** Places a new key synchronously, no I/O (throws to refuse, e.g. NO_SLOT: nothing is taken then). */
  place(params: P, key: string): DevicePlacement<V>;
  /** The teardown after the last release; resumable (called again after a rejection). */
  remove(value: V, key: string): Promise<void>;
  /** Gives back what placing took, as the entry leaves the table (or its reservation is cancelled). */
  forget?(value: V): void;
  /** True for a value kept attached at refcount 0 until the VM exits (`kept`, see RefCountedTable). */
  keepAtZero?(value: V): boolean;
  where(value: V): DeviceWhere;
  /** More log fields (debug detail), built only for a line that is written. */
  fields?(value: V): LogFields;
  /** The caller's value. */
  view(value: V, params: P): W;
  /** Restore: the value of a resource already attached as `recorded`, claiming its slot (no HCS call). */
  claim?(params: P, recorded: W): V | Promise<V>;
  /** Restore: why an existing entry is not at `recorded`'s place (→ RECOVERY_FAILED), or undefined. */
  conflict?(value: V, recorded: W): string | undefined;
}

/**
 * A decimal name counter that never reuses a name (Plan9 `0, 1, …`, VSMB `s1, s2, …`): a name
 * given back by a cancelled reservation is reused only when it is the newest (a plan cancels
 * newest first); a failed add leaves a gap, as hcsshim's counter.
 */
export class NameCounter {
  #next: number;

  constructor(first: number) {
    this.#next = first;
  }

  /** Takes the next number; `giveBack` returns it if nothing newer was taken since. */
  take(): { n: number; giveBack(): void } {
    const n = this.#next++;
    return {
      n,
      giveBack: () => {
        if (this.#next === n + 1) this.#next = n;
      },
    };
  }

  /** Recovery: the next number is at least `next` (numbers seen in HCS or a journal). */
  atLeast(next: number): void {
    if (Number.isSafeInteger(next)) this.#next = Math.max(this.#next, next);
  }
}

/** One device kind's table and its policy (see the file comment). */
export class DeviceCore<P, V, W> {
  readonly #policy: DevicePolicy<P, V, W>;
  readonly #logger: Logger;
  readonly #table: RefCountedTable<string, V>;
  readonly #os: GuestOs;
  /** The table's placement and view of a reservation's params (made once, not per reservation). */
  readonly #placeParams = (key: string, params: P): Placed<V> => this.#place(params, key);
  readonly #viewParams = (value: V, params: P): W => this.#policy.view(value, params);

  constructor(uvmId: string, os: GuestOs, logger: Logger, policy: DevicePolicy<P, V, W>) {
    this.#policy = policy;
    this.#os = os;
    this.#logger = withFields(logger, { [LogField.uvmId]: uvmId, [LogField.kind]: policy.device });
    this.#table = new RefCountedTable<string, V>({
      name: policy.table ?? policy.kind,
      destroy: (value, key) => this.#remove(value, key),
      forget: policy.forget && ((value) => policy.forget!(value)),
      keepAtZero: policy.keepAtZero && ((value) => policy.keepAtZero!(value)),
    });
  }

  /**
   * Checks what every request must be before it is parsed: NOT_SUPPORTED on a UVM of the other
   * guest OS (for a policy with `only`), INVALID_ARGUMENT when it is not an object (`what`).
   */
  check<R>(request: R, what: string): R {
    const only = this.#policy.only;
    if (only && only.os !== this.#os) throw new UvmError('NOT_SUPPORTED', only.message);
    if (request === null || typeof request !== 'object') throw invalidArgument(`${what} must be an object`);
    return request;
  }

  /**
   * Reserves one reference synchronously, no I/O: an existing key is shared, a new one is placed
   * by the policy now. See `Reservation` for commit, abort and cancel.
   */
  reserve(params: P): Reservation<W> {
    return this.#table.reserve(this.#policy.key(params), this.#placeParams, this.#viewParams, params);
  }

  /** Reserve, then commit. */
  async acquire(params: P, options: AcquireOptions = {}): Promise<Lease<W>> {
    return this.reserve(params).commit(options);
  }

  /**
   * Restore (recovery): one reference to `params`' resource, recorded as `recorded`, with no HCS
   * call. A new entry is the policy's `claim` (which takes exactly the recorded slot or name); an
   * existing one must be where `recorded` says (RECOVERY_FAILED, and the reference is dropped).
   */
  async adopt(params: P, recorded: W): Promise<Lease<W>> {
    const { claim, conflict } = this.#policy;
    if (!claim) throw new UvmError('NOT_SUPPORTED', `${this.#table.name} entries cannot be restored`);
    const key = this.#policy.key(params);
    const lease = await this.#table.acquire(key, async () => {
      const value = await claim(params, recorded);
      this.log('debug', value, 'adopted');
      return value;
    });
    const why = conflict?.(lease.value, recorded);
    if (why !== undefined) {
      await lease.release(); // the entry was there before: this drops only the reference just taken
      throw new UvmError('RECOVERY_FAILED', why, { details: { kind: this.#policy.kind, key, hostPath: this.#policy.where(lease.value).hostPath } });
    }
    return new ReleasableLease(this.#policy.view(lease.value, params), () => lease.release());
  }

  /** Every entry, in any state, as `ResourceInfo`. */
  describe(): ResourceInfo[] {
    return this.#table.entries().map((e) => ({
      kind: this.#policy.kind,
      key: e.key,
      state: e.state,
      refCount: e.refCount,
      ...(e.value === undefined ? {} : definedOnly(this.#policy.where(e.value))),
    }));
  }

  /** The table's entries (diagnostics and tests). */
  entries(): EntryInfo<string, V>[] {
    return this.#table.entries();
  }

  /** The value of every entry that has one (what placements hold), without snapshot objects. */
  values(): IterableIterator<V> {
    return this.#table.values();
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#table.retryFailedTeardowns();
  }

  /** `RefCountedTable.sharable` of `params`' key: the value a reservation of it would share now. */
  sharable(params: P): V | undefined {
    return this.#table.sharable(this.#policy.key(params));
  }

  /** `RefCountedTable.tearingDown` of `params`' key. */
  tearingDown(params: P): boolean {
    return this.#table.tearingDown(this.#policy.key(params));
  }

  /** `RefCountedTable.whenTornDown` of `params`' key. */
  whenTornDown(params: P): Promise<boolean> {
    return this.#table.whenTornDown(this.#policy.key(params));
  }

  /** Forgets every `kept` entry (the VM they were attached to is gone). */
  purge(): void {
    this.#table.purge();
  }

  /** A structured log line about `value`: where it sits, the policy's fields, and `err`. */
  log(level: 'debug' | 'warn', value: V, message: string, err?: unknown): void {
    if (!logLevelEnabled(this.#logger, level)) return;
    const where = this.#policy.where(value);
    this.#logger[level](message, {
      ...definedOnly({ [LogField.hostPath]: where.hostPath, [LogField.slot]: where.slot, [LogField.guestPath]: where.guestPath }),
      ...this.#policy.fields?.(value),
      ...(err === undefined ? {} : { error: String(err) }),
    });
  }

  /** The policy's placement, with its commit logged ("added", or why not). */
  #place(params: P, key: string): Placed<V> {
    return new LoggedPlacement(this, this.#policy.place(params, key), this.#policy.forget);
  }

  /** The policy's removal, logged ("removed", or why not). A method, not closures made per call. */
  async #remove(value: V, key: string): Promise<void> {
    try {
      await this.#policy.remove(value, key);
    } catch (err) {
      this.log('warn', value, 'remove failed; release() again to resume', err);
      throw err;
    }
    this.log('debug', value, 'removed');
  }
}

/**
 * A policy's placement whose commit is logged ("added", or why not) and whose cancel gives back
 * what placing took (the placement's own `cancel`, else the policy's `forget`). A class, not
 * closures made per placement: V8 keeps the optimized code of methods across full collections.
 */
class LoggedPlacement<V> implements Placed<V> {
  readonly value: V;

  constructor(
    readonly core: { log(level: 'debug' | 'warn', value: V, message: string, err?: unknown): void },
    readonly placed: DevicePlacement<V>,
    readonly forget: ((value: V) => void) | undefined,
  ) {
    this.value = placed.value;
  }

  cancel(): void {
    if (this.placed.cancel) this.placed.cancel();
    else this.forget?.(this.value);
  }

  async commit(): Promise<void | Residue<V>> {
    let outcome: void | Residue<V>;
    try {
      outcome = await this.placed.commit();
    } catch (err) {
      this.core.log('warn', this.value, 'add failed', err);
      throw err;
    }
    if (outcome instanceof Residue) this.core.log('warn', this.value, 'add failed and could not be undone; kept for a retried teardown', outcome.error);
    else this.core.log('debug', this.value, 'added');
    return outcome;
  }
}
retainShape(new LoggedPlacement<unknown>({ log: () => undefined }, { value: undefined, commit: () => Promise.resolve() }, undefined));

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
