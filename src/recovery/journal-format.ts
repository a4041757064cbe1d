/**
 * The on-disk format of a recovery journal (docs/recovery.md "Format") and its validation.
 *
 * Version 3 (written by this library) is a log of JSON lines: the first line is a snapshot of the
 * whole document (`{"version":3,…}`), every further line one change (`{"op":…}`) appended and
 * fsync'd in order; compaction rewrites the file atomically as one snapshot line. A last line
 * without its newline is a torn append (never acknowledged) and is ignored; anything else that does
 * not validate is corrupt (RECOVERY_FAILED). Version 2 is the same log, read the same way: its
 * first writers changed a part's state with a whole `part` line, and the `state` op came later
 * without a version bump (a reader of that time takes a `state` line for corruption, not for a
 * newer version: hence version 3). Version 1 (a single JSON document, no write-ahead parts) is still read: its records are taken
 * as attached. Any other version → JOURNAL_VERSION.
 *
 * Every record kind has its schema: lease records per device (./records/*.ts), container records
 * (./records/container.ts), parts (./parts.ts).
 */
import * as v from 'valibot';
import { UvmError } from '../core/errors.js';
import type { GuestOs } from '../devices/device-types.js';
import { count, text, type LeaseCodec } from './records/codec.js';
import { combinedLayersCodec } from './records/combined-layers.js';
import { containerRecordSchema, type ContainerRecord } from './records/container.js';
import { pipeCodec } from './records/pipe.js';
import { plan9Codec } from './records/plan9.js';
import { scsiCodec } from './records/scsi.js';
import { vpmemCodec } from './records/vpmem.js';
import { vpciCodec } from './records/vpci.js';
import { vsmbCodec } from './records/vsmb.js';
import type { PartRecord, PartState } from './parts.js';

export type { ContainerRecord } from './records/container.js';

/** Version of the format written by this library. */
export const JOURNAL_VERSION = 3;
/** Versions this library reads (docs/recovery.md "Version rule"). */
export const READABLE_JOURNAL_VERSIONS: readonly number[] = [1, 2, 3];

/** Which manager a lease came from; `combined-layers` is a guest-only CombinedLayers Add. */
export type LeaseRecordKind = 'scsi' | 'vsmb' | 'vpmem' | 'plan9' | 'pipe' | 'vpci' | 'combined-layers';

/** The codec of each lease record kind. */
export const LEASE_CODECS = {
  scsi: scsiCodec,
  vsmb: vsmbCodec,
  vpmem: vpmemCodec,
  plan9: plan9Codec,
  pipe: pipeCodec,
  vpci: vpciCodec,
  'combined-layers': combinedLayersCodec,
} as const satisfies Record<LeaseRecordKind, LeaseCodec<never, never> | LeaseCodec<any, any>>;

export const LEASE_RECORD_KINDS = Object.keys(LEASE_CODECS) as LeaseRecordKind[];

/** JSON values only (what survives JSON.stringify / JSON.parse unchanged). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object (journal records). */
export type JsonObject = { [key: string]: JsonValue };

/**
 * One acquired lease, journaled after the acquire succeeded and dropped before its release
 * starts. `request` and `value` are the codec's journaled form of the manager's request and
 * lease value (validated with the kind's schema when read).
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

/** The whole journal, as a snapshot. */
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
  /** What the library sent to HCS and did not remove (write-ahead parts, ./parts.ts). */
  parts: PartRecord[];
}

/** One appended change (a line after the snapshot). */
export type JournalOp =
  | { op: 'lease'; record: LeaseRecord }
  | { op: 'unlease'; id: number }
  | { op: 'container'; container: ContainerRecord }
  | { op: 'uncontainer'; id: string }
  | { op: 'part'; part: PartRecord }
  /** A part's state changes, its settings do not (a confirmed Add, an intended Remove). */
  | { op: 'state'; key: string; state: PartState }
  | { op: 'unpart'; key: string }
  | { op: 'counters'; vsmb: number; plan9: number };

/** An empty journal for a new UVM. */
export function newJournalDocument(uvmId: string, uvmOptions: JsonObject): JournalDocument {
  return { version: JOURNAL_VERSION, uvmId, uvmOptions, nextRecordId: 1, nameCounters: { vsmb: 1, plan9: 0 }, records: [], containers: [], parts: [] };
}

/** Converts a value to plain JSON (drops undefined, functions, class identity). */
export function toJson<T>(value: T): JsonObject {
  return JSON.parse(JSON.stringify(value ?? {})) as JsonObject;
}

