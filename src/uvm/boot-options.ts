import * as v from 'valibot';
import { UvmError } from '../core/errors.js';
import { strictRecord } from '../core/schema.js';
import type { HostFs } from '../core/host-fs.js';
import { hostPaths } from '../devices/host-paths.js';

/**
 * How an LCOW Utility VM boots (hcsshim `MakeLCOWDoc`, docs/uvm-boot.md). The files live in one
 * folder, as hcsshim's `LinuxBootFiles`: the kernel (`kernel`, or `vmlinux` for kernel-direct
 * boot when present) and the root file system (`initrd.img`, or `rootfs.vhd`).
 * @example { bootFilesPath: 'C:\\Program Files\\Linux Containers' }
 */
export interface LcowBootOptions {
  /** The boot files folder (hcsshim: `<shim dir>\LinuxBootFiles`, else `%ProgramFiles%\Linux Containers`). */
  bootFilesPath: string;
  /**
   * `kernel-direct`: `Chipset.LinuxKernelDirect` (hcsshim's default on current Windows builds);
   * `uefi`: `Chipset.Uefi` booting the kernel from the boot folder over VmbFs.
   * @default 'kernel-direct'
   */
  mode?: 'kernel-direct' | 'uefi';
  /** Kernel file name in the boot folder. @default `vmlinux` when kernel-direct and present, else `kernel` */
  kernelFile?: string;
  /**
   * `initrd`: an initial RAM disk (`initrd.img`); `vhd`: a read-only root VHD (`rootfs.vhd`) on
   * SCSI controller 0, LUN 0 (that slot is then reserved). hcsshim puts a root VHD on VPMEM
   * device 0 when VPMEM is on; that combination is refused here (NOT_SUPPORTED).
   * @default 'initrd'
   */
  rootfs?: 'initrd' | 'vhd';
  /** Root file system file name in the boot folder. @default `initrd.img` / `rootfs.vhd` */
  rootfsFile?: string;
  /** Extra kernel command-line options, appended as hcsshim's `KernelBootOptions`. @default none */
  kernelBootOptions?: string;
  /** The guest has vPCI: no `pci=off` on the kernel command line. @default false */
  vpciEnabled?: boolean;
  /** GCS log level (`-loglevel`). @default 'info' */
  gcsLogLevel?: 'trace' | 'debug' | 'info' | 'warning' | 'error' | 'fatal' | 'panic';
  /** Pass `-disable-time-sync` to the GCS. @default false */
  disableTimeSync?: boolean;
}

/**
 * How a WCOW Utility VM boots (hcsshim `prepareConfigDoc`): UEFI from the OS layer's
 * `UtilityVM\Files`, shared to the VM as the read-only VSMB share `os`, with the UVM's own
 * scratch disk on SCSI controller 0, LUN 0 (reserved; VM access granted before create).
 * @example { osLayerPath: 'C:\\layers\\servercore', scratchPath: 'C:\\pods\\p1\\vm\\sandbox.vhdx' }
 */
export interface WcowBootOptions {
  /** The base (OS) layer folder; it must contain `UtilityVM\Files`. */
  osLayerPath: string;
  /** The UVM's scratch VHDX (hcsshim: `<scratch folder>\vm\sandbox.vhdx`); it must exist. */
  scratchPath: string;
  /** The log-forwarding HvSocket service (hcsshim's default). @default true */
  logForwarding?: boolean;
}

/** `UtilityVmOptions.boot` for either OS. */
export type UvmBootOptions = LcowBootOptions | WcowBootOptions;

/** LCOW boot, validated; file names are still relative to the folder (kernel maybe undecided). */
export interface ResolvedLcowBoot {
  os: 'linux';
  bootFilesPath: string;
  mode: 'kernel-direct' | 'uefi';
  /** undefined: `vmlinux` if present (kernel-direct), else `kernel` — decided by `checkBootFiles`. */
  kernelFile: string | undefined;
  rootfs: 'initrd' | 'vhd';
  rootfsFile: string;
  kernelBootOptions: string | undefined;
  vpciEnabled: boolean;
  gcsLogLevel: string;
  disableTimeSync: boolean;
}

/** WCOW boot, validated. */
export interface ResolvedWcowBoot {
  os: 'windows';
  osLayerPath: string;
  scratchPath: string;
  logForwarding: boolean;
}

export type ResolvedBoot = ResolvedLcowBoot | ResolvedWcowBoot;

// ---- Schemas (docs/decisions.md D3): the runtime check of the option types above. ----

/** A non-empty string without NUL characters. */
export const NonEmptyString = v.pipe(
  v.string('expected a non-empty string'),
  v.nonEmpty('expected a non-empty string'),
  v.check((s) => !s.includes('\0'), 'must not contain NUL characters'),
);

/** An optional boolean (never read from a string or a number). */
export const OptionalFlag = v.optional(v.boolean('expected a boolean'));

/** An absolute host path (Windows or POSIX flavour) without NUL characters. */
export const HostPathString = v.pipe(NonEmptyString, v.check((s) => hostPaths.isAbsolute(s), 'expected an absolute host path'));

/** A single file name: no separators, not `.`/`..`, at most 255 characters. */
export const FileNameString = v.pipe(
  NonEmptyString,
  v.check((s) => !/[\\/]/.test(s) && s !== '.' && s !== '..' && s.length <= 255, 'expected a plain name without separators'),
);

