import { inject, injectable, type ServiceIdentifier } from 'inversify';
import { UvmError } from '../core/errors.js';
import { withOwn } from '../core/plain-copy.js';
import type { HcsApi, HcsCallOptions, HcsSystem, HcsSystemSummary } from './hcs-api.js';
import { HcsError } from './hcs-error.js';
import { formatGuid, loadComputeCore, toWide, type ComputeCore } from './computecore.js';
import { ComputeSystem } from './compute-system.js';
import { OperationDriver, type OperationDriverOptions } from './operation-driver.js';

/** Default timeout of every HCS call but modify (ms): hcsshim's 4 minutes for create and start. */
export const DEFAULT_SYSTEM_TIMEOUT_MS = 240_000;
/** Default timeout of modify (ms): hcsshim v1's 4-minute syscall watcher (v2 has none). */
export const DEFAULT_MODIFY_TIMEOUT_MS = 240_000;

/** Options of the FFI binding. */
export interface ComputeCoreHcsOptions extends OperationDriverOptions {
  /**
   * The HCS library to load: computecore.dll (Windows) or the simulator. Default: env
   * `UVM_HCS_LIBRARY`, else `computecore.dll` on Windows and `<package>/build/native/libhcssim.so`
   * elsewhere.
   */
  libraryPath?: string;
  /**
   * Timeout (ms) of every call but `modify` when the caller gives no `timeoutMs` (an AbortSignal
   * alone does not count): create, start, shut down, terminate, properties, enumerate, open,
   * grant and revoke. At the deadline the call rejects with TIMEOUT at once; HCS cannot cancel,
   * so the operation keeps its slot until it completes, and a late success is undone.
   * @default 240000 (hcsshim's 4 minutes)
   */
  defaultTimeoutMs?: number;
  /**
   * Timeout of every `modify` when the caller gives none (ms): a hung attach or removal rejects
   * with TIMEOUT instead of blocking its resource forever (see `defaultTimeoutMs` for what
   * happens to the operation itself).
   * @default 240000
   */
  modifyTimeoutMs?: number;
}
/** DI token of the binding options. */
export const ComputeCoreHcsOptions: ServiceIdentifier<ComputeCoreHcsOptions> = Symbol.for(
  'uvm-orchestrator.ComputeCoreHcsOptions',
);

/** The options `HcsModule` binds when the container has none. */
export function defaultComputeCoreHcsOptions(): ComputeCoreHcsOptions {
  return {};
}

/**
 * `HcsApi` over computecore.dll (or the simulator) through koffi. The library is loaded on first
 * use (LIBRARY_LOAD_FAILED if it cannot be).
 */
@injectable()
export class ComputeCoreHcs implements HcsApi {
  readonly #options: ComputeCoreHcsOptions;
  #driver: OperationDriver | undefined;

  constructor(@inject(ComputeCoreHcsOptions) options: ComputeCoreHcsOptions = defaultComputeCoreHcsOptions()) {
    for (const [name, value] of [['modifyTimeoutMs', options.modifyTimeoutMs]] as const) {
      if (value !== undefined && (!Number.isFinite(value) || value < 0)) {
        throw new UvmError('INVALID_ARGUMENT', `${name} must be a finite number >= 0, got ${value}`);
      }
    }
    const t = options.defaultTimeoutMs;
    if (t !== undefined && (!Number.isFinite(t) || t < 0)) {
      throw new UvmError('INVALID_ARGUMENT', `defaultTimeoutMs must be a finite number >= 0, got ${t}`);
    }
    this.#options = { defaultTimeoutMs: DEFAULT_SYSTEM_TIMEOUT_MS, modifyTimeoutMs: DEFAULT_MODIFY_TIMEOUT_MS, ...stripUndefined(options) };
  }

  /** The loaded library (loads it). */
  get library(): ComputeCore {
    return this.driver.library;
  }

  /** The operation driver (loads the library). */
  get driver(): OperationDriver {
    if (!this.#driver) {
      const lib = loadComputeCore({ libraryPath: this.#options.libraryPath });
      const o = this.#options;
      this.#driver = new OperationDriver(lib, {
        maxConcurrentOperations: o.maxConcurrentOperations,
        perSystemOperations: o.perSystemOperations,
        reservedForTeardown: o.reservedForTeardown,
        maxConcurrentBlockingCalls: o.maxConcurrentBlockingCalls,
        perSystemBlockingCalls: o.perSystemBlockingCalls,
      });
    }
    return this.#driver;
  }

