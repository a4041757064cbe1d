/**
 * The hvsocket transport port: how the library listens for a guest that dials the host on
 * (VM id, service id). On Windows an AF_HYPERV listener (src/hcs/hvsocket-windows*.ts); elsewhere a
 * Unix domain socket the simulator's guest dials (src/hcs/hvsocket-unix.ts), at the path
 * `localHvSocketPath` names. See docs/hcs.md ("Guest connection").
 */
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { ServiceIdentifier } from 'inversify';

/** Listens on hvsocket (VmId, ServiceId): AF_HYPERV on Windows, a Unix socket elsewhere. */
export interface HvSocketTransport {
  /** Starts listening; call after HcsCreateComputeSystem and before HcsStartComputeSystem. */
  listen(vmId: string, serviceId: string): Promise<HvSocketListener>;
}
/** DI token of the `HvSocketTransport`. */
export const HvSocketTransport: ServiceIdentifier<HvSocketTransport> = Symbol.for('uvm-orchestrator.HvSocketTransport');

export interface HvSocketListener {
  /** The first connection. Rejects GUEST_CONNECT_TIMEOUT at the deadline, ABORTED on the signal
   *  (the listener is closed either way). */
  accept(options: { timeoutMs: number; signal?: AbortSignal }): Promise<Duplex>;
  close(): Promise<void>;
}

/** The LCOW GCS bridge: vsock port 0x40000000. */
export const LCOW_GCS_SERVICE_ID = '40000000-facb-11e6-bd58-64006a7986d3';
/** The WCOW GCS bridge (hcsshim `WindowsGcsHvsockServiceID`). */
export const WCOW_GCS_SERVICE_ID = 'acef5661-84a1-4e44-856b-6245e69f4620';
/** LCOW entropy, vsock port 1: the host writes random bytes and closes. */
export const LCOW_ENTROPY_SERVICE_ID = '00000001-facb-11e6-bd58-64006a7986d3';
/** LCOW GCS log, vsock port 109: the guest writes JSON log lines. */
export const LCOW_LOG_SERVICE_ID = '0000006d-facb-11e6-bd58-64006a7986d3';
/** `ParentAddress` of the WCOW HvSocket update after the handshake (hcsshim `WindowsGcsHvHostID`). */
export const WCOW_GCS_HOST_ID = '894cc2d6-9d79-424f-93fe-42969ae6d8d1';
/** hcsshim's accept deadline for the guest's connections (`GCSConnectionTimeout`). */
export const DEFAULT_GUEST_CONNECT_TIMEOUT_MS = 2 * 60 * 1000;

/** The hvsocket service id of vsock port `port` (go-winio `VsockServiceID`). */
export function vsockServiceId(port: number): string {
  if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) throw new RangeError(`not a vsock port: ${port}`);
  return `${port.toString(16).padStart(8, '0')}-facb-11e6-bd58-64006a7986d3`;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The directory of the local (non-Windows) hvsocket endpoints: `$UVM_HVSOCK_DIR` if set, else
 * `$TMPDIR/uvm-hvsock` (`/tmp` when TMPDIR is unset). The transport creates it with mode 0700.
 */
export function localHvSocketDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.UVM_HVSOCK_DIR;
  if (dir !== undefined && dir !== '') return dir;
  return join(env.TMPDIR !== undefined && env.TMPDIR !== '' ? env.TMPDIR : '/tmp', 'uvm-hvsock');
}

/**
 * The local endpoint of (vmId, serviceId): `<dir>/<vmid>-<serviceid>.sock`, both GUIDs lowercase.
 * Throws a TypeError for anything but two canonical GUIDs (the names go into a path).
 */
export function localHvSocketPath(vmId: string, serviceId: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!GUID.test(vmId)) throw new TypeError(`hvsocket VM id is not a GUID: ${JSON.stringify(vmId)}`);
  if (!GUID.test(serviceId)) throw new TypeError(`hvsocket service id is not a GUID: ${JSON.stringify(serviceId)}`);
  const path = join(localHvSocketDir(env), `${vmId.toLowerCase()}-${serviceId.toLowerCase()}.sock`);
  // sun_path holds 108 bytes on Linux (104 on macOS and the BSDs), the terminating NUL included; a
  // longer path would be cut short (the guest could never dial it) or refused, so fail clearly.
  const max = process.platform === 'linux' ? 107 : 103;
  if (Buffer.byteLength(path) > max) {
    throw new TypeError(`hvsocket path ${path} is ${Buffer.byteLength(path)} bytes, over the ${max} a Unix socket address holds: choose a shorter UVM_HVSOCK_DIR`);
  }
  return path;
}
