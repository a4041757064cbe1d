/**
 * Declarations of the HCS functions this library calls (native/include/computecore.h), and the
 * library that provides them: computecore.dll (+ kernel32.dll for LocalFree, vmcompute.dll for
 * NameToGuid) on Windows, the HCS simulator build/native/libhcssim.so elsewhere.
 *
 * Nothing here has behaviour beyond marshalling: typed wrappers over koffi functions. The library,
 * its koffi types and its functions are loaded once per process, on first use, and stay reachable
 * forever (koffi unloads a library whose objects become unreachable; a native thread still inside
 * it would then crash).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { UvmError } from '../core/errors.js';
import { pendingPromises } from '../core/pending-promises.js';

/** An opaque HCS_OPERATION handle. */
export type OperationHandle = { readonly __brand: 'HCS_OPERATION' };
/** An opaque HCS_SYSTEM handle. */
export type SystemHandle = { readonly __brand: 'HCS_SYSTEM' };
/**
 * A NUL-terminated UTF-16LE string in memory that does not move, for PCWSTR parameters of calls
 * whose operation may complete later: the caller keeps it referenced until the operation is done.
 */
export type WideString = Buffer & { readonly __brand: 'PCWSTR' };

/** A GUID as laid out in memory. */
export interface Guid {
  Data1: number;
  Data2: number;
  Data3: number;
  Data4: number[];
}

/** The completion callback the operation driver registers: (operation, context id). */
export type OperationCompletion = (operation: unknown, context: number | bigint) => void;

/** The system event callback the event registry registers: (HCS_EVENT pointer, context id). */
export type SystemEventCallback = (event: unknown, context: number | bigint) => void;

/** `HCS_GENERIC_ALL`: the access HcsOpenComputeSystem asks for. */
export const HCS_GENERIC_ALL = 0x10000000;

/** The typed face of the loaded library. Strings in are JS strings or `WideString`s. */
export interface ComputeCore {
  /** Where the main library was loaded from. */
  readonly path: string;
  /** True when the library is the simulator (it exports HcsSimConfigure). */
  readonly isSimulator: boolean;
  /** koffi's limit on asynchronous calls and queued foreign-thread callbacks (undefined: unknown). */
  readonly maxAsyncCalls?: number;

  /** Registers `fn` as a native completion callback; returns the pointer to pass to createOperation. Keep it forever. */
  registerCompletion(fn: OperationCompletion): unknown;
  createOperation(context: number, callback: unknown): OperationHandle | null;
  closeOperation(op: OperationHandle): void;
  /** HcsGetOperationResult; the result document is read and freed with LocalFree. */
  getOperationResult(op: OperationHandle): { hr: number; document: string | undefined };
  cancelOperation(op: OperationHandle): number;

  createComputeSystem(
    id: WideString,
    configuration: WideString,
    op: OperationHandle,
  ): { hr: number; system: SystemHandle | null };
  openComputeSystem(id: string, requestedAccess: number): Promise<{ hr: number; system: SystemHandle | null }>;
  closeComputeSystem(system: SystemHandle): void;
  startComputeSystem(system: SystemHandle, op: OperationHandle, options: WideString | null): number;
  shutDownComputeSystem(system: SystemHandle, op: OperationHandle, options: WideString | null): number;
  terminateComputeSystem(system: SystemHandle, op: OperationHandle, options: WideString | null): number;
  getComputeSystemProperties(system: SystemHandle, op: OperationHandle, query: WideString | null): number;
  modifyComputeSystem(system: SystemHandle, op: OperationHandle, configuration: WideString): number;
  enumerateComputeSystems(query: WideString | null, op: OperationHandle): number;
  grantVmAccess(vmId: string, filePath: string): Promise<number>;
  revokeVmAccess(vmId: string, filePath: string): Promise<number>;
  nameToGuid(name: string): { hr: number; guid: Guid };
  /** (Optional members: scripted test libraries may lack events.) Registers `fn` as a native HCS_EVENT_CALLBACK; returns the pointer for setComputeSystemCallback. Keep it forever. */
  registerEventCallback?(fn: SystemEventCallback): unknown;
  /** Inside the event callback only: the HCS_EVENT's type and a copy of its EventData. */
  decodeEvent?(event: unknown): { type: number; data: string | undefined };
  /** `HcsSetComputeSystemCallback(system, options, context, callback)`. */
  setComputeSystemCallback?(system: SystemHandle, options: number, context: number, callback: unknown): number;
  /** Simulator only; undefined when the library does not export HcsSimConfigure. */
  readonly simConfigure: ((json: string) => number) | undefined;
  /** Simulator only: its counters (HcsSimQuery) as a JSON document; undefined on real HCS. */
  readonly simQuery?: (() => { hr: number; document: string | undefined }) | undefined;
}

