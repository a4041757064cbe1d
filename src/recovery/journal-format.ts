/**
 * The on-disk format of a recovery journal (version 1) and its validation. The journal records
 * what the library holds in one UVM, at the granularity needed to rebuild every refcount and every
 * container's resources after a shim restart: one record per lease (which manager, the acquire
 * request, the resulting value, the owner), one per container (its rootfs and mounts), and the
 * name counters of the managers whose names are never reused.
 *
 * Built as objects and serialized with JSON.stringify; `parseJournal` rejects anything that does
 * not have exactly this shape with RECOVERY_FAILED.
 */
import { UvmError } from '../core/errors.js';

/** Version of the format written by this library. Other versions are rejected (RECOVERY_FAILED). */
export const JOURNAL_VERSION = 1;

/** Which manager a lease came from; `combined-layers` is a guest-only CombinedLayers Add. */
export type LeaseRecordKind = 'scsi' | 'vsmb' | 'vpmem' | 'plan9' | 'pipe' | 'combined-layers';

export const LEASE_RECORD_KINDS: readonly LeaseRecordKind[] = ['scsi', 'vsmb', 'vpmem', 'plan9', 'pipe', 'combined-layers'];

/** JSON values only (what survives JSON.stringify / JSON.parse unchanged). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/**
 * One acquired lease. Journaled after the acquire succeeded; removed before its release starts.
 *
 * - `scsi`: request `ScsiDiskRequest`, value `ScsiDisk` (controller, lun, guestPath …).
 * - `vsmb`: `VsmbShareRequest` → `VsmbShare` (share name, paths).
 * - `vpmem`: `VpmemLayerRequest` → `VpmemLayer` (device, offset/size, guestPath).
 * - `plan9`: `Plan9ShareRequest` → `Plan9Share` (share name, mount path).
 * - `pipe`: `{hostPath}` → `MappedPipe`.
 * - `combined-layers`: request = the CombinedLayers Add settings, value = the Remove settings.
 */
export interface LeaseRecord {
  /** Unique in the journal, increasing in journaling order (= acquisition order per owner). */
  id: number;
  kind: LeaseRecordKind;
  /** The container that holds the lease; absent = the UVM itself (the shim's own leases). */
  owner?: string;
  request: JsonObject;
  value: JsonObject;
}

/** One mount of a container, as allocated (for `mounts()`, `removeMount` and the WCOW entries). */
export interface ContainerMountRecord {
  /** The index the mount was planned with. */
  index: number;
  /** The planned mount (`PlannedMount`), as JSON. */
  planned: JsonObject;
  /** The rewritten mount (`OciMount`). */
  mount: JsonObject;
  /** WCOW container document entry (`ContainerEntry`), if any. */
  containerEntry?: JsonObject;
  /** The lease record behind it (device mounts only). */
  record?: number;
}

/** What a container holds besides its lease records. */
export interface ContainerRecord {
  id: string;
  rootfsPath: string;
  /** `ComposedLayersInfo` when the rootfs was composed from layers. */
  layers?: JsonObject;
  /**
   * Rootfs leases in acquisition order: the record id and what it is for (`HeldResource` fields
   * without the lease).
   */
  held: { record: number; fields: JsonObject }[];
  mounts: ContainerMountRecord[];
  nextMountIndex: number;
}

/** The whole journal file. */
export interface JournalDocument {
  version: typeof JOURNAL_VERSION;
  uvmId: string;
  /** The UtilityVmOptions the UVM was created with (JSON part: no guest connection). */
  uvmOptions: JsonObject;
  nextRecordId: number;
  /** Next share name counter values (VSMB `s<hex>` from 1, Plan9 decimal from 0), never reused. */
  nameCounters: { vsmb: number; plan9: number };
  records: LeaseRecord[];
  containers: ContainerRecord[];
}

