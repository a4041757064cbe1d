import { inject, injectable, type ServiceIdentifier } from 'inversify';
import { UvmError } from '../core/errors.js';
import type { HcsApi, HcsCallOptions, HcsSystem, HcsSystemSummary } from './hcs-api.js';
import { HcsError } from './hcs-error.js';
import { formatGuid, loadComputeCore, toWide, type ComputeCore } from './computecore.js';
import { ComputeSystem } from './compute-system.js';
import { DEFAULT_MAX_CONCURRENT_OPERATIONS, OperationDriver } from './operation-driver.js';

/** Options of the FFI binding. */
export interface ComputeCoreHcsOptions {
  /**
   * The HCS library to load: computecore.dll (Windows) or the simulator. Default: env
   * `UVM_HCS_LIBRARY`, else `computecore.dll` on Windows and `<package>/build/native/libhcssim.so`
   * elsewhere.
   */
  libraryPath?: string;
  /** Operations in HCS at once. @default 64 */
  maxConcurrentOperations?: number;
  /**
   * Timeout (ms) applied to `createComputeSystem` and to `start()` of the systems this binding
   * creates or opens, when the caller gives no `timeoutMs` (an AbortSignal alone does not count).
   * hcsshim uses 4 minutes for both. @default undefined (no timeout)
   */
  defaultTimeoutMs?: number;
  /**
   * Timeout of every `modify` when the caller gives none (ms): a hung attach or removal is then
   * cancelled (and its completion still awaited) instead of blocking its resource forever; the
   * device managers roll back or keep the resource retryable as for any failure.
   * @default undefined (no timeout)
   */
  modifyTimeoutMs?: number;
}
export const ComputeCoreHcsOptions: ServiceIdentifier<ComputeCoreHcsOptions> = Symbol.for(
  'uvm-orchestrator.ComputeCoreHcsOptions',
);

/** The options `HcsModule` binds when the container has none. */
export function defaultComputeCoreHcsOptions(): ComputeCoreHcsOptions {
  return { maxConcurrentOperations: DEFAULT_MAX_CONCURRENT_OPERATIONS };
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
    this.#options = { ...options };
  }

  /** The loaded library (loads it). */
  get library(): ComputeCore {
    return this.driver.library;
  }

  /** The operation driver (loads the library). */
  get driver(): OperationDriver {
    if (!this.#driver) {
      const lib = loadComputeCore({ libraryPath: this.#options.libraryPath });
      this.#driver = new OperationDriver(lib, { maxConcurrentOperations: this.#options.maxConcurrentOperations });
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
    return ComputeSystem.open(this.driver, id, { startTimeoutMs: this.#options.defaultTimeoutMs, modifyTimeoutMs: this.#options.modifyTimeoutMs });
  }

  async enumerateComputeSystems(query: Record<string, unknown> = {}): Promise<HcsSystemSummary[]> {
    const driver = this.driver;
    const lib = driver.library;
    const queryW = toWide(JSON.stringify(query));
    const document = await driver.run({
      op: 'HcsEnumerateComputeSystems',
      call: (op) => lib.enumerateComputeSystems(queryW, op),
      inputs: [queryW],
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
    const hr = await this.driver.library.grantVmAccess(vmId, path);
    if (hr < 0) throw new HcsError({ op: 'HcsGrantVmAccess', systemId: vmId, hresult: hr, text: undefined });
  }

  async revokeVmAccess(vmId: string, path: string): Promise<void> {
    checkId(vmId, 'revokeVmAccess');
    checkPath(path, 'revokeVmAccess');
    const hr = await this.driver.library.revokeVmAccess(vmId, path);
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
    return { ...options, timeoutMs: this.#options.defaultTimeoutMs };
  }
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
