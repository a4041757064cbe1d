import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { GuestOs } from '../devices/device-types.js';
import type { UtilityVmOptions } from '../uvm/uvm-options.js';
import { JsonFields as F, memberName } from './json-fields.js';
import { resolveHostPath } from './host-path.js';
import { ScenarioError } from './scenario-error.js';

/** The `vpmem` section of a scenario's `uvm`. */
export interface ScenarioVpmemOptions {
  count?: number;
  maxSizeBytes?: number;
  multiMapping?: boolean;
}

/** A SCSI slot kept out of allocation. */
export interface ScenarioScsiSlot {
  controller: number;
  lun: number;
}

/**
 * The `uvm` section: the `UtilityVmOptions` a scenario may set (all but `guestConnection`). Types
 * are checked here (exit 2); ranges by UtilityVm (INVALID_ARGUMENT, exit 1).
 */
export interface ScenarioUvmOptions {
  id: string;
  os: GuestOs;
  scsiControllers?: number;
  reservedScsiSlots?: ScenarioScsiSlot[];
  vpmem?: ScenarioVpmemOptions;
  fullyPhysicallyBacked?: boolean;
  noWritableFileShares?: boolean;
  vsmbNoDirectMap?: boolean;
  memoryMb?: number;
  processorCount?: number;
  /** Boot files; relative paths resolve against the scenario's folder. */
  boot?: UtilityVmOptions['boot'];
  owner?: string;
  console?: { pipe: string };
  memory?: UtilityVmOptions['memory'];
  processor?: UtilityVmOptions['processor'];
  hvSocketServices?: UtilityVmOptions['hvSocketServices'];
  terminateOnLastHandleClosed?: boolean;
  createDocumentPatch?: Record<string, unknown>;
}

/** One container of a scenario; `bundle` is absolute (resolved against the scenario's folder). */
export interface ScenarioContainer {
  id: string;
  bundle: string;
  /** `process`: a process-isolated (Argon) container, its layers mounted on the host at `<bundle>/rootfs`. Default: in the UVM. */
  isolation?: 'process';
}

/**
 * A host file or folder the scenario needs, created by the CLI when missing (never overwritten).
 * `path` is relative to the scenario's folder and may not leave it.
 */
export type ScenarioFixture =
  | { type: 'sparse-file'; path: string; sizeBytes: number }
  | { type: 'file'; path: string; content: string }
  | { type: 'directory'; path: string };

/** A validated scenario file. */
export interface Scenario {
  /** Absolute path of the scenario file. */
  file: string;
  /** Its folder, against which relative paths resolve. */
  dir: string;
  description?: string;
  uvm: ScenarioUvmOptions;
  containers: ScenarioContainer[];
  /** Release every container and check that nothing is left. Default true. */
  teardown: boolean;
  fixtures: ScenarioFixture[];
}

const TOP_FIELDS = ['description', 'uvm', 'containers', 'teardown', 'fixtures'] as const;
const UVM_FIELDS = [
  'id',
  'os',
  'scsiControllers',
  'reservedScsiSlots',
  'vpmem',
  'fullyPhysicallyBacked',
  'noWritableFileShares',
  'vsmbNoDirectMap',
  'memoryMb',
  'processorCount',
  'boot',
  'owner',
  'console',
  'memory',
  'processor',
  'hvSocketServices',
  'terminateOnLastHandleClosed',
  'createDocumentPatch',
] as const;
const LCOW_BOOT_PATHS = ['bootFilesPath'] as const;
const LCOW_BOOT_STRINGS = ['mode', 'kernelFile', 'rootfs', 'rootfsFile', 'kernelBootOptions', 'gcsLogLevel'] as const;
const LCOW_BOOT_FLAGS = ['vpciEnabled', 'disableTimeSync'] as const;
const WCOW_BOOT_PATHS = ['osLayerPath', 'scratchPath'] as const;
const WCOW_BOOT_FLAGS = ['logForwarding'] as const;
const VPMEM_FIELDS = ['count', 'maxSizeBytes', 'multiMapping'] as const;
const CONTAINER_FIELDS = ['id', 'bundle', 'isolation'] as const;
const ROOT = 'scenario';

