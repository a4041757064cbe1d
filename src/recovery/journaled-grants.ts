/**
 * VM access grants in the journal (docs/recovery.md "VM access grants"). `HcsGrantVmAccess(vm,
 * path)` adds an entry for the VM to the file's ACL: state outside the VM that outlives it. With a
 * journal, the UVM's HCS port is this decorator: a grant of a path not granted yet is journaled
 * ahead (a `vm-access` part, durable before the call) and settled after it; recovery keeps the
 * grants; `terminate()` revokes every journaled grant once the VM is gone (hcsshim never revokes,
 * and its per-VM entries pile up on shared files). Every other call goes to the inner port.
 */
import type { Logger } from '../core/logger.js';
import type { HcsApi, HcsCallOptions, HcsSystem, HcsSystemSummary } from '../hcs/hcs-api.js';
import type { RecoveryJournal } from './journal.js';
import { partKeys, type PartChange } from './parts.js';

function grantChange(path: string): PartChange {
  return { op: 'add', part: { key: partKeys.grant(path), kind: 'vm-access', half: 'host', settings: { Path: path } } };
}

export class JournaledGrants implements HcsApi {
  constructor(
    private readonly inner: HcsApi,
    private readonly journal: RecoveryJournal,
  ) {}

  createComputeSystem(id: string, configuration: Record<string, unknown>, options?: HcsCallOptions): Promise<HcsSystem> {
    return this.inner.createComputeSystem(id, configuration, options);
  }

  openComputeSystem(id: string): Promise<HcsSystem> {
    return this.inner.openComputeSystem(id);
  }

  enumerateComputeSystems(query?: Record<string, unknown>): Promise<HcsSystemSummary[]> {
    return this.inner.enumerateComputeSystems(query);
  }

  /** Write-ahead for this UVM's grants (a path granted already needs no new intent). */
  async grantVmAccess(vmId: string, path: string): Promise<void> {
    if (vmId !== this.journal.uvmId || this.journal.partState(partKeys.grant(path)) === 'attached') return this.inner.grantVmAccess(vmId, path);
    const changes = [grantChange(path)];
    await this.journal.intend(changes);
    await this.inner.grantVmAccess(vmId, path);
    this.journal.settle(changes);
  }

  async revokeVmAccess(vmId: string, path: string): Promise<void> {
    if (vmId !== this.journal.uvmId) return this.inner.revokeVmAccess(vmId, path);
    const changes: PartChange[] = [{ op: 'remove', key: partKeys.grant(path), kind: 'vm-access', half: 'host' }];
    await this.journal.intend(changes);
    await this.inner.revokeVmAccess(vmId, path);
    this.journal.settle(changes);
  }

  nameToGuid(name: string): string {
    return this.inner.nameToGuid(name);
  }
}

/**
 * Revokes every grant the journal holds for its VM (after the VM is gone). A failure (the file is
 * gone, the entry was removed by hand) is logged and the rest go on; resolves with what failed.
 */
export async function revokeJournaledGrants(journal: RecoveryJournal, hcs: HcsApi, logger: Logger): Promise<string[]> {
  const failed: string[] = [];
  const paths = journal.parts().flatMap((p) => (p.kind === 'vm-access' && typeof p.settings.Path === 'string' ? [p.settings.Path] : []));
  await Promise.all(
    paths.map(async (path) => {
      try {
        await hcs.revokeVmAccess(journal.uvmId, path);
      } catch (err) {
        failed.push(path);
        logger.warn('revoking a VM access grant failed', { path, error: String(err) });
      }
    }),
  );
  return failed;
}