/** An integer in [min, max]. */
export function integerIn(min: number, max: number, message = `expected an integer in ${min}..${max}`) {
  return v.pipe(v.number(message), v.safeInteger(message), v.minValue(min, message), v.maxValue(max, message));
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warning', 'error', 'fatal', 'panic'] as const;

/** Schema of `LcowBootOptions`. */
export const LcowBootSchema = strictRecord({
  bootFilesPath: HostPathString,
  mode: v.optional(v.picklist(['kernel-direct', 'uefi'])),
  kernelFile: v.optional(FileNameString),
  rootfs: v.optional(v.picklist(['initrd', 'vhd'])),
  rootfsFile: v.optional(FileNameString),
  kernelBootOptions: v.optional(v.pipe(NonEmptyString, v.check((s) => !/[\r\n]/.test(s), 'must be one line'))),
  vpciEnabled: OptionalFlag,
  gcsLogLevel: v.optional(v.picklist(LOG_LEVELS)),
  disableTimeSync: OptionalFlag,
});

/** Schema of `WcowBootOptions`. */
export const WcowBootSchema = strictRecord({
  osLayerPath: HostPathString,
  scratchPath: HostPathString,
  logForwarding: OptionalFlag,
});

/** True when A and B are the same type (the schemas are checked against the documented interfaces). */
export type SameType<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const lcowBootMatches: SameType<v.InferOutput<typeof LcowBootSchema>, LcowBootOptions> = true;
const wcowBootMatches: SameType<v.InferOutput<typeof WcowBootSchema>, WcowBootOptions> = true;
void lcowBootMatches;
void wcowBootMatches;

/**
 * The defaults of an LCOW `boot` that `LcowBootSchema` accepted; NOT_SUPPORTED for a root VHD with
 * VPMEM on. No file system access.
 */
export function resolveLcowBoot(b: LcowBootOptions, vpmemCount: number): ResolvedLcowBoot {
  const rootfs = b.rootfs ?? 'initrd';
  if (rootfs === 'vhd' && vpmemCount > 0) {
    throw new UvmError('NOT_SUPPORTED', 'boot.rootfs "vhd" with VPMEM on: hcsshim boots it from VPMEM device 0, which the VPMEM manager cannot reserve yet; use an initrd or vpmem.count 0', {
      details: { field: 'boot.rootfs' },
    });
  }
  return {
    os: 'linux',
    bootFilesPath: b.bootFilesPath,
    mode: b.mode ?? 'kernel-direct',
    kernelFile: b.kernelFile,
    rootfs,
    rootfsFile: b.rootfsFile ?? (rootfs === 'vhd' ? 'rootfs.vhd' : 'initrd.img'),
    kernelBootOptions: b.kernelBootOptions,
    vpciEnabled: b.vpciEnabled ?? false,
    gcsLogLevel: b.gcsLogLevel ?? 'info',
    disableTimeSync: b.disableTimeSync ?? false,
  };
}

/** The defaults of a WCOW `boot` that `WcowBootSchema` accepted. */
export function resolveWcowBoot(b: WcowBootOptions): ResolvedWcowBoot {
  return { os: 'windows', osLayerPath: b.osLayerPath, scratchPath: b.scratchPath, logForwarding: b.logForwarding ?? true };
}

/** `dir` joined with `names` in the path flavour of `dir` (`hostPaths.join`). */
export const joinHost = hostPaths.join;

/** The OS files a WCOW UVM boots from: `<osLayerPath>\UtilityVM\Files`. */
export function wcowOsFilesPath(boot: ResolvedWcowBoot): string {
  return joinHost(boot.osLayerPath, 'UtilityVM', 'Files');
}

/**
 * Checks that every boot file exists and is of the right kind before HCS is called (hcsshim
 * `os.Stat`s them: "kernel: '…' not found"), and decides the kernel file name (`vmlinux` for
 * kernel-direct boot when it exists, else `kernel`, as hcsshim). Rejects with NOT_FOUND naming
 * the file (`details.bootFile`, `details.hostPath`, `details.expected`).
 */
export async function checkBootFiles(boot: ResolvedBoot, hostFs: HostFs): Promise<ResolvedBoot> {
  if (boot.os === 'windows') {
    await expectKind(hostFs, 'osLayer', boot.osLayerPath, 'directory');
    await expectKind(hostFs, 'osFiles', wcowOsFilesPath(boot), 'directory');
    await expectKind(hostFs, 'scratch', boot.scratchPath, 'file');
    return boot;
  }
  await expectKind(hostFs, 'bootFiles', boot.bootFilesPath, 'directory');
  let kernelFile = boot.kernelFile;
  if (kernelFile === undefined) {
    const vmlinux = boot.mode === 'kernel-direct' ? await kindOf(hostFs, joinHost(boot.bootFilesPath, 'vmlinux')) : undefined;
    kernelFile = vmlinux === 'file' ? 'vmlinux' : 'kernel';
  }
  await expectKind(hostFs, 'kernel', joinHost(boot.bootFilesPath, kernelFile), 'file');
  await expectKind(hostFs, 'rootfs', joinHost(boot.bootFilesPath, boot.rootfsFile), 'file');
  return { ...boot, kernelFile };
}

async function kindOf(hostFs: HostFs, path: string): Promise<'file' | 'directory' | 'other' | undefined> {
  try {
    const s = await hostFs.stat(path);
    return s.isFile ? 'file' : s.isDirectory ? 'directory' : 'other';
  } catch (err) {
    if (UvmError.is(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
}

async function expectKind(hostFs: HostFs, bootFile: string, path: string, expected: 'file' | 'directory'): Promise<void> {
  const found = await kindOf(hostFs, path);
  if (found === expected) return;
  const what = found === undefined ? 'not found' : `is not a ${expected}`;
  throw new UvmError('NOT_FOUND', `boot file ${bootFile}: '${path}' ${what}`, {
    details: { bootFile, hostPath: path, expected, found: found ?? 'missing' },
  });
}