/** Where to load HCS from. */
export interface ComputeCoreLoadOptions {
  /** Path of the main library (computecore.dll or libhcssim.so). Default: env UVM_HCS_LIBRARY, else per platform. */
  libraryPath?: string;
}

/** koffi's default allows 256 queued async calls / foreign-thread callbacks; more segfaults. */
const MAX_ASYNC_CALLS = 1024;

/**
 * Encodes `s` as a NUL-terminated UTF-16LE buffer that stays put while referenced. (`Buffer.from`
 * of the string with its NUL costs about half of `allocUnsafe` + `write(s, 0, 'utf16le')`.)
 */
export function toWide(s: string): WideString {
  return Buffer.from(s + '\0', 'utf16le') as WideString;
}

/** Bytes of a reusable document buffer: a modify request (a few hundred characters) fits. */
const WIDE_BUFFER_BYTES = 2048;
/** Free reusable document buffers, at most `FREE_WIDE_MAX` (512 KiB). */
const freeWide: Buffer[] = [];
const FREE_WIDE_MAX = 256;
/** Every buffer `wideDocument` allocated (a lookup here costs less than reading `buf.buffer`). */
const ownWide = new WeakSet<Buffer>();

/**
 * `s` as a NUL-terminated UTF-16LE document (like `toWide`) in a buffer that is reused once handed
 * back with `recycleWide`: for documents of HCS operations, handed back when HCS is done with the
 * operation (closed). Writing into a free buffer costs a fifth of allocating one, and no garbage.
 */
export function wideDocument(s: string): WideString {
  if (s.length * 2 + 2 > WIDE_BUFFER_BYTES) return toWide(s);
  const buf = freeWide.pop() ?? newWideBuffer();
  const end = buf.write(s, 0, 'utf16le');
  buf[end] = 0;
  buf[end + 1] = 0;
  return buf as WideString;
}

function newWideBuffer(): Buffer {
  const buf = Buffer.allocUnsafeSlow(WIDE_BUFFER_BYTES);
  ownWide.add(buf);
  return buf;
}

/**
 * Hands back a buffer of `wideDocument` that nothing uses any more (others are left to the GC: a
 * `toWide` buffer of the same length is a slice of Node's shared pool, never adopted).
 */
export function recycleWide(buf: WideString): void {
  if (freeWide.length < FREE_WIDE_MAX && ownWide.has(buf)) freeWide.push(buf);
}

/** The package root: the nearest folder above this module with the package's package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'uvm-orchestrator') return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new UvmError('LIBRARY_LOAD_FAILED', 'cannot find the uvm-orchestrator package root');
    dir = parent;
  }
}

/** The library path that would be loaded for these options (explicit option > env > platform default). */
export function resolveLibraryPath(options: ComputeCoreLoadOptions = {}): string {
  if (options.libraryPath) return options.libraryPath;
  const env = process.env.UVM_HCS_LIBRARY;
  if (env) return env;
  if (process.platform === 'win32') return 'computecore.dll';
  return join(packageRoot(), 'build', 'native', 'libhcssim.so');
}

const GLOBAL_KEY = Symbol.for('uvm-orchestrator.computecore');
type GlobalSlot = { [GLOBAL_KEY]?: ComputeCore };

/**
 * The loaded library, loading it on first use. The first successful load wins for the whole
 * process (shared even between copies of this package, since koffi type names are
 * process-global); asking later for a different path fails with LIBRARY_LOAD_FAILED.
 */
