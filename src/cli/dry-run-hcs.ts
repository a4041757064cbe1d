import { createHash } from 'node:crypto';
import { UvmError } from '../core/errors.js';
import type { HcsApi, HcsCallOptions, HcsSystem, HcsSystemSummary } from '../hcs/hcs-api.js';
import type { ModifySettingRequest } from '../hcs/schema.js';
import type { HvSocketTransport } from '../hcs/hvsocket.js';
import { DrainingGuestTransport } from '../hcs/in-process-guest.js';

/** The namespace of NameToGuid's version-5 UUIDs (as the simulator computes them). */
const NAME_TO_GUID_NAMESPACE = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';

/**
 * An in-memory `HcsApi` for `uvmctl plan`: every call succeeds at once and does nothing, so the
 * real device managers can run their bookkeeping for a dry run — planning container N against the
 * slots, refcounts and shares containers 1…N-1 would hold — without loading computecore.dll or
 * the simulator. Nothing is validated here (the managers validate their input themselves).
 *
 * `nameToGuid` computes the RFC 4122 version-5 UUID of the UTF-8 name in namespace
 * 6ba7b810-9dad-11d1-80b4-00c04fd430c8, as the simulator does; whether Windows' NameToGuid
 * derives the same value is not verified, so the WCOW layer ids of a plan are the simulator's.
 */
export class DryRunHcs implements HcsApi {
  /** Its guests are in-memory too: LCOW entropy and log answer at once, nothing is listened on. */
  readonly guestHvSocket: HvSocketTransport = new DrainingGuestTransport();
  readonly #systems = new Map<string, DryRunSystem>();
  /** Every call, for tests and for `plan --json`'s proof that nothing reached HCS. */
  readonly calls: { fn: string; id: string }[] = [];

  async createComputeSystem(id: string, _configuration: Record<string, unknown>): Promise<HcsSystem> {
    this.calls.push({ fn: 'create', id });
    if (this.#systems.has(id)) throw new UvmError('INVALID_STATE', `dry run: compute system ${id} already exists`);
    const system = new DryRunSystem(id, this.calls, () => this.#systems.delete(id));
    this.#systems.set(id, system);
    return system;
  }

  async openComputeSystem(id: string): Promise<HcsSystem> {
    const system = this.#systems.get(id);
    if (!system) throw new UvmError('NOT_FOUND', `dry run: no compute system ${id}`);
    return system;
  }

  async enumerateComputeSystems(): Promise<HcsSystemSummary[]> {
    return [...this.#systems.keys()].map((Id) => ({ Id, State: 'Running' }));
  }

  async grantVmAccess(vmId: string, _path: string): Promise<void> {
    this.calls.push({ fn: 'grant', id: vmId });
  }

  async revokeVmAccess(vmId: string, _path: string): Promise<void> {
    this.calls.push({ fn: 'revoke', id: vmId });
  }

  nameToGuid(name: string): string {
    return uuidV5(NAME_TO_GUID_NAMESPACE, name);
  }
}

class DryRunSystem implements HcsSystem {
  #closed = false;
  constructor(
    readonly id: string,
    private readonly calls: { fn: string; id: string }[],
    private readonly forget: () => void,
  ) {}

  #call(fn: string): void {
    if (this.#closed) throw new UvmError('HANDLE_CLOSED', `dry run: compute system ${this.id} was closed`);
    this.calls.push({ fn, id: this.id });
  }

  async start(_options?: HcsCallOptions): Promise<void> {
    this.#call('start');
  }

  async shutdown(_options?: HcsCallOptions): Promise<void> {
    this.#call('shutdown');
    this.forget();
  }

  async terminate(_options?: HcsCallOptions): Promise<void> {
    this.#call('terminate');
    this.forget();
  }

  async modify(_request: ModifySettingRequest, _options?: HcsCallOptions): Promise<void> {
    this.#call('modify');
  }

  async properties(_query: Record<string, unknown>, _options?: HcsCallOptions): Promise<unknown> {
    this.#call('properties');
    // A RuntimeId as HCS reports one (the hvsocket VM id the library listens at).
    return { RuntimeId: '00000000-0000-4000-8000-000000000000' };
  }

  close(): void {
    this.#closed = true;
  }
}

/** RFC 4122 §4.3 name-based UUID, version 5 (SHA-1), lower case. */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(ns).update(Buffer.from(name, 'utf8')).digest();
  const b = hash.subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
