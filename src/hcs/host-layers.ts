/**
 * The host layer API (vmcompute.dll: ActivateLayer, PrepareLayer, GetLayerMountPath,
 * UnprepareLayer, DeactivateLayer, NameToGuid) and the bind filter (bindfltapi.dll: BfSetupFilter,
 * BfRemoveMapping) that mount a process-isolated container's layers on the host
 * (hcs-real-world.md §3; native/include/hostlayers.h). Loaded from the real DLLs on Windows and
 * from the HCS simulator elsewhere (the same library `computecore.ts` loads), once per process,
 * and kept reachable forever.
 *
 * Driver discipline (as the HCS calls): every call runs on the libuv pool (never blocks the event
 * loop), is counted in `pendingPromises` until the native call returns, keeps its argument
 * buffers referenced until then, and a `timeoutMs` bounds the wait, not the call (TIMEOUT; the
 * call goes on and its memory stays alive until it returns). A negative HRESULT rejects with an
 * `HcsError` (code HCS_ERROR, `op` = the function name, `hresult`).
 */
import { basename } from 'node:path';
import koffi from 'koffi';
import { UvmError } from '../core/errors.js';
import { formatGuid, loadComputeCore, resolveLibraryPath, type ComputeCoreLoadOptions, type Guid } from './computecore.js';
import { OperationDriver } from './operation-driver.js';
import { HcsError } from './hcs-error.js';

/** BINDFLT_FLAG_READ_ONLY_MAPPING. */
export const BINDFLT_READ_ONLY = 0x1;
/** BINDFLT_FLAG_NO_MULTIPLE_TARGETS (containerd's flags for a layer mount). */
export const BINDFLT_NO_MULTIPLE_TARGETS = 0x40;

/** Options of one host layer call. */
export interface HostLayerCallOptions {
  /**
   * Bounds the wait (code TIMEOUT); the native call itself runs to completion and keeps its slot
   * of the bounded driver (at most 4 host layer calls at once, 2 per layer path) until then.
   */
  timeoutMs?: number;
}

/** The host layer and bind-filter calls, typed. */
export interface HostLayerApi {
  activateLayer(path: string, options?: HostLayerCallOptions): Promise<void>;
  /** `parents`: immediate parent first, base last; each LayerId is NameToGuid(last path element). */
  prepareLayer(path: string, parents: readonly string[], options?: HostLayerCallOptions): Promise<void>;
  /** The two-call protocol: the length, then the path (`\\?\Volume{…}` for a writable layer). */
  getLayerMountPath(path: string, options?: HostLayerCallOptions): Promise<string>;
  unprepareLayer(path: string, options?: HostLayerCallOptions): Promise<void>;
  deactivateLayer(path: string, options?: HostLayerCallOptions): Promise<void>;
  /** `BfSetupFilter(NULL, flags, root, target, NULL, 0)`: a global mapping of `root` onto `target`. */
  setupFilter(root: string, target: string, flags: number, options?: HostLayerCallOptions): Promise<void>;
  /** `BfRemoveMapping(NULL, root)`. */
  removeMapping(root: string, options?: HostLayerCallOptions): Promise<void>;
  nameToGuid(name: string): string;
}

/** A loaded native function (koffi's function object). */
type NativeFn = ReturnType<ReturnType<typeof koffi.load>['func']>;

interface Functions {
  ActivateLayer: NativeFn;
  DeactivateLayer: NativeFn;
  PrepareLayer: NativeFn;
  UnprepareLayer: NativeFn;
  GetLayerMountPath: NativeFn;
  NameToGuid: NativeFn;
  BfSetupFilter: NativeFn;
  BfRemoveMapping: NativeFn;
  HcsSimHostLayers: NativeFn | undefined;
  LocalFree: NativeFn;
}

const GLOBAL_KEY = Symbol.for('uvm-orchestrator.host-layers');
type GlobalSlot = { [GLOBAL_KEY]?: { path: string; f: Functions; keep: unknown[] } };

/** hcsshim's internal driver info: the filter driver, no home directory (the id is the full path). */
const DRIVER_INFO = { Flavour: 1, HomeDir: '' };