  async createComputeSystem(
    id: string,
    configuration: Record<string, unknown>,
    options?: HcsCallOptions,
  ): Promise<ComputeSystem> {
    checkId(id, 'createComputeSystem');
    if (configuration === null || typeof configuration !== 'object' || Array.isArray(configuration)) {
      throw new UvmError('INVALID_ARGUMENT', 'createComputeSystem: the configuration must be an object');
    }
    return ComputeSystem.create(this.driver, id, configuration, {
      call: this.#withDefaultTimeout(options),
      startTimeoutMs: this.#options.defaultTimeoutMs,
      modifyTimeoutMs: this.#options.modifyTimeoutMs,
    });
  }

  async openComputeSystem(id: string): Promise<ComputeSystem> {
    checkId(id, 'openComputeSystem');
    return ComputeSystem.open(this.driver, id, {
      startTimeoutMs: this.#options.defaultTimeoutMs,
      modifyTimeoutMs: this.#options.modifyTimeoutMs,
      call: this.#withDefaultTimeout(undefined),
    });
  }

  async enumerateComputeSystems(query: Record<string, unknown> = {}): Promise<HcsSystemSummary[]> {
    const driver = this.driver;
    const lib = driver.library;
    const queryW = toWide(JSON.stringify(query));
    const document = await driver.run({
      op: 'HcsEnumerateComputeSystems',
      call: (op) => lib.enumerateComputeSystems(queryW, op),
      inputs: [queryW],
      options: this.#withDefaultTimeout(undefined),
    });
    if (document === undefined) return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(document);
    } catch (e) {
      throw new UvmError('HCS_ERROR', 'HcsEnumerateComputeSystems: unparseable result document', { cause: e, details: { document } });
    }
    if (!Array.isArray(parsed)) {
      throw new UvmError('HCS_ERROR', 'HcsEnumerateComputeSystems: the result document is not an array', { details: { document } });
    }
    return parsed.filter((s): s is HcsSystemSummary => s !== null && typeof s === 'object' && typeof s.Id === 'string');
  }

  async grantVmAccess(vmId: string, path: string): Promise<void> {
    checkId(vmId, 'grantVmAccess');
    checkPath(path, 'grantVmAccess');
    const driver = this.driver;
    const lib = driver.library;
    const hr = await driver.runBlocking({
      op: 'HcsGrantVmAccess',
      systemId: vmId,
      call: () => lib.grantVmAccess(vmId, path),
      options: this.#withDefaultTimeout(undefined),
      // Granted after the caller gave up: take it back (best effort).
      undoLate: (granted) => {
        if (granted >= 0) void this.revokeVmAccess(vmId, path).catch(() => undefined);
      },
    });
    if (hr < 0) throw new HcsError({ op: 'HcsGrantVmAccess', systemId: vmId, hresult: hr, text: undefined });
  }

  async revokeVmAccess(vmId: string, path: string): Promise<void> {
    checkId(vmId, 'revokeVmAccess');
    checkPath(path, 'revokeVmAccess');
    const driver = this.driver;
    const lib = driver.library;
    const hr = await driver.runBlocking({
      op: 'HcsRevokeVmAccess',
      systemId: vmId,
      call: () => lib.revokeVmAccess(vmId, path),
      options: this.#withDefaultTimeout(undefined),
    });
    if (hr < 0) throw new HcsError({ op: 'HcsRevokeVmAccess', systemId: vmId, hresult: hr });
  }

  nameToGuid(name: string): string {
    if (typeof name !== 'string') throw new UvmError('INVALID_ARGUMENT', 'nameToGuid: the name must be a string');
    const { hr, guid } = this.driver.library.nameToGuid(name);
    if (hr < 0) throw new HcsError({ op: 'NameToGuid', hresult: hr });
    return formatGuid(guid);
  }

  #withDefaultTimeout(options: HcsCallOptions | undefined): HcsCallOptions | undefined {
    if (options?.timeoutMs !== undefined || this.#options.defaultTimeoutMs === undefined) return options;
    // Not `{ ...options, timeoutMs }`: a spread followed by another property takes V8's slow path.
    return options === undefined ? { timeoutMs: this.#options.defaultTimeoutMs } : withOwn(options, 'timeoutMs', this.#options.defaultTimeoutMs);
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkId(id: string, op: string): void {
  if (typeof id !== 'string' || id.length === 0 || id.includes('\0')) {
    throw new UvmError('INVALID_ARGUMENT', `${op}: the id must be a non-empty string without NUL`);
  }
}

function checkPath(path: string, op: string): void {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
    throw new UvmError('INVALID_ARGUMENT', `${op}: the path must be a non-empty string without NUL`);
  }
}

// Compile-time conformance: ComputeSystem is what HcsApi hands out.
const _conforms: (s: ComputeSystem) => HcsSystem = (s) => s;
void _conforms;
