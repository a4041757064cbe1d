import { inject, injectable } from 'inversify';
import { invalidArgument, UvmError } from '../core/errors.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, Logger, withFields } from '../core/logger.js';
import { RefCountedTable, type Placed, type Reservation } from '../core/refcounted-table.js';
import { describeEntries } from './describe-entries.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DeviceAcquireOptions, MappedPipe, PipeManager, ResourceInfo } from './device-types.js';
import { ResourceDelivery } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { resourcePaths } from './resource-paths.js';
import { validate } from './validation.js';
import { hostRequest } from './wire-requests.js';

const PIPE_PREFIX = /^\\\\\.\\pipe\\/i;

/**
 * Host named pipes mapped into one WCOW UVM (spec §6.3): `VirtualMachine/Devices/MappedPipes/<host
 * pipe path>`, Add/Remove without Settings, refcounted by the pipe path. The guest reaches the
 * pipe at `\\?\VMSMB\VSMB-{…}\IPC$\<name>`.
 */
@injectable()
export class PipeManagerImpl implements PipeManager {
  readonly #logger: Logger;
  readonly #table: RefCountedTable<string, MappedPipe>;

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(Logger) logger: Logger,
  ) {
    this.#logger = withFields(logger, { [LogField.uvmId]: config.id, [LogField.kind]: 'pipe' });
    this.#table = new RefCountedTable({ name: 'mapped-pipe', destroy: (p) => this.#remove(p) });
  }

  async acquire(request: { hostPath: string }, options: DeviceAcquireOptions = {}): Promise<Lease<MappedPipe>> {
    return this.reserve(request).commit(options);
  }

  /** Reserves a pipe mapping synchronously (no I/O; pipes have no slot): shared by host pipe path. */
  reserve(request: { hostPath: string }): Reservation<MappedPipe> {
    if (this.config.os !== 'windows') throw new UvmError('NOT_SUPPORTED', 'mapped pipes are only supported in WCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('pipe request must be an object');
    const hostPath = validate.nonEmpty(request.hostPath, 'pipe path');
    if (!PIPE_PREFIX.test(hostPath)) throw invalidArgument(`a host pipe path must start with \\\\.\\pipe\\: ${hostPath}`);
    validate.name(hostPath.replace(PIPE_PREFIX, ''), 'pipe name');
    return this.#table.reserve(hostPath, this.#placePipe, copyPipe);
  }

  /** Recovery (docs/recovery.md): rebuilds the lease of a pipe that is already mapped, with no HCS call. */
  async adopt(request: { hostPath: string }, _pipe: MappedPipe): Promise<Lease<MappedPipe>> {
    if (this.config.os !== 'windows') throw new UvmError('NOT_SUPPORTED', 'mapped pipes are only supported in WCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('pipe request must be an object');
    const hostPath = validate.nonEmpty(request.hostPath, 'pipe path');
    if (!PIPE_PREFIX.test(hostPath)) throw invalidArgument(`a host pipe path must start with \\\\.\\pipe\\: ${hostPath}`);
    const lease = await this.#table.acquire(hostPath, async () => {
      this.#logger.debug('pipe adopted', { [LogField.hostPath]: hostPath });
      return { hostPath, guestPath: guestPaths.vsmbPipe(hostPath.replace(PIPE_PREFIX, '')) };
    });
    return new ReleasableLease({ ...lease.value }, () => lease.release());
  }

  describe(): ResourceInfo[] {
    return describeEntries(this.#table, 'mapped-pipe', (p) => (p ? { hostPath: p.hostPath, guestPath: p.guestPath } : {}));
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#table.retryFailedTeardowns();
  }

  /** `#place`, made once (not a closure per reservation). */
  readonly #placePipe = (hostPath: string): Placed<MappedPipe> => this.#place(hostPath);

  #place(hostPath: string): Placed<MappedPipe> {
    const pipe = { hostPath, guestPath: guestPaths.vsmbPipe(hostPath.replace(PIPE_PREFIX, '')) };
    return {
      value: pipe,
      cancel: () => undefined,
      commit: async () => {
        await this.delivery.host(hostRequest(resourcePaths.mappedPipe(hostPath), 'Add'));
        this.#logger.debug('pipe mapped', { [LogField.hostPath]: hostPath, [LogField.guestPath]: pipe.guestPath });
      },
    };
  }

  async #remove(p: MappedPipe): Promise<void> {
    await this.delivery.host(hostRequest(resourcePaths.mappedPipe(p.hostPath), 'Remove'));
    this.#logger.debug('pipe unmapped', { [LogField.hostPath]: p.hostPath });
  }
}

/** What a caller holds: a copy of the table's entry. */
const copyPipe = (pipe: MappedPipe): MappedPipe => ({ ...pipe });