/** Reads and validates a scenario file. Every problem is a `ScenarioError` naming the field. */
export async function readScenarioFile(file: string): Promise<Scenario> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new ScenarioError(ROOT, `cannot read ${abs} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ScenarioError(ROOT, `${abs} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseScenario(raw, abs);
}

/** Validates a parsed scenario document; `file` (absolute) anchors its relative paths. */
export function parseScenario(raw: unknown, file: string): Scenario {
  const dir = path.dirname(file);
  const top = F.object(raw, ROOT, TOP_FIELDS);
  const scenario: Scenario = {
    file,
    dir,
    uvm: parseUvm(F.required(top, 'uvm', ROOT), `${ROOT}.uvm`, dir),
    containers: parseContainers(F.required(top, 'containers', ROOT), `${ROOT}.containers`, dir),
    teardown: top.teardown === undefined ? true : F.boolean(top.teardown, `${ROOT}.teardown`),
    fixtures: top.fixtures === undefined ? [] : parseFixtures(top.fixtures, `${ROOT}.fixtures`, dir),
  };
  if (top.description !== undefined) scenario.description = F.string(top.description, `${ROOT}.description`, { allowEmpty: true });
  return scenario;
}

function parseUvm(value: unknown, field: string, dir: string): ScenarioUvmOptions {
  const o = F.object(value, field, UVM_FIELDS);
  const uvm: ScenarioUvmOptions = {
    id: F.string(F.required(o, 'id', field), `${field}.id`),
    os: F.oneOf(F.required(o, 'os', field), `${field}.os`, ['linux', 'windows'] as const),
  };
  for (const key of ['scsiControllers', 'memoryMb', 'processorCount'] as const) {
    if (o[key] !== undefined) uvm[key] = F.count(o[key], memberName(field, key));
  }
  if (o.reservedScsiSlots !== undefined) {
    uvm.reservedScsiSlots = F.array(o.reservedScsiSlots, `${field}.reservedScsiSlots`).map((slot, i) => {
      const f = `${field}.reservedScsiSlots[${i}]`;
      const s = F.object(slot, f, ['controller', 'lun']);
      return {
        controller: F.count(F.required(s, 'controller', f), `${f}.controller`),
        lun: F.count(F.required(s, 'lun', f), `${f}.lun`),
      };
    });
  }
  if (o.vpmem !== undefined) {
    const f = `${field}.vpmem`;
    const v = F.object(o.vpmem, f, VPMEM_FIELDS);
    const vpmem: ScenarioVpmemOptions = {};
    if (v.count !== undefined) vpmem.count = F.count(v.count, `${f}.count`);
    if (v.maxSizeBytes !== undefined) vpmem.maxSizeBytes = F.count(v.maxSizeBytes, `${f}.maxSizeBytes`);
    if (v.multiMapping !== undefined) vpmem.multiMapping = F.boolean(v.multiMapping, `${f}.multiMapping`);
    uvm.vpmem = vpmem;
  }
  for (const key of ['fullyPhysicallyBacked', 'noWritableFileShares', 'vsmbNoDirectMap', 'terminateOnLastHandleClosed'] as const) {
    if (o[key] !== undefined) uvm[key] = F.boolean(o[key], memberName(field, key));
  }
  parseUvmBootAndTopology(o, field, dir, uvm);
  return uvm;
}