function load(options: ComputeCoreLoadOptions): { path: string; f: Functions } {
  const slot = globalThis as GlobalSlot;
  const existing = slot[GLOBAL_KEY];
  if (existing) return existing;
  const win = process.platform === 'win32';
  const path = win ? 'vmcompute.dll' : resolveLibraryPath(options);
  let loaded: NonNullable<GlobalSlot[typeof GLOBAL_KEY]>;
  try {
    const vmcompute = koffi.load(path);
    const bindflt = win ? koffi.load('bindfltapi.dll') : vmcompute;
    const kernel32 = win ? koffi.load('kernel32.dll') : vmcompute;
    koffi.struct('UVMO_HL_GUID', { Data1: 'uint32_t', Data2: 'uint16_t', Data3: 'uint16_t', Data4: koffi.array('uint8_t', 8, 'Array') });
    koffi.struct('UVMO_HL_DRIVER_INFO', { Flavour: 'int32_t', HomeDir: 'const char16_t *' });
    koffi.struct('UVMO_HL_LAYER_DESCRIPTOR', { LayerId: 'UVMO_HL_GUID', Flags: 'uint32_t', Path: 'const char16_t *' });
    let sim: NativeFn | undefined;
    try {
      sim = vmcompute.func('int32_t __stdcall HcsSimHostLayers(_Out_ void **state)');
    } catch {
      sim = undefined;
    }
    const f: Functions = {
      ActivateLayer: vmcompute.func('int32_t __stdcall ActivateLayer(const UVMO_HL_DRIVER_INFO *info, const char16_t *id)'),
      DeactivateLayer: vmcompute.func('int32_t __stdcall DeactivateLayer(const UVMO_HL_DRIVER_INFO *info, const char16_t *id)'),
      PrepareLayer: vmcompute.func(
        'int32_t __stdcall PrepareLayer(const UVMO_HL_DRIVER_INFO *info, const char16_t *id, const UVMO_HL_LAYER_DESCRIPTOR *layers, uint32_t count)',
      ),
      UnprepareLayer: vmcompute.func('int32_t __stdcall UnprepareLayer(const UVMO_HL_DRIVER_INFO *info, const char16_t *id)'),
      GetLayerMountPath: vmcompute.func(
        'int32_t __stdcall GetLayerMountPath(const UVMO_HL_DRIVER_INFO *info, const char16_t *id, _Inout_ size_t *length, void *buffer)',
      ),
      NameToGuid: vmcompute.func('int32_t __stdcall NameToGuid(const char16_t *name, _Out_ UVMO_HL_GUID *guid)'),
      BfSetupFilter: bindflt.func(
        'int32_t __stdcall BfSetupFilter(void *job, uint32_t flags, const char16_t *root, const char16_t *target, void *exceptions, uint32_t count)',
      ),
      BfRemoveMapping: bindflt.func('int32_t __stdcall BfRemoveMapping(void *job, const char16_t *root)'),
      HcsSimHostLayers: sim,
      LocalFree: kernel32.func('void * __stdcall LocalFree(void *memory)'),
    };
    loaded = { path, f, keep: [vmcompute, bindflt, kernel32] };
  } catch (e) {
    throw new UvmError('LIBRARY_LOAD_FAILED', `cannot load the host layer API from ${path}: ${(e as Error).message}`, { cause: e, details: { path } });
  }
  slot[GLOBAL_KEY] = loaded;
  return loaded;
}

/** Runs `fn` on the libuv pool; `keep` stays referenced until the native call returns. */
/**
 * The bounded driver the host layer calls run on (blocking lane): at most
 * `maxConcurrentBlockingCalls` of them on the libuv pool at once, at most
 * `perSystemBlockingCalls` per layer path; a timeout bounds the wait (TIMEOUT, with the late
 * outcome attached), the call keeps its slot until it returns. One per process.
 */
let sharedDriver: OperationDriver | undefined;
function hostLayerDriver(options: ComputeCoreLoadOptions): OperationDriver {
  sharedDriver ??= new OperationDriver(loadComputeCore(options));
  return sharedDriver;
}

function call(driver: OperationDriver, name: string, key: string, fn: NativeFn, args: unknown[], options: HostLayerCallOptions = {}): Promise<number> {
  return driver.runBlocking({
    op: name,
    systemId: key,
    options: options.timeoutMs === undefined ? undefined : { timeoutMs: options.timeoutMs },
    call: () =>
      new Promise<number>((resolve, reject) => {
        fn.async(...args, (err: unknown, hr: unknown) => (err ? reject(err) : resolve(hr as number)));
      }),
  });
}