/** An empty journal for a new UVM. */
export function newJournalDocument(uvmId: string, uvmOptions: JsonObject): JournalDocument {
  return { version: JOURNAL_VERSION, uvmId, uvmOptions, nextRecordId: 1, nameCounters: { vsmb: 1, plan9: 0 }, records: [], containers: [] };
}

/** Converts a value to plain JSON (drops undefined, functions, class identity). */
export function toJson<T>(value: T): JsonObject {
  return JSON.parse(JSON.stringify(value ?? {})) as JsonObject;
}

// ---------------------------------------------------------------- validation

class Bad extends Error {}

function fail(where: string, what: string): never {
  throw new Bad(`${where}: ${what}`);
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(where, 'expected an object');
  return v as Record<string, unknown>;
}

function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) fail(where, 'expected an array');
  return v;
}

function int(v: unknown, where: string, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail(where, `expected an integer >= ${min}`);
  return v;
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0) fail(where, 'expected a non-empty string');
  return v;
}

function onlyKeys(o: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(where, `unknown field "${k}"`);
}

/** Value fields every record of a kind must carry (what reconcile and adoption rely on). */
function checkValue(kind: LeaseRecordKind, request: Record<string, unknown>, value: Record<string, unknown>, where: string): void {
  switch (kind) {
    case 'scsi':
      str(request.hostPath, `${where}.request.hostPath`);
      int(value.controller, `${where}.value.controller`);
      int(value.lun, `${where}.value.lun`);
      if (value.guestPath !== undefined) str(value.guestPath, `${where}.value.guestPath`);
      break;
    case 'vpmem':
      str(request.hostPath, `${where}.request.hostPath`);
      int(value.device, `${where}.value.device`);
      if (value.offset !== undefined) int(value.offset, `${where}.value.offset`);
      if (value.size !== undefined) int(value.size, `${where}.value.size`, 1);
      str(value.guestPath, `${where}.value.guestPath`);
      break;
    case 'vsmb':
    case 'plan9':
      str(request.hostPath, `${where}.request.hostPath`);
      str(value.name, `${where}.value.name`);
      str(value.guestPath, `${where}.value.guestPath`);
      break;
    case 'pipe':
      str(request.hostPath, `${where}.request.hostPath`);
      str(value.hostPath, `${where}.value.hostPath`);
      break;
    case 'combined-layers':
      str(request.ContainerRootPath, `${where}.request.ContainerRootPath`);
      str(value.ContainerRootPath, `${where}.value.ContainerRootPath`);
      break;
  }
}

function parseRecord(v: unknown, where: string): LeaseRecord {
  const o = obj(v, where);
  onlyKeys(o, ['id', 'kind', 'owner', 'request', 'value'], where);
  const kind = o.kind as LeaseRecordKind;
  if (!LEASE_RECORD_KINDS.includes(kind)) fail(`${where}.kind`, `unknown kind ${JSON.stringify(o.kind)}`);
  const request = obj(o.request, `${where}.request`);
  const value = obj(o.value, `${where}.value`);
  checkValue(kind, request, value, where);
  const record: LeaseRecord = { id: int(o.id, `${where}.id`, 1), kind, request: request as JsonObject, value: value as JsonObject };
  if (o.owner !== undefined) record.owner = str(o.owner, `${where}.owner`);
  return record;
}

