import type { GuestOs, ResourceInfo } from '../devices/device-types.js';
import type { ContainerEntry } from '../oci/mount-applier.js';

/** The managers whose resources the report lists, in print order. */
export const MANAGERS = ['vpmem', 'scsi', 'plan9', 'vsmb', 'pipes', 'vpci'] as const;
export type ManagerName = (typeof MANAGERS)[number];

/** Which manager a `ResourceInfo.kind` belongs to. */
export function managerOf(kind: ResourceInfo['kind']): ManagerName {
  switch (kind) {
    case 'scsi-attachment':
    case 'scsi-mount':
      return 'scsi';
    case 'vpmem-device':
    case 'vpmem-mapping':
      return 'vpmem';
    case 'vsmb-share':
    case 'vsmb-file':
      return 'vsmb';
    case 'plan9-share':
      return 'plan9';
    case 'mapped-pipe':
      return 'pipes';
    case 'vpci-device':
      return 'vpci';
  }
}

/** `describe()` output grouped per manager (every manager present, possibly empty). */
export type ResourceTables = Record<ManagerName, ResourceInfo[]>;

export function groupResources(resources: readonly ResourceInfo[]): ResourceTables {
  const tables = Object.fromEntries(MANAGERS.map((m) => [m, [] as ResourceInfo[]])) as ResourceTables;
  for (const r of resources) tables[managerOf(r.kind)].push(r);
  return tables;
}

/** One mount of a container: where it came from on the host and what the container now uses. */
export interface MountSummary {
  /** Index in the spec's `mounts`. */
  index: number;
  destination: string;
  type?: string;
  /** The type in the rewritten spec, when allocation changed it (`virtual-disk` → `none`). */
  guestType?: string;
  /** The source in the bundle's config.json (relative paths resolved). */
  source?: string;
  /** The source in the rewritten spec: a guest path, or the same value when the mount is passed through. */
  guestSource?: string;
}

export interface ContainerSummary {
  id: string;
  /** Absolute bundle folder. */
  bundle: string;
  /** The rootfs in the guest (the rewritten spec's `root.path`). */
  rootfs: string | undefined;
  mounts: MountSummary[];
  /** WCOW: the MappedDirectory / MappedPipe entries of the shim's container document (empty on LCOW). */
  containerEntries: ContainerEntry[];
}

export interface TeardownSummary {
  /** False when the scenario says `"teardown": false` or `--keep` was given. */
  performed: boolean;
  /** Containers released (reverse allocation order). */
  released: string[];
  /** Idle direct-mapped VSMB shares removed after the last container (WCOW). */
  /** Direct-mapped VSMB shares kept after the release (expected: they go with the VM). */
  sharesKept: number;
  /** What the managers still hold afterwards (empty when clean). */
  remaining: ResourceInfo[];
  /** The simulator's `SimulatorState.HotAdded` afterwards; null when not checked (no `--check-simulator`, or no teardown). */
  hotAdded: number | null;
}

/** What `uvmctl run` prints (the `--json` document; the text form renders the same). */
export interface RunReport {
  command: 'run';
  /** Absolute scenario file. */
  scenario: string;
  uvm: { id: string; os: GuestOs; backend: 'simulator' | 'hcs' };
  containers: ContainerSummary[];
  /** `uvm.describe()` once every container is allocated, per manager. */
  resources: ResourceTables;
  teardown: TeardownSummary;
  /** True when the run succeeded and, after a teardown, nothing was left. */
  ok: boolean;
}