/**
 * A journal document in memory, keyed for constant-time changes (records by id, containers by id,
 * parts by key; each map in the document's order). `documentOf` gives the snapshot form.
 */
export interface JournalState extends Omit<JournalDocument, 'records' | 'containers' | 'parts'> {
  records: Map<number, LeaseRecord>;
  containers: Map<string, ContainerRecord>;
  parts: Map<string, PartRecord>;
}

/** The keyed form of `doc` (shares its records). */
export function stateOf(doc: JournalDocument): JournalState {
  return {
    ...doc,
    nameCounters: { ...doc.nameCounters },
    records: new Map(doc.records.map((r) => [r.id, r])),
    containers: new Map(doc.containers.map((c) => [c.id, c])),
    parts: new Map(doc.parts.map((p) => [p.key, p])),
  };
}

/** The snapshot form of `state` (shares its records; records in id order). */
export function documentOf(state: JournalState): JournalDocument {
  return {
    version: state.version,
    uvmId: state.uvmId,
    uvmOptions: state.uvmOptions,
    nextRecordId: state.nextRecordId,
    nameCounters: { ...state.nameCounters },
    records: [...state.records.values()].sort((a, b) => a.id - b.id),
    containers: [...state.containers.values()],
    parts: [...state.parts.values()],
  };
}

/**
 * Applies one op to `state` (the same function replays the log and changes the live document);
 * false when the op names a part that is not there (`state`: nothing to change).
 */
export function applyOp(state: JournalState, op: JournalOp): boolean {
  switch (op.op) {
    case 'lease':
      state.records.set(op.record.id, op.record);
      state.nextRecordId = Math.max(state.nextRecordId, op.record.id + 1);
      break;
    case 'unlease':
      state.records.delete(op.id);
      break;
    case 'container':
      state.containers.set(op.container.id, op.container);
      break;
    case 'uncontainer':
      state.containers.delete(op.id);
      break;
    case 'part':
      state.parts.set(op.part.key, op.part);
      break;
    case 'state': {
      const part = state.parts.get(op.key);
      if (!part) return false;
      state.parts.set(op.key, { ...part, state: op.state });
      break;
    }
    case 'unpart':
      state.parts.delete(op.key);
      break;
    case 'counters':
      state.nameCounters = { vsmb: Math.max(state.nameCounters.vsmb, op.vsmb), plan9: Math.max(state.nameCounters.plan9, op.plan9) };
      break;
  }
  return true;
}

// ---------------------------------------------------------------- schemas

const json = v.custom<JsonObject>((x) => x !== null && typeof x === 'object' && !Array.isArray(x), 'expected an object');
const recordId = v.pipe(count, v.minValue(1));

const leaseRecordSchema = v.pipe(
  v.object({ id: recordId, kind: v.picklist(LEASE_RECORD_KINDS), owner: v.optional(text), request: json, value: json }),
  v.check((r) => v.safeParse(LEASE_CODECS[r.kind].schema, { request: r.request, value: r.value }).success, 'request/value do not match the record kind'),
  v.transform((r): LeaseRecord => ({ id: r.id, kind: r.kind, ...(r.owner === undefined ? {} : { owner: r.owner }), request: r.request, value: r.value })),
);

const partKind = v.picklist(['scsi-attachment', 'vpmem-device', 'vpmem-mapping', 'plan9-share', 'vsmb-share', 'mapped-pipe', 'vpci-device', 'vm-access', 'scsi-mount', 'vpmem-mount', 'plan9-mount', 'guest-directory', 'combined-layers']);
const partState = v.picklist(['adding', 'attached', 'removing']);
const partSchema = v.object({
  key: text,
  kind: partKind,
  half: v.picklist(['host', 'guest']),
  settings: json,
  state: partState,
});

const countersSchema = v.object({ vsmb: count, plan9: count });

const snapshotFields = {
  uvmId: text,
  uvmOptions: json,
  nextRecordId: recordId,
  nameCounters: countersSchema,
  records: v.array(leaseRecordSchema),
  containers: v.array(containerRecordSchema),
};

/** A version-2 or version-3 snapshot line, read in the current form. */
const snapshotSchema = v.pipe(
  v.strictObject({ version: v.picklist([2, 3]), ...snapshotFields, parts: v.array(partSchema) }),
  v.transform((d): JournalDocument => ({ ...d, version: JOURNAL_VERSION })),
);

const v1Schema = v.strictObject({ version: v.literal(1), ...snapshotFields });