function parseContainer(v: unknown, where: string): ContainerRecord {
  const o = obj(v, where);
  onlyKeys(o, ['id', 'rootfsPath', 'layers', 'held', 'mounts', 'nextMountIndex'], where);
  const c: ContainerRecord = {
    id: str(o.id, `${where}.id`),
    rootfsPath: str(o.rootfsPath, `${where}.rootfsPath`),
    held: arr(o.held, `${where}.held`).map((h, i) => {
      const ho = obj(h, `${where}.held[${i}]`);
      onlyKeys(ho, ['record', 'fields'], `${where}.held[${i}]`);
      return { record: int(ho.record, `${where}.held[${i}].record`, 1), fields: obj(ho.fields, `${where}.held[${i}].fields`) as JsonObject };
    }),
    mounts: arr(o.mounts, `${where}.mounts`).map((m, i) => {
      const w = `${where}.mounts[${i}]`;
      const mo = obj(m, w);
      onlyKeys(mo, ['index', 'planned', 'mount', 'containerEntry', 'record'], w);
      const mount: ContainerMountRecord = {
        index: int(mo.index, `${w}.index`),
        planned: obj(mo.planned, `${w}.planned`) as JsonObject,
        mount: obj(mo.mount, `${w}.mount`) as JsonObject,
      };
      str(mount.mount.destination, `${w}.mount.destination`);
      if (mo.containerEntry !== undefined) mount.containerEntry = obj(mo.containerEntry, `${w}.containerEntry`) as JsonObject;
      if (mo.record !== undefined) mount.record = int(mo.record, `${w}.record`, 1);
      return mount;
    }),
    nextMountIndex: int(o.nextMountIndex, `${where}.nextMountIndex`),
  };
  if (o.layers !== undefined) c.layers = obj(o.layers, `${where}.layers`) as JsonObject;
  return c;
}

/**
 * Parses and validates a journal file's text. Rejects (RECOVERY_FAILED, `details.reason`
 * `corrupt` or `version`) anything that is not a well-formed version-1 journal: a torn or
 * hand-edited file is never half-trusted.
 */
export function parseJournal(text: string, source = 'journal'): JournalDocument {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UvmError('RECOVERY_FAILED', `${source} is not valid JSON`, { cause: err, details: { reason: 'corrupt', source } });
  }
  const version = (raw as { version?: unknown } | null)?.version;
  if (raw !== null && typeof raw === 'object' && version !== JOURNAL_VERSION) {
    throw new UvmError('RECOVERY_FAILED', `${source} has version ${JSON.stringify(version)}; this library reads version ${JOURNAL_VERSION}`, {
      details: { reason: 'version', version, source },
    });
  }
  try {
    const o = obj(raw, 'journal');
    onlyKeys(o, ['version', 'uvmId', 'uvmOptions', 'nextRecordId', 'nameCounters', 'records', 'containers'], 'journal');
    const counters = obj(o.nameCounters, 'journal.nameCounters');
    onlyKeys(counters, ['vsmb', 'plan9'], 'journal.nameCounters');
    const doc: JournalDocument = {
      version: JOURNAL_VERSION,
      uvmId: str(o.uvmId, 'journal.uvmId'),
      uvmOptions: obj(o.uvmOptions, 'journal.uvmOptions') as JsonObject,
      nextRecordId: int(o.nextRecordId, 'journal.nextRecordId', 1),
      nameCounters: { vsmb: int(counters.vsmb, 'journal.nameCounters.vsmb'), plan9: int(counters.plan9, 'journal.nameCounters.plan9') },
      records: arr(o.records, 'journal.records').map((r, i) => parseRecord(r, `journal.records[${i}]`)),
      containers: arr(o.containers, 'journal.containers').map((c, i) => parseContainer(c, `journal.containers[${i}]`)),
    };
    const ids = new Set<number>();
    for (const r of doc.records) {
      if (ids.has(r.id)) fail('journal.records', `duplicate record id ${r.id}`);
      if (r.id >= doc.nextRecordId) fail('journal.records', `record id ${r.id} is not below nextRecordId ${doc.nextRecordId}`);
      ids.add(r.id);
    }
    const containerIds = new Set<string>();
    for (const c of doc.containers) {
      if (containerIds.has(c.id)) fail('journal.containers', `duplicate container ${c.id}`);
      containerIds.add(c.id);
    }
    return doc;
  } catch (err) {
    if (!(err instanceof Bad)) throw err;
    throw new UvmError('RECOVERY_FAILED', `${source} is corrupt: ${err.message}`, { details: { reason: 'corrupt', source } });
  }
}
