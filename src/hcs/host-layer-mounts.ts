/**
 * containerd's `windows-layer` mount on the host (hcs-real-world.md §3.2, containerd
 * core/mount/mount_windows.go), for process-isolated (Argon) containers:
 *
 * mount(record, target): ActivateLayer → PrepareLayer(parents) → GetLayerMountPath → bind the
 * volume (a base layer: its `Files` folder) to `target` with the bind filter (read-only per `ro`)
 * → record the source with the mount. Any failure unwinds what was done, in reverse.
 *
 * unmount(target) needs nothing else: it reads the recorded source, removes the mapping, then
 * UnprepareLayer and DeactivateLayer. "Not a mount" (the mapping is absent: ERROR_INVALID_PARAMETER
 * or ERROR_NOT_FOUND) is success, as in containerd.
 *
 * The source record: on Windows containerd's alternate data stream `<target>:containerd.io-source`
 * holding only the raw bytes of `Source` (written while the mapping is active, so containerd and
 * this library read each other's mounts). The same path is used on every host: on a non-Windows
 * host (the simulator's) it is a sibling file named `<target>:containerd.io-source`, which survives
 * a process restart like the stream does; unmount deletes it.
 */
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, win32 } from 'node:path';
import { invalidArgument, UvmError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { HcsError, isNotExist } from './hcs-error.js';
import { BINDFLT_NO_MULTIPLE_TARGETS, BINDFLT_READ_ONLY, loadHostLayerApi, type HostLayerApi, type HostLayerCallOptions } from './host-layers.js';

/** containerd's mount record (`types.Mount`). */
export interface WindowsLayerMountRecord {
  /** Must be `windows-layer`. */
  type: string;
  /** The writable layer folder (`<root>\snapshots\<id>`). */
  source: string;
  /** `rw` or `ro`, and `parentLayerPaths=<JSON array>` (immediate parent first; absent for a base layer). */
  options?: string[];
}

/** A parsed mount record. */
export interface WindowsLayerMountSpec {
  source: string;
  readOnly: boolean;
  parents: string[];
}

/** Where the source of a mount is recorded (default: the `containerd.io-source` stream). */
export interface MountSourceStore {
  write(target: string, source: string): Promise<void>;
  /** Undefined when there is no record. */
  read(target: string): Promise<string | undefined>;
  remove(target: string): Promise<void>;
}

export const SOURCE_STREAM = 'containerd.io-source';

/** The `<target>:containerd.io-source` record (an NTFS stream on Windows, a sibling file elsewhere). */
export const streamSourceStore: MountSourceStore = {
  write: (target, source) => writeFile(`${trimSeparators(target)}:${SOURCE_STREAM}`, source),
  async read(target) {
    try {
      return await readFile(`${trimSeparators(target)}:${SOURCE_STREAM}`, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  },
  remove: (target) => rm(`${trimSeparators(target)}:${SOURCE_STREAM}`, { force: true }),
};

const ERROR_INVALID_PARAMETER = 0x80070057 | 0;
const ERROR_NOT_FOUND = 0x80070490 | 0;
const ERROR_PATH_NOT_FOUND = 0x80070003 | 0;

function trimSeparators(p: string): string {
  return p.length > 1 ? p.replace(/[\\/]+$/, '') : p;
}

/** Parses containerd's record (INVALID_ARGUMENT): type `windows-layer`, `rw`/`ro`, `parentLayerPaths=` a JSON array of strings. */
export function parseWindowsLayerMount(record: WindowsLayerMountRecord): WindowsLayerMountSpec {
  if (record === null || typeof record !== 'object') throw invalidArgument('a mount must be an object {type, source, options}');
  if (record.type !== 'windows-layer') throw invalidArgument(`invalid windows mount type: '${String(record.type)}'`, { field: 'type' });
  checkPath(record.source, 'source');
  const options = record.options ?? [];
  if (!Array.isArray(options) || options.some((o) => typeof o !== 'string')) throw invalidArgument('options must be an array of strings', { field: 'options' });
  let readOnly = false;
  let parents: string[] = [];
  for (const o of options) {
    if (o === 'ro') readOnly = true;
    else if (o === 'rw') readOnly = false;
    else if (o.startsWith('parentLayerPaths=')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(o.slice('parentLayerPaths='.length));
      } catch {
        throw invalidArgument(`parentLayerPaths is not JSON: ${o}`, { field: 'options' });
      }
      if (!Array.isArray(parsed)) throw invalidArgument('parentLayerPaths must be a JSON array of paths', { field: 'options' });
      parents = parsed.map((p, i) => checkPath(p, `parentLayerPaths[${i}]`));
    }
  }
  return { source: record.source, readOnly, parents };
}

function checkPath(p: unknown, field: string): string {
  if (typeof p !== 'string' || p === '' || p.includes('\0') || !(isAbsolute(p) || win32.isAbsolute(p))) {
    throw invalidArgument(`${field} must be an absolute path: ${String(p)}`, { field });
  }
  return p;
}

/** True for the errors `BfRemoveMapping` reports when `target` is not a mapping. */
export function isNotAMount(err: unknown): boolean {
  return err instanceof HcsError && (err.hresult === ERROR_INVALID_PARAMETER || err.hresult === ERROR_NOT_FOUND);
}

/** Options of `WindowsLayerMounts`. */
export interface WindowsLayerMountsOptions {
  /** Default: `loadHostLayerApi()` (vmcompute.dll + bindfltapi.dll, or the simulator). */
  api?: HostLayerApi;
  /** Default: `streamSourceStore`. */
  sources?: MountSourceStore;
  logger?: Logger;
  /** Bounds each native call's wait. */
  callOptions?: HostLayerCallOptions;
}

/** hcsshim serialises every PrepareLayer in the process ("a Windows bug … reduces the chance of a timeout"). */
let prepareTurn: Promise<unknown> = Promise.resolve();

/** Host layer mounts (`mount`, `unmount`, `unmountAll`). */
export class WindowsLayerMounts {
  readonly #api: HostLayerApi;
  readonly #sources: MountSourceStore;
  readonly #logger: Logger | undefined;
  readonly #call: HostLayerCallOptions;

  constructor(options: WindowsLayerMountsOptions = {}) {
    this.#api = options.api ?? loadHostLayerApi();
    this.#sources = options.sources ?? streamSourceStore;
    this.#logger = options.logger;
    this.#call = options.callOptions ?? {};
  }

  /**
   * Mounts the layer of `record` on `target` (its parent folder is created). Rejects with
   * INVALID_ARGUMENT for a bad record or target, HCS_ERROR (`op` = the failing call) otherwise,
   * after undoing every step done (a failed undo is logged and attached as `details.rollbackError`).
   */
  async mount(record: WindowsLayerMountRecord, target: string): Promise<void> {
    const { source, readOnly, parents } = parseWindowsLayerMount(record);
    checkPath(target, 'target');
    const undo: { step: string; run: () => Promise<void> }[] = [];
    try {
      await mkdir(dirname(trimSeparators(target)), { recursive: true });
      await this.#api.activateLayer(source, this.#call);
      undo.push({ step: 'DeactivateLayer', run: () => this.#api.deactivateLayer(source, this.#call) });
      const prepare = prepareTurn.then(() => this.#api.prepareLayer(source, parents, this.#call));
      prepareTurn = prepare.catch(() => undefined);
      await prepare;
      undo.push({ step: 'UnprepareLayer', run: () => this.#api.unprepareLayer(source, this.#call) });
      const mountPath = await this.#api.getLayerMountPath(source, this.#call);
      // A base layer binds its Files folder (containerd: "no Files folder in layer" when absent).
      let volume = parents.length === 0 ? `${trimSeparators(mountPath)}\\Files` : mountPath;
      if (volume.includes('Volume{') && !volume.endsWith('\\')) volume += '\\';
      await this.#api.setupFilter(target, volume, BINDFLT_NO_MULTIPLE_TARGETS | (readOnly ? BINDFLT_READ_ONLY : 0), this.#call).catch((err: unknown) => {
        if (parents.length === 0 && err instanceof HcsError && err.hresult === ERROR_PATH_NOT_FOUND) {
          throw new UvmError('NOT_FOUND', `no Files folder in layer ${source}`, { cause: err, details: { path: source } });
        }
        throw err;
      });
      undo.push({ step: 'BfRemoveMapping', run: () => this.#api.removeMapping(target, this.#call) });
      await this.#sources.write(target, source);
      undo.push({ step: 'remove source record', run: () => this.#sources.remove(target) });
    } catch (err) {
      for (const u of undo.reverse()) {
        try {
          await u.run();
        } catch (rollbackError) {
          this.#logger?.warn('undoing a failed windows-layer mount failed', { step: u.step, target, source, error: String(rollbackError) });
          if (UvmError.is(err)) Object.assign(err.details, { rollbackError });
        }
      }
      throw err;
    }
  }

  /**
   * Unmounts `target`: removes the mapping, then unprepares and deactivates the recorded layer,
   * then deletes the record. Not a mount (no mapping) is success; if a record is still there (an
   * unmount interrupted after the mapping went), the layer teardown is finished with "not found"
   * counting as done. Retry after a rejection.
   */
  async unmount(target: string): Promise<void> {
    checkPath(target, 'target');
    const source = await this.#sources.read(target);
    let mapped = true;
    try {
      await this.#api.removeMapping(target, this.#call);
    } catch (err) {
      if (!isNotAMount(err)) throw err;
      mapped = false;
    }
    if (source === undefined) return;
    const tolerate = (err: unknown): void => {
      if (!isNotExist(err) || mapped) throw err;
    };
    await this.#api.unprepareLayer(source, this.#call).catch(tolerate);
    await this.#api.deactivateLayer(source, this.#call).catch(tolerate);
    await this.#sources.remove(target);
  }

  /** containerd's `UnmountAll`: an empty or missing path is nothing to do; otherwise `unmount`. */
  async unmountAll(target: string): Promise<void> {
    if (target === '') return;
    try {
      await stat(target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await this.unmount(target);
  }
}