const opSchema = v.variant('op', [
  v.object({ op: v.literal('lease'), record: leaseRecordSchema }),
  v.object({ op: v.literal('unlease'), id: recordId }),
  v.object({ op: v.literal('container'), container: containerRecordSchema }),
  v.object({ op: v.literal('uncontainer'), id: text }),
  v.object({ op: v.literal('part'), part: partSchema }),
  v.object({ op: v.literal('state'), key: text, state: partState }),
  v.object({ op: v.literal('unpart'), key: text }),
  v.object({ op: v.literal('counters'), vsmb: count, plan9: count }),
]);

// ---------------------------------------------------------------- parsing

class Bad extends Error {}

function check<S extends v.GenericSchema>(schema: S, value: unknown, where: string): v.InferOutput<S> {
  const r = v.safeParse(schema, value);
  if (r.success) return r.output;
  const issue = r.issues[0];
  const path = v.getDotPath(issue) ?? '';
  throw new Bad(`${where}${path ? `.${path}` : ''}: ${issue.message}`);
}

function consistent(doc: JournalDocument): void {
  const ids = new Set<number>();
  for (const r of doc.records) {
    if (ids.has(r.id)) throw new Bad(`journal.records: duplicate record id ${r.id}`);
    if (r.id >= doc.nextRecordId) throw new Bad(`journal.records: record id ${r.id} is not below nextRecordId ${doc.nextRecordId}`);
    ids.add(r.id);
  }
  const containerIds = new Set<string>();
  for (const c of doc.containers) {
    if (containerIds.has(c.id)) throw new Bad(`journal.containers: duplicate container ${c.id}`);
    containerIds.add(c.id);
  }
}

/**
 * Parses and validates a journal file's text (any readable version, returned in the current
 * form: a version-1 document with `parts` derived by `partsOfV1`). Rejects with JOURNAL_VERSION for a
 * version this library does not read, RECOVERY_FAILED (`details.reason: "corrupt"`) for anything
 * malformed: a torn or hand-edited file is never half-trusted.
 */
export function parseJournal(text: string, source = 'journal', partsOfV1: (records: LeaseRecord[], os: GuestOs) => PartRecord[] = () => []): JournalDocument {
  const corrupt = (message: string, cause?: unknown): UvmError =>
    new UvmError('RECOVERY_FAILED', `${source} is corrupt: ${message}`, { ...(cause ? { cause } : {}), details: { reason: 'corrupt', source } });
  const lines = text.split('\n');
  // A last line without its newline is an append that never completed.
  const complete = text.endsWith('\n') ? lines.slice(0, -1) : lines.length > 1 ? lines.slice(0, -1) : lines;
  let head: unknown;
  try {
    head = JSON.parse(complete[0] ?? '');
  } catch (err) {
    throw corrupt('its first line is not JSON', err);
  }
  const version = (head as { version?: unknown } | null)?.version;
  if (head === null || typeof head !== 'object' || Array.isArray(head)) throw corrupt('expected an object');
  if (typeof version !== 'number' || !READABLE_JOURNAL_VERSIONS.includes(version)) {
    throw new UvmError('JOURNAL_VERSION', `${source} has format version ${JSON.stringify(version)}; this library reads versions ${READABLE_JOURNAL_VERSIONS.join(', ')}`, {
      details: { reason: 'version', version, supported: READABLE_JOURNAL_VERSIONS, source },
    });
  }
  try {
    let doc: JournalDocument;
    if (version === 1) {
      if (complete.length > 1) throw new Bad('a version-1 journal is one line');
      const v1 = check(v1Schema, head, 'journal');
      doc = { ...v1, version: JOURNAL_VERSION, parts: [] };
      doc.parts = partsOfV1(v1.records, osOfJournal(doc));
    } else {
      const snapshot = check(snapshotSchema, head, 'journal');
      consistent(snapshot);
      const state = stateOf(snapshot);
      complete.slice(1).forEach((line, i) => {
        let raw: unknown;
        try {
          raw = JSON.parse(line);
        } catch {
          throw new Bad(`line ${i + 2} is not JSON`);
        }
        if (!applyOp(state, check(opSchema, raw, `line ${i + 2}`))) throw new Bad(`line ${i + 2}: no such part`);
      });
      doc = documentOf(state);
    }
    consistent(doc);
    return doc;
  } catch (err) {
    if (err instanceof Bad) throw corrupt(err.message);
    throw err;
  }
}

/** The JSON text of one snapshot line (what compaction writes). */
export function snapshotLine(doc: JournalDocument): string {
  return `${JSON.stringify(doc)}\n`;
}

/** Guest OS of a journal's UVM (from its options). */
export function osOfJournal(doc: JournalDocument): GuestOs {
  return doc.uvmOptions.os === 'windows' ? 'windows' : 'linux';
}
