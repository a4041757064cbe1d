import 'reflect-metadata';
import { Container, type ServiceIdentifier } from 'inversify';
import { HostFs, NodeHostFs } from '../core/host-fs.js';
import { defaultLogger, Logger } from '../core/logger.js';
import { UvmDeviceConfig } from '../devices/device-config.js';
import { HcsApi } from '../hcs/hcs-api.js';
import { HcsModule } from '../hcs/hcs-module.js';
import { hostTimeZone, UTC_TIME_ZONE } from '../hcs/host-time-zone.js';
import { checkBootFiles } from '../uvm/boot-options.js';
import { buildCreateDocument } from '../uvm/create-document.js';
import { GuestConnection } from '../uvm/guest-connection.js';
import { GuestChannels } from '../uvm/guest-channels.js';
import { DEFAULT_GUEST_CONNECT_TIMEOUT_MS, type HvSocketTransport } from '../hcs/hvsocket.js';
import { UnixHvSocketTransport } from '../hcs/hvsocket-unix.js';
import type { HcsSystem as HcsSystemPort } from '../hcs/hcs-api.js';
import { HcsSystem } from '../uvm/hcs-system-token.js';
import { LateOutcomeSystem } from '../hcs/late-outcomes.js';
import { UtilityVm } from '../uvm/utility-vm.js';
import { claimUvmId, UvmIdRelease } from '../uvm/live-uvm-ids.js';
import { UvmExitMonitor } from '../uvm/uvm-exit.js';
import { deviceConfigOf, journaledUvmOptions, resolveUvmOptions, type ResolvedUvmOptions, type UtilityVmOptions } from '../uvm/uvm-options.js';
import { invalidArgument, UvmError } from '../core/errors.js';
import { toJson } from '../recovery/journal-format.js';
import { RecoveryJournal, resolveJournalOptions, type JournalOptions } from '../recovery/journal.js';
import { JournaledGrants } from '../recovery/journaled-grants.js';
import { PipeModule } from './pipe-module.js';
import { Plan9Module } from './plan9-module.js';
import { ScsiModule } from './scsi-module.js';
import { UvmModule } from './uvm-module.js';
import { VpmemModule } from './vpmem-module.js';
import { VpciBootDevices } from '../devices/vpci-manager.js';
import { VpciModule } from './vpci-module.js';
import { VsmbModule } from './vsmb-module.js';

/** Creates a UtilityVm: validates the options, creates the compute system, builds its DI scope. */
export type UtilityVmFactory = (options: UtilityVmOptions) => Promise<UtilityVm>;
export const UtilityVmFactory: ServiceIdentifier<UtilityVmFactory> = Symbol.for('uvm-orchestrator.UtilityVmFactory');

/** How an existing UVM is re-opened after a shim restart (docs/recovery.md). */
export interface OpenUtilityVmOptions {
  /** The journal the UVM was created with. */
  journal: JournalOptions;
  /** The shim's guest connection, when it owns the GCS bridge. */
  guestConnection?: GuestConnection;
}

/** Re-opens a journaled UtilityVm and reconciles it (`UtilityVm.open`). */
export type UtilityVmOpener = (id: string, options: OpenUtilityVmOptions) => Promise<UtilityVm>;
export const UtilityVmOpener: ServiceIdentifier<UtilityVmOpener> = Symbol.for('uvm-orchestrator.UtilityVmOpener');

/** What `createUvmOrchestrator` builds on (each has a default). */
export interface UvmOrchestratorOptions {
  /** The HCS implementation; default: the FFI binding (`HcsModule`). */
  hcs?: HcsApi;
  /** Default: node:fs. */
  hostFs?: HostFs;
  /** Default: the process's default logger for `UVM_LOG_LEVEL` (silent unless set; one per level, shared by orchestrators made without a logger). */
  logger?: Logger;
  /**
   * Where the UVMs' guests connect (GCS bridge, LCOW entropy and log). Default: AF_HYPERV on
   * Windows, a Unix domain socket per endpoint elsewhere (the simulator's guest dials it).
   */
  hvSocket?: HvSocketTransport;
  /**
   * How UVMs that do not say (`UtilityVmOptions.guestDelivery`) deliver guest requests: `bridge`
   * (the library owns the GCS bridge, as hcsshim does) or `hcs` (HCS owns the guest connection).
   * @default 'bridge' (a fake HCS whose guests live in this process may say otherwise: `HcsApi.defaultGuestDelivery`)
   */
  guestDelivery?: GuestDeliveryMode;
}