function check(op: string, path: string, hr: number): void {
  if (hr < 0) throw new HcsError({ op, hresult: hr, text: undefined, systemId: path });
}

function guidFields(text: string): Guid {
  const hex = text.replace(/-/g, '');
  const bytes = Array.from({ length: 8 }, (_, i) => parseInt(hex.slice(16 + 2 * i, 18 + 2 * i), 16));
  return { Data1: parseInt(hex.slice(0, 8), 16), Data2: parseInt(hex.slice(8, 12), 16), Data3: parseInt(hex.slice(12, 16), 16), Data4: bytes };
}

/** The host layer API of this process (loaded on first use). LIBRARY_LOAD_FAILED when it cannot be loaded. */
export function loadHostLayerApi(options: ComputeCoreLoadOptions = {}): HostLayerApi {
  const { f } = load(options);
  const driver = hostLayerDriver(options);
  const nameToGuid = (name: string): string => {
    const guid: Guid = { Data1: 0, Data2: 0, Data3: 0, Data4: [] };
    const hr = f.NameToGuid(name, guid) as number;
    if (hr < 0) throw new HcsError({ op: 'NameToGuid', hresult: hr });
    return formatGuid(guid);
  };
  const simple = (op: 'ActivateLayer' | 'DeactivateLayer' | 'UnprepareLayer') => async (path: string, options?: HostLayerCallOptions) =>
    check(op, path, await call(driver, op, path, f[op], [DRIVER_INFO, path], options));
  return {
    activateLayer: simple('ActivateLayer'),
    deactivateLayer: simple('DeactivateLayer'),
    unprepareLayer: simple('UnprepareLayer'),
    async prepareLayer(path, parents, options) {
      const descriptors = parents.map((p) => ({ LayerId: guidFields(nameToGuid(basename(p.replace(/[\\/]+$/, '').replace(/\\/g, '/')))), Flags: 0, Path: p }));
      check('PrepareLayer', path, await call(driver, 'PrepareLayer', path, f.PrepareLayer, [DRIVER_INFO, path, descriptors.length > 0 ? descriptors : null, descriptors.length], options));
    },
    async getLayerMountPath(path, options) {
      const length = [0];
      check('GetLayerMountPath', path, await call(driver, 'GetLayerMountPath', path, f.GetLayerMountPath, [DRIVER_INFO, path, length, null], options));
      if (length[0] === 0) return '';
      const buffer = Buffer.alloc(length[0]! * 2);
      check('GetLayerMountPath', path, await call(driver, 'GetLayerMountPath', path, f.GetLayerMountPath, [DRIVER_INFO, path, length, buffer], options));
      const text = buffer.toString('utf16le');
      const nul = text.indexOf('\0');
      return nul === -1 ? text : text.slice(0, nul);
    },
    async setupFilter(root, target, flags, options) {
      check('BfSetupFilter', root, await call(driver, 'BfSetupFilter', root, f.BfSetupFilter, [null, flags, root, target, null, 0], options));
    },
    async removeMapping(root, options) {
      check('BfRemoveMapping', root, await call(driver, 'BfRemoveMapping', root, f.BfRemoveMapping, [null, root], options));
    },
    nameToGuid,
  };
}

/** The simulator's host layer model (HcsSimHostLayers); NOT_SUPPORTED on real Windows. */
export interface SimulatorHostLayers {
  Layers: { Path: string; Activated: boolean; Prepared: boolean; ReadWrite: boolean; Parents: string[]; MountPath: string }[];
  Bindings: { Root: string; Target: string; Flags: number }[];
}

/** The simulator's host layer state (activated, prepared, attached layers) — tests only. */
export function readSimulatorHostLayers(options: ComputeCoreLoadOptions = {}): SimulatorHostLayers {
  const { f } = load(options);
  if (!f.HcsSimHostLayers) throw new UvmError('NOT_SUPPORTED', 'the host layer API is not the simulator');
  const out: unknown[] = [null];
  const hr = f.HcsSimHostLayers(out) as number;
  if (hr < 0) throw new HcsError({ op: 'HcsSimHostLayers', hresult: hr });
  try {
    return JSON.parse(koffi.decode(out[0], 'char16_t', -1) as string) as SimulatorHostLayers;
  } finally {
    f.LocalFree(out[0]);
  }
}
