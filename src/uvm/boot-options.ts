import { invalidArgument, UvmError } from '../core/errors.js';
import type { HostFs } from '../core/host-fs.js';
import type { GuestOs } from '../devices/device-types.js';
import { hostPaths } from '../devices/host-paths.js';
import { validate } from '../devices/validation.js';

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

const LOG_LEVELS = ['trace', 'debug', 'info', 'warning', 'error', 'fatal', 'panic'];

/** Validates `boot` for `os` (INVALID_ARGUMENT on the first problem); no file system access. */
export function resolveBootOptions(os: GuestOs, boot: unknown, vpmemCount: number): ResolvedBoot | undefined {
  if (boot === undefined) return undefined;
  if (boot === null || typeof boot !== 'object' || Array.isArray(boot)) throw invalidArgument('boot must be an object');
  const b = boot as Record<string, unknown>;
  const allowed = os === 'linux'
    ? ['bootFilesPath', 'mode', 'kernelFile', 'rootfs', 'rootfsFile', 'kernelBootOptions', 'vpciEnabled', 'gcsLogLevel', 'disableTimeSync']
    : ['osLayerPath', 'scratchPath', 'logForwarding'];
  for (const key of Object.keys(b)) {
    if (!allowed.includes(key)) throw invalidArgument(`boot.${key} is not a ${os === 'linux' ? 'LCOW' : 'WCOW'} boot option`);
  }
  if (os === 'windows') {
    return {
      os,
      osLayerPath: validate.hostPath(b.osLayerPath, 'boot.osLayerPath'),
      scratchPath: validate.hostPath(b.scratchPath, 'boot.scratchPath'),
      logForwarding: validate.boolean(b.logForwarding, 'boot.logForwarding', true),
    };
  }
  const mode = oneOf(b.mode, 'boot.mode', ['kernel-direct', 'uefi'] as const, 'kernel-direct');
  const rootfs = oneOf(b.rootfs, 'boot.rootfs', ['initrd', 'vhd'] as const, 'initrd');
  if (rootfs === 'vhd' && vpmemCount > 0) {
    throw new UvmError('NOT_SUPPORTED', 'boot.rootfs "vhd" with VPMEM on: hcsshim boots it from VPMEM device 0, which the VPMEM manager cannot reserve yet; use an initrd or vpmem.count 0');
  }
  const kernelBootOptions = b.kernelBootOptions === undefined ? undefined : validate.nonEmpty(b.kernelBootOptions, 'boot.kernelBootOptions');
  if (kernelBootOptions !== undefined && /[\r\n]/.test(kernelBootOptions)) throw invalidArgument('boot.kernelBootOptions must be one line');
  return {
    os,
    bootFilesPath: validate.hostPath(b.bootFilesPath, 'boot.bootFilesPath'),
    mode,
    kernelFile: b.kernelFile === undefined ? undefined : validate.name(b.kernelFile, 'boot.kernelFile'),
    rootfs,
    rootfsFile: b.rootfsFile === undefined ? (rootfs === 'vhd' ? 'rootfs.vhd' : 'initrd.img') : validate.name(b.rootfsFile, 'boot.rootfsFile'),
    kernelBootOptions,
    vpciEnabled: validate.boolean(b.vpciEnabled, 'boot.vpciEnabled', false),
    gcsLogLevel: oneOf(b.gcsLogLevel, 'boot.gcsLogLevel', LOG_LEVELS, 'info'),
    disableTimeSync: validate.boolean(b.disableTimeSync, 'boot.disableTimeSync', false),
  };
}

function oneOf<T extends string>(value: unknown, what: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw invalidArgument(`${what} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

/** `dir` joined with `names` in the path flavour of `dir`. */
export function joinHost(dir: string, ...names: string[]): string {
  return hostPaths.flavour(dir).join(dir, ...names);
}

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