/** How guest requests reach the GCS: the library's own bridge, or HCS's guest connection. */
export type GuestDeliveryMode = 'bridge' | 'hcs';

/** `resolved` with its delivery mode decided (the UVM's own, else `fallback`). */
function withDelivery(resolved: ResolvedUvmOptions, fallback: GuestDeliveryMode): ResolvedUvmOptions & { guestDelivery: GuestDeliveryMode } {
  const guestDelivery = resolved.guestDelivery ?? (resolved.guestConnection ? 'bridge' : fallback);
  if (guestDelivery === 'hcs' && resolved.guestConnection) {
    throw invalidArgument('guestConnection needs guestDelivery "bridge" (HCS cannot own the guest connection then)', { field: 'guestConnection' });
  }
  return { ...resolved, guestDelivery };
}

/** The Windows transport's module (15C's, loaded only on Windows). */
const WINDOWS_HVSOCKET_MODULE = '../hcs/hvsocket-windows.js';

/** The hvsocket transport of this platform. */
async function platformHvSocket(): Promise<HvSocketTransport> {
  if (process.platform !== 'win32') return new UnixHvSocketTransport();
  const mod = (await import(WINDOWS_HVSOCKET_MODULE)) as { WindowsHvSocketTransport: new () => HvSocketTransport };
  return new mod.WindowsHvSocketTransport();
}

/**
 * Opens the UVM's hvsocket listeners right after create (LCOW entropy and log in both modes; the
 * GCS in bridge mode), at the VM's `RuntimeId` read from its properties as hcsshim does.
 * Undefined when the guest dials nothing the library must answer (WCOW with HCS-owned delivery or
 * a caller's own connection).
 */
/** The library listens for the GCS and speaks the bridge itself (bridge delivery without a shim-supplied connection). */
function ownsBridge(resolved: ResolvedUvmOptions): boolean {
  return resolved.guestDelivery === 'bridge' && resolved.guestConnection === undefined;
}

/** The system's standard properties document (State, RuntimeId, …). */
type SystemProperties = { State?: unknown; RuntimeId?: unknown } | null;

async function openGuestChannels(
  resolved: ResolvedUvmOptions,
  system: HcsSystemPort,
  transport: () => Promise<HvSocketTransport>,
  logger: Logger,
  { reopen = false, properties }: { reopen?: boolean; properties?: SystemProperties } = {},
): Promise<GuestChannels | undefined> {
  const bridge = ownsBridge(resolved);
  // Entropy and log are dialled once, at boot: a re-opened UVM needs only the bridge.
  const boot = !reopen;
  if (!(resolved.os === 'linux' && boot) && !bridge) return undefined;
  const props = properties ?? ((await system.properties({})) as SystemProperties);
  const runtimeId = props?.RuntimeId;
  if (typeof runtimeId !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(runtimeId)) {
    throw new UvmError('INVALID_STATE', `HCS reported no RuntimeId for ${resolved.id}: its guest's hvsocket endpoints cannot be named`, {
      details: { uvmId: resolved.id, runtimeId },
    });
  }
  return GuestChannels.listen({
    uvmId: resolved.id,
    os: resolved.os,
    runtimeId,
    bridge,
    boot,
    transport: await transport(),
    logger,
    connectTimeoutMs: resolved.guestConnectTimeoutMs ?? DEFAULT_GUEST_CONNECT_TIMEOUT_MS,
    ...(resolved.guestRpcTimeoutMs !== undefined && { rpcTimeoutMs: resolved.guestRpcTimeoutMs }),
    ...(resolved.os === 'windows' && bridge && { timeZone: resolved.noInheritHostTimeZone ? UTC_TIME_ZONE : hostTimeZone() }),
  });
}