export function loadComputeCore(options: ComputeCoreLoadOptions = {}): ComputeCore {
  const slot = globalThis as GlobalSlot;
  const path = resolveLibraryPath(options);
  const existing = slot[GLOBAL_KEY];
  if (existing) {
    if (options.libraryPath && options.libraryPath !== existing.path) {
      throw new UvmError(
        'LIBRARY_LOAD_FAILED',
        `HCS library ${existing.path} is already loaded in this process; cannot also load ${options.libraryPath}`,
        { details: { path: options.libraryPath, loaded: existing.path } },
      );
    }
    return existing;
  }
  let loaded: ComputeCore;
  try {
    loaded = bind(path);
  } catch (e) {
    if (UvmError.is(e)) throw e;
    throw new UvmError('LIBRARY_LOAD_FAILED', `cannot load the HCS library ${path}: ${(e as Error).message}`, {
      cause: e,
      details: { path },
    });
  }
  slot[GLOBAL_KEY] = loaded;
  return loaded;
}

/** The library if it was already loaded, without loading it. */
export function loadedComputeCore(): ComputeCore | undefined {
  return (globalThis as GlobalSlot)[GLOBAL_KEY];
}

function bind(path: string): ComputeCore {
  if ((koffi.config().max_async_calls ?? 0) < MAX_ASYNC_CALLS) {
    try {
      koffi.config({ max_async_calls: MAX_ASYNC_CALLS });
    } catch {
      // Another koffi user in this process loaded a library first, which freezes the
      // configuration. The default (256) still exceeds our bound on operations in flight.
    }
  }

  const win = process.platform === 'win32';
  const main = koffi.load(path);
  // LocalFree and NameToGuid live in other DLLs on Windows; the simulator exports everything.
  const kernel32 = win ? koffi.load('kernel32.dll') : main;
  const vmcompute = win ? koffi.load('vmcompute.dll') : main;

  // Types (process-global names, declared once). Prefixed to stay clear of other koffi users.
  koffi.opaque('UVMO_HCS_OPERATION_');
  koffi.opaque('UVMO_HCS_SYSTEM_');
  koffi.pointer('UVMO_HCS_OPERATION', 'UVMO_HCS_OPERATION_');
  koffi.pointer('UVMO_HCS_SYSTEM', 'UVMO_HCS_SYSTEM_');
  koffi.struct('UVMO_GUID', {
    Data1: 'uint32_t',
    Data2: 'uint16_t',
    Data3: 'uint16_t',
    Data4: koffi.array('uint8_t', 8, 'Array'),
  });
  const completionProto = koffi.proto(
    'void __stdcall UVMO_HCS_OPERATION_COMPLETION(UVMO_HCS_OPERATION operation, uintptr_t context)',
  );
  const completionPtr = koffi.pointer(completionProto);
  const eventStruct = koffi.struct('UVMO_HCS_EVENT', { Type: 'uint32_t', EventData: 'const char16_t *', Operation: 'UVMO_HCS_OPERATION' });
  const eventProto = koffi.proto('void __stdcall UVMO_HCS_EVENT_CALLBACK(void *event, uintptr_t context)');
  const eventPtr = koffi.pointer(eventProto);

  const f = {
    HcsCreateOperation: main.func(
      'UVMO_HCS_OPERATION __stdcall HcsCreateOperation(uintptr_t context, UVMO_HCS_OPERATION_COMPLETION *callback)',
    ),
    HcsCloseOperation: main.func('void __stdcall HcsCloseOperation(UVMO_HCS_OPERATION operation)'),
    // The out parameter is a reused pointer-sized Buffer (`resultSlot`), not koffi's `_Out_` array:
    // ≈ 0.2 µs less per call (85–100 ns against 305–320 ns for the bare call), no garbage per call.
    HcsGetOperationResult: main.func('int32_t __stdcall HcsGetOperationResult(UVMO_HCS_OPERATION operation, void *resultDocument)'),
    HcsCancelOperation: main.func('int32_t __stdcall HcsCancelOperation(UVMO_HCS_OPERATION operation)'),
    HcsCreateComputeSystem: main.func(
      'int32_t __stdcall HcsCreateComputeSystem(const char16_t *id, const char16_t *configuration, UVMO_HCS_OPERATION operation, const void *securityDescriptor, _Out_ UVMO_HCS_SYSTEM *computeSystem)',
    ),
    HcsOpenComputeSystem: main.func(
      'int32_t __stdcall HcsOpenComputeSystem(const char16_t *id, uint32_t requestedAccess, _Out_ UVMO_HCS_SYSTEM *computeSystem)',
    ),
    HcsCloseComputeSystem: main.func('void __stdcall HcsCloseComputeSystem(UVMO_HCS_SYSTEM computeSystem)'),
    HcsStartComputeSystem: main.func(
      'int32_t __stdcall HcsStartComputeSystem(UVMO_HCS_SYSTEM computeSystem, UVMO_HCS_OPERATION operation, const char16_t *options)',
    ),
    HcsShutDownComputeSystem: main.func(
      'int32_t __stdcall HcsShutDownComputeSystem(UVMO_HCS_SYSTEM computeSystem, UVMO_HCS_OPERATION operation, const char16_t *options)',
    ),
    HcsTerminateComputeSystem: main.func(
      'int32_t __stdcall HcsTerminateComputeSystem(UVMO_HCS_SYSTEM computeSystem, UVMO_HCS_OPERATION operation, const char16_t *options)',
    ),
    HcsGetComputeSystemProperties: main.func(
      'int32_t __stdcall HcsGetComputeSystemProperties(UVMO_HCS_SYSTEM computeSystem, UVMO_HCS_OPERATION operation, const char16_t *propertyQuery)',
    ),
    HcsModifyComputeSystem: main.func(
      'int32_t __stdcall HcsModifyComputeSystem(UVMO_HCS_SYSTEM computeSystem, UVMO_HCS_OPERATION operation, const char16_t *configuration, void *identity)',
    ),
    HcsEnumerateComputeSystems: main.func(
      'int32_t __stdcall HcsEnumerateComputeSystems(const char16_t *query, UVMO_HCS_OPERATION operation)',
    ),
    HcsGrantVmAccess: main.func('int32_t __stdcall HcsGrantVmAccess(const char16_t *vmId, const char16_t *filePath)'),
    HcsRevokeVmAccess: main.func('int32_t __stdcall HcsRevokeVmAccess(const char16_t *vmId, const char16_t *filePath)'),
    LocalFree: kernel32.func('void * __stdcall LocalFree(void *memory)'),
    NameToGuid: vmcompute.func('int32_t __stdcall NameToGuid(const char16_t *name, _Out_ UVMO_GUID *guid)'),
    HcsSetComputeSystemCallback: main.func(
      'int32_t __stdcall HcsSetComputeSystemCallback(UVMO_HCS_SYSTEM computeSystem, uint32_t callbackOptions, uintptr_t context, UVMO_HCS_EVENT_CALLBACK *callback)',
    ),
  };
  let simConfigureFn: ((json: string) => number) | undefined;
  let simQueryFn: { (...args: unknown[]): unknown } | undefined;
  try {
    const fn = main.func('int32_t __stdcall HcsSimConfigure(const char16_t *json)');
    simConfigureFn = (json: string): number => fn(json) as number;
    simQueryFn = main.func('int32_t __stdcall HcsSimQuery(_Out_ void **result)') as (...args: unknown[]) => unknown;
  } catch {
    simConfigureFn = undefined; // real HCS: no simulator controls
  }

  // Every library and function object stays reachable from here for the life of the process.
  const keep = { main, kernel32, vmcompute, f, completionProto, completionPtr, eventStruct, eventProto, eventPtr, simQueryFn };

  // HcsGetOperationResult's PWSTR out parameter: one slot, written and read synchronously on this
  // thread within one call (never held across calls or awaits).
  const resultSlot = Buffer.alloc(koffi.sizeof('void *'));
  const resultWords = new Uint32Array(resultSlot.buffer, resultSlot.byteOffset, resultSlot.length / 4);
  const wideSlot = resultWords.length === 2;
  const slotIsNull = (): boolean => resultWords[0] === 0 && (!wideSlot || resultWords[1] === 0);
  const takeDocument = (ptr: unknown): string | undefined => {
    if (ptr === null || ptr === undefined) return undefined;
    try {
      return koffi.decode.string16(ptr);
    } finally {
      f.LocalFree(ptr);
    }
  };
  const asAsync = (fn: { async: (...args: any[]) => any }, ...args: unknown[]): Promise<unknown> =>
    pendingPromises.track(
      'ffi-call',
      new Promise((resolve, reject) => {
        fn.async(...args, (err: unknown, result: unknown) => (err ? reject(err) : resolve(result)));
      }),
    );

  return {
    path,
    isSimulator: simConfigureFn !== undefined,
    maxAsyncCalls: koffi.config().max_async_calls,
    registerCompletion(fn: OperationCompletion): unknown {
      void keep;
      return koffi.register(fn, completionPtr);
    },
    createOperation(context: number, callback: unknown): OperationHandle | null {
      return f.HcsCreateOperation(context, callback) as OperationHandle | null;
    },
    closeOperation(op: OperationHandle): void {
      f.HcsCloseOperation(op);
    },
    getOperationResult(op: OperationHandle): { hr: number; document: string | undefined } {
      // (Two stores: `fill` is a call into the runtime.)
      resultWords[0] = 0;
      if (wideSlot) resultWords[1] = 0;
      const hr = f.HcsGetOperationResult(op, resultSlot) as number;
      // Most results have no document (every successful modify, start, shutdown, terminate).
      return { hr, document: slotIsNull() ? undefined : takeDocument(koffi.decode(resultSlot, 'void *')) };
    },
    cancelOperation(op: OperationHandle): number {
      return f.HcsCancelOperation(op) as number;
    },
    createComputeSystem(id: WideString, configuration: WideString, op: OperationHandle) {
      const out: unknown[] = [null];
      const hr = f.HcsCreateComputeSystem(id, configuration, op, null, out) as number;
      return { hr, system: (out[0] ?? null) as SystemHandle | null };
    },
    async openComputeSystem(id: string, requestedAccess: number) {
      const out: unknown[] = [null];
      const hr = (await asAsync(f.HcsOpenComputeSystem, id, requestedAccess, out)) as number;
      return { hr, system: (out[0] ?? null) as SystemHandle | null };
    },
    closeComputeSystem(system: SystemHandle): void {
      f.HcsCloseComputeSystem(system);
    },
    startComputeSystem: (system, op, options) => f.HcsStartComputeSystem(system, op, options) as number,
    shutDownComputeSystem: (system, op, options) => f.HcsShutDownComputeSystem(system, op, options) as number,
    terminateComputeSystem: (system, op, options) => f.HcsTerminateComputeSystem(system, op, options) as number,
    getComputeSystemProperties: (system, op, query) => f.HcsGetComputeSystemProperties(system, op, query) as number,
    modifyComputeSystem: (system, op, configuration) => f.HcsModifyComputeSystem(system, op, configuration, null) as number,
    enumerateComputeSystems: (query, op) => f.HcsEnumerateComputeSystems(query, op) as number,
    grantVmAccess: async (vmId, filePath) => (await asAsync(f.HcsGrantVmAccess, vmId, filePath)) as number,
    revokeVmAccess: async (vmId, filePath) => (await asAsync(f.HcsRevokeVmAccess, vmId, filePath)) as number,
    nameToGuid(name: string) {
      const guid: Guid = { Data1: 0, Data2: 0, Data3: 0, Data4: [] };
      const hr = f.NameToGuid(name, guid) as number;
      return { hr, guid };
    },
    registerEventCallback(fn: SystemEventCallback): unknown {
      return koffi.register(fn, eventPtr);
    },
    decodeEvent(event: unknown) {
      const e = koffi.decode(event, eventStruct) as { Type: number; EventData: string | null };
      return { type: e.Type, data: e.EventData ?? undefined };
    },
    setComputeSystemCallback: (system, options, context, callback) => f.HcsSetComputeSystemCallback(system, options, context, callback) as number,
    simConfigure: simConfigureFn,
    simQuery: simQueryFn
      ? () => {
          const out: unknown[] = [null];
          const hr = simQueryFn!(out) as number;
          return { hr, document: takeDocument(out[0]) };
        }
      : undefined,
  };
}

/** Formats a GUID as lower-case `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`. */
export function formatGuid(g: Guid): string {
  const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');
  const d4 = g.Data4.map((b) => hex(b, 2)).join('');
  return `${hex(g.Data1 >>> 0, 8)}-${hex(g.Data2, 4)}-${hex(g.Data3, 4)}-${d4.slice(0, 4)}-${d4.slice(4)}`;
}