/** The boot, console, owner, memory/processor and create-document fields of the `uvm` section. */
function parseUvmBootAndTopology(o: Record<string, unknown>, field: string, dir: string, uvm: ScenarioUvmOptions): void {
  if (o.boot !== undefined) {
    const f = `${field}.boot`;
    const linux = uvm.os === 'linux';
    const paths: readonly string[] = linux ? LCOW_BOOT_PATHS : WCOW_BOOT_PATHS;
    const strings: readonly string[] = linux ? LCOW_BOOT_STRINGS : [];
    const flags: readonly string[] = linux ? LCOW_BOOT_FLAGS : WCOW_BOOT_FLAGS;
    const b = F.object(o.boot, f, [...paths, ...strings, ...flags]);
    const boot: Record<string, unknown> = {};
    for (const key of paths) if (b[key] !== undefined) boot[key] = resolveHostPath(dir, F.string(b[key], `${f}.${key}`));
    for (const key of strings) if (b[key] !== undefined) boot[key] = F.string(b[key], `${f}.${key}`);
    for (const key of flags) if (b[key] !== undefined) boot[key] = F.boolean(b[key], `${f}.${key}`);
    uvm.boot = boot as unknown as UtilityVmOptions['boot'];
  }
  if (o.owner !== undefined) uvm.owner = F.string(o.owner, `${field}.owner`);
  if (o.console !== undefined) {
    const c = F.object(o.console, `${field}.console`, ['pipe']);
    uvm.console = { pipe: F.string(F.required(c, 'pipe', `${field}.console`), `${field}.console.pipe`) };
  }
  if (o.memory !== undefined) {
    const m = F.object(o.memory, `${field}.memory`, ['allowOvercommit', 'enableDeferredCommit']);
    uvm.memory = {};
    for (const key of ['allowOvercommit', 'enableDeferredCommit'] as const) if (m[key] !== undefined) uvm.memory[key] = F.boolean(m[key], `${field}.memory.${key}`);
  }
  if (o.processor !== undefined) {
    const p = F.object(o.processor, `${field}.processor`, ['limit', 'weight']);
    uvm.processor = {};
    for (const key of ['limit', 'weight'] as const) if (p[key] !== undefined) uvm.processor[key] = F.count(p[key], `${field}.processor.${key}`);
  }
  // Checked field by field by UtilityVm (INVALID_ARGUMENT).
  if (o.hvSocketServices !== undefined) uvm.hvSocketServices = F.anyObject(o.hvSocketServices, `${field}.hvSocketServices`) as UtilityVmOptions['hvSocketServices'];
  if (o.createDocumentPatch !== undefined) uvm.createDocumentPatch = F.anyObject(o.createDocumentPatch, `${field}.createDocumentPatch`);
}

function parseContainers(value: unknown, field: string, dir: string): ScenarioContainer[] {
  const list = F.array(value, field);
  if (list.length === 0) throw new ScenarioError(field, 'expected at least one container');
  const seen = new Map<string, number>();
  return list.map((item, i) => {
    const f = `${field}[${i}]`;
    const c = F.object(item, f, CONTAINER_FIELDS);
    const id = F.string(F.required(c, 'id', f), `${f}.id`);
    const first = seen.get(id);
    if (first !== undefined) throw new ScenarioError(`${f}.id`, `duplicate container id ${JSON.stringify(id)} (also ${field}[${first}].id)`);
    seen.set(id, i);
    const bundle = F.string(F.required(c, 'bundle', f), `${f}.bundle`);
    const isolation = c.isolation === undefined ? 'hyperv' : F.oneOf(c.isolation, `${f}.isolation`, ['hyperv', 'process'] as const);
    return { id, bundle: resolveHostPath(dir, bundle), ...(isolation === 'process' ? { isolation } : {}) };
  });
}

function parseFixtures(value: unknown, field: string, dir: string): ScenarioFixture[] {
  return F.array(value, field).map((item, i): ScenarioFixture => {
    const f = `${field}[${i}]`;
    const type = F.oneOf(F.required(F.anyObject(item, f), 'type', f), `${f}.type`, ['sparse-file', 'file', 'directory'] as const);
    const fields = { 'sparse-file': ['type', 'path', 'sizeBytes'], file: ['type', 'path', 'content'], directory: ['type', 'path'] }[type];
    const o = F.object(item, f, fields);
    const rel = F.string(F.required(o, 'path', f), `${f}.path`);
    const resolved = path.resolve(dir, rel);
    const inside = path.relative(dir, resolved);
    if (path.isAbsolute(rel) || inside === '' || inside === '..' || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside)) {
      throw new ScenarioError(`${f}.path`, "expected a relative path inside the scenario's folder");
    }
    switch (type) {
      case 'sparse-file':
        return { type, path: resolved, sizeBytes: F.count(F.required(o, 'sizeBytes', f), `${f}.sizeBytes`) };
      case 'file':
        return { type, path: resolved, content: F.string(F.required(o, 'content', f), `${f}.content`, { allowEmpty: true }) };
      case 'directory':
        return { type, path: resolved };
    }
  });
}