/** The library's entry point. */
export interface UvmOrchestrator {
  readonly hcs: HcsApi;
  /** Creates (but does not start) a Utility VM with its own device managers. */
  createUtilityVm: UtilityVmFactory;
  /** Re-opens a journaled Utility VM after a restart and reconciles it with HCS. */
  openUtilityVm: UtilityVmOpener;
}

/** The device modules loaded into every UVM scope. */
const UVM_SCOPE_MODULES = [UvmModule, ScsiModule, VsmbModule, VpmemModule, Plan9Module, PipeModule, VpciModule];

/**
 * The composition root: the only place that calls `container.get`. The root container holds the
 * process-wide services (HCS, host file system, logger); every UtilityVm gets a child container
 * with its own managers, so two UVMs share no manager state.
 */
export function createUvmOrchestrator(options: UvmOrchestratorOptions = {}): UvmOrchestrator {
  const root = new Container();
  if (options.hcs) root.bind(HcsApi).toConstantValue(options.hcs);
  else root.load(HcsModule);
  root.bind(HostFs).toConstantValue(options.hostFs ?? new NodeHostFs());
  root.bind(Logger).toConstantValue(options.logger ?? defaultLogger());
  let transport: Promise<HvSocketTransport> | undefined;
  const given = options.hvSocket ?? options.hcs?.guestHvSocket;
  const hvSocket = (): Promise<HvSocketTransport> => (transport ??= given ? Promise.resolve(given) : platformHvSocket());
  const defaultDelivery: GuestDeliveryMode = options.guestDelivery ?? options.hcs?.defaultGuestDelivery ?? 'bridge';
  if (defaultDelivery !== 'bridge' && defaultDelivery !== 'hcs') throw invalidArgument(`guestDelivery must be "bridge" or "hcs": ${String(defaultDelivery)}`, { field: 'guestDelivery' });
  /** The per-UVM scope over an existing compute system. */
  const buildScope = (resolved: ResolvedUvmOptions, system: HcsSystem, journal: RecoveryJournal | undefined, releaseId: UvmIdRelease, channels?: GuestChannels): UtilityVm => {
    const scope = new Container({ parent: root });
    scope.bind(UvmIdRelease).toConstantValue(releaseId);
    scope.bind(UvmDeviceConfig).toConstantValue(deviceConfigOf(resolved));
    // Every call on the system and the guest connection is guarded by the UVM's exit (UVM_EXITED).
    const exits = new UvmExitMonitor(resolved.id, system);
    scope.bind(UvmExitMonitor).toConstantValue(exits);
    // Late outcomes of modifies given up at their deadline are handled per UVM (src/hcs/late-outcomes.ts).
    const modifyTimeoutMs = (system as { modifyTimeoutMs?: unknown }).modifyTimeoutMs;
    scope.bind(HcsSystem).toConstantValue(new LateOutcomeSystem(exits.guardSystem(), { defaultModifyTimeoutMs: typeof modifyTimeoutMs === 'number' ? modifyTimeoutMs : undefined }));
    const connection = resolved.guestConnection ?? (channels?.bridged ? channels : undefined);
    if (connection) scope.bind(GuestConnection).toConstantValue(exits.guardConnection(connection));
    if (channels) scope.bind(GuestChannels).toConstantValue(channels);
    if (journal) {
      scope.bind(RecoveryJournal).toConstantValue(journal);
      // The UVM's VM access grants are journaled (revoked when it is terminated).
      scope.bind(HcsApi).toConstantValue(new JournaledGrants(root.get(HcsApi), journal));
    }
    scope.bind(VpciBootDevices).toConstantValue(resolved.bootVpciDevices);
    scope.load(...UVM_SCOPE_MODULES);
    return scope.get(UtilityVm);
  };
  root.bind(UtilityVmFactory).toFactory((ctx) => async (uvmOptions: UtilityVmOptions): Promise<UtilityVm> => {
    const resolved = withDelivery(resolveUvmOptions(uvmOptions), defaultDelivery);
    const hcs = ctx.get(HcsApi);
    // Boot files are checked before anything is claimed or created (hcsshim stats them too).
    if (resolved.boot) resolved.boot = await checkBootFiles(resolved.boot, ctx.get(HostFs));
    else ctx.get(Logger).warn('UVM created without a boot configuration: the VM starts but no guest boots', { uvmId: resolved.id });
    const releaseId = claimUvmId(hcs, resolved.id);
    let journal: RecoveryJournal | undefined;
    try {
      // The journal exists before the compute system: a crash in between leaves a journal whose
      // system cannot be opened, never a system without a journal. It never replaces a journal
      // (JOURNAL_IN_USE): a failed create leaves an existing one byte-for-byte as it was.
      // The journal keeps the delivery mode the UVM was created with (its create document depends on it).
      journal = resolved.journal
        ? await RecoveryJournal.create(resolved.journal.path, resolved.id, toJson(journaledUvmOptions({ ...uvmOptions, guestDelivery: resolved.guestDelivery })))
        : undefined;
      // hcsshim grants the VM access to its scratch before create; with a journal, the grant is
      // journaled ahead of the call like every grant of the UVM (no crash leaves a grant unknown).
      if (resolved.boot?.os === 'windows') await (journal ? new JournaledGrants(hcs, journal) : hcs).grantVmAccess(resolved.id, resolved.boot.scratchPath);
      const system = await hcs.createComputeSystem(resolved.id, buildCreateDocument(resolved));
      let channels: GuestChannels | undefined;
      try {
        // Listen after create (the RuntimeId is known) and before start (the guest dials at boot).
        channels = await openGuestChannels(resolved, system, hvSocket, ctx.get(Logger));
        return buildScope(resolved, system, journal, releaseId, channels);
      } catch (err) {
        await channels?.close();
        await system.terminate().catch(() => undefined);
        system.close();
        throw err;
      }
    } catch (err) {
      // Only a journal this call created is removed (nothing else was written to it).
      await journal?.discard().catch(() => undefined);
      releaseId();
      throw err;
    }
  });
  root.bind(UtilityVmOpener).toFactory((ctx) => async (id: string, options: OpenUtilityVmOptions): Promise<UtilityVm> => {
    if (options === null || typeof options !== 'object') throw invalidArgument('open options must be an object {journal}');
    const journalOptions = resolveJournalOptions(options.journal);
    if (!journalOptions) throw invalidArgument('UtilityVm.open needs the journal the UVM was created with');
    const hcs = ctx.get(HcsApi);
    const releaseId = claimUvmId(hcs, id);
    let journal: RecoveryJournal | undefined;
    try {
      journal = await RecoveryJournal.open(journalOptions.path);
      if (journal.uvmId !== id) {
        throw new UvmError('RECOVERY_FAILED', `the journal ${journalOptions.path} belongs to UVM ${journal.uvmId}, not ${id}`, {
          details: { reason: 'mismatch', uvmId: id },
        });
      }
      // A journal written before the library owned the bridge: HCS delivered the guest requests.
      const resolved = withDelivery(
        resolveUvmOptions({
          ...(journal.snapshot().uvmOptions as unknown as UtilityVmOptions),
          id,
          guestConnection: options.guestConnection,
          journal: journalOptions,
        }),
        'hcs',
      );
      const system = await hcs.openComputeSystem(id);
      let channels: GuestChannels | undefined;
      try {
        // Bridge mode: the running guest redials the host (it does after any drop); reconcile may
        // need it for guest removals. A VM that is not running (killed between create and start)
        // has no guest to wait for: its listeners are those of a fresh boot, accepted by start().
        const properties = ownsBridge(resolved) ? ((await system.properties({})) as SystemProperties) : undefined;
        const running = properties === undefined || properties?.State === 'Running';
        channels = await openGuestChannels(resolved, system, hvSocket, ctx.get(Logger), { reopen: running, ...(properties !== undefined && { properties }) });
        if (running) await channels?.connect();
        const uvm = buildScope(resolved, system, journal, releaseId, channels);
        await uvm.reconcile();
        return uvm;
      } catch (err) {
        await channels?.close();
        system.close();
        throw err;
      }
    } catch (err) {
      await journal?.close();
      releaseId();
      throw err;
    }
  });
  return { hcs: root.get(HcsApi), createUtilityVm: root.get(UtilityVmFactory), openUtilityVm: root.get(UtilityVmOpener) };
}
