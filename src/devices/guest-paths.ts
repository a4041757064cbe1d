import type { GuestOs } from './device-types.js';
import { joinPath } from './host-paths.js';
import { guestFlavour } from './validation.js';

/** The VSMB guest prefix, `\\?\VMSMB\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}`. */
export const VSMB_GUEST_PREFIX = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';

/**
 * Every guest path format the device managers produce (hcsshim `internal/guestpath`), in one place.
 * No other module builds guest paths by hand.
 */
export const guestPaths = {
  /** Generated SCSI mount path: `/run/mounts/scsi/m<i>` (LCOW) or `c:\mounts\scsi\m<i>` (WCOW). */
  scsiMount(os: GuestOs, index: number): string {
    return os === 'linux' ? `/run/mounts/scsi/m${index}` : `c:\\mounts\\scsi\\m${index}`;
  },

  /** A VSMB share: `\\?\VMSMB\VSMB-{…}\<name>`. */
  vsmbShare(name: string): string {
    return `${VSMB_GUEST_PREFIX}\\${name}`;
  },

  /** A single file inside a VSMB share: `<share path>\<file>`. */
  vsmbFile(name: string, fileName: string): string {
    return `${guestPaths.vsmbShare(name)}\\${fileName}`;
  },

  /** A host named pipe as seen in the guest: `\\?\VMSMB\VSMB-{…}\IPC$\<pipe name>`. */
  vsmbPipe(pipeName: string): string {
    return `${VSMB_GUEST_PREFIX}\\IPC$\\${pipeName}`;
  },

  /** A VPMEM layer, one per device: `/run/layers/p<n>`. */
  vpmemDevice(device: number): string {
    return `/run/layers/p${device}`;
  },

  /** A multi-mapped VPMEM layer: `/run/layers/p<n>-<offset>-<size>`. */
  vpmemMapping(device: number, offset: number, size: number): string {
    return `/run/layers/p${device}-${offset}-${size}`;
  },

  /** A Plan9 share mount: `/run/mounts/plan9/<name>`. */
  plan9Mount(name: string): string {
    return `/run/mounts/plan9/${name}`;
  },

  /** Joins guest path components with the guest's separator. */
  join(os: GuestOs, first: string, ...rest: string[]): string {
    return joinPath(guestFlavour(os), first, rest);
  },
} as const;
