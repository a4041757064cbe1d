// The simulator's fake guest through the FFI: after start it dials the local hvsocket endpoints
// (LCOW entropy, log, GCS; WCOW GCS), speaks the GCS bridge, applies guest requests to the same
// guest model the HCS GuestRequest path uses, and obeys its bridge controls. The library's own bridge
// client (src/hcs/gcs-bridge.ts) and Unix-socket transport play the host where they can; a minimal
// speaker (test/support/gcs-bridge-speaker.ts) plays it where a test must see raw frames the client
// refuses by design (unknown ids, oversized bodies, requests before negotiation).
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger } from '../../src/core/logger.js';
import type { ComputeSystem } from '../../src/hcs/compute-system.js';
import { GcsBridge, type GuestCapabilities } from '../../src/hcs/gcs-bridge.js';
import { LCOW_GCS_SERVICE_ID, WCOW_GCS_SERVICE_ID } from '../../src/hcs/hvsocket.js';
import { UnixHvSocketTransport } from '../../src/hcs/hvsocket-unix.js';
import type { GuestRequest } from '../../src/hcs/schema.js';
import { HcsError } from '../../src/hcs/hcs-error.js';
import { configureSimulator, readSimulatorState, simulatorStats, type SimulatorProperties } from '../../src/hcs/simulator-controls.js';
import {
  BridgeConnection,
  CONTAINER_NOTIFICATION,
  HvSockDir,
  NULL_ID,
  RPC,
  SERVICE,
  readUntil,
} from '../support/gcs-bridge-speaker.js';
import { SCSI_CONTROLLERS, createTestSystem, rejection, resetTestSimulator } from './simulator-fixture.js';

const silent = createLogger({ level: 'silent' });
const E_FAIL = 0x80004005 | 0;
const E_NOTIMPL = 0x80004001 | 0;
const HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION = 0x80370120 | 0;

const scsiPath = (lun: number): string => `VirtualMachine/Devices/Scsi/${SCSI_CONTROLLERS[0]}/Attachments/${lun}`;
const mvd = (requestType: 'Add' | 'Remove', lun: number) => ({
  RequestType: requestType,
  ResourceType: 'MappedVirtualDisk' as const,
  Settings: { MountPath: `/run/mounts/scsi/m${lun}`, Lun: lun, ReadOnly: true },
});

async function runtimeIdOf(system: ComputeSystem): Promise<string> {
  const props = (await system.properties({})) as SimulatorProperties;
  expect(props.RuntimeId).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect(props.RuntimeId).to.not.equal(system.id);
  return props.RuntimeId;
}

describe('simulator guest: hvsocket dialer and GCS bridge', function () {
  this.timeout(60_000);
  let dir: HvSockDir;

  beforeEach(() => {
    resetTestSimulator();
    dir = new HvSockDir();
    configureSimulator({ hvsockDir: dir.path });
  });
  afterEach(async () => {
    configureSimulator({ clearFaults: true, releaseHangs: true });
    await dir.dispose();
  });

  /** Accepts the GCS of `system` (created, not started) with the library's transport and bridge client, then negotiates. */
  async function clientBridge(system: ComputeSystem, serviceId: string, beforeStart: (rid: string) => Promise<() => Promise<void>> = async () => async () => undefined): Promise<{ bridge: GcsBridge; caps: GuestCapabilities; rid: string }> {
    const rid = await runtimeIdOf(system);
    const transport = new UnixHvSocketTransport({ env: { UVM_HVSOCK_DIR: dir.path } });
    const gcs = await transport.listen(rid, serviceId);
    const served = await beforeStart(rid);
    await system.start();
    await served();
    const bridge = new GcsBridge(await gcs.accept({ timeoutMs: 30_000 }), { uvmId: system.id, logger: silent });
    await gcs.close();
    return { bridge, caps: await bridge.negotiate(), rid };
  }

  /** The guest's refusal of `p`: its HRESULT and the first ErrorRecord's module. */
  async function refusal(p: Promise<unknown>): Promise<{ hresult: number; module: string | undefined }> {
    const err = await rejection(p);
    expect(err).to.be.instanceOf(HcsError);
    const records = (err as HcsError).details.records as { ModuleName?: string }[] | undefined;
    return { hresult: (err as HcsError).hresult, module: records?.[0]?.ModuleName };
  }

  /** Boots an LCOW system the way hcsshim does (listen after create, before start) and negotiates. */
  async function bootLcow(): Promise<{ system: ComputeSystem; bridge: BridgeConnection; log: string }> {
    const system = await createTestSystem({ os: 'linux', start: false, guestConnection: false });
    const rid = await runtimeIdOf(system);
    const [entropy, log, gcs] = await Promise.all([dir.listen(rid, SERVICE.entropy), dir.listen(rid, SERVICE.log), dir.listen(rid, SERVICE.lcowGcs)]);
    await system.start();
    const e = await entropy.accept();
    e.end(randomBytes(512));
    const logText = await readUntil(await log.accept(), (t) => t.includes('\n'));
    const bridge = new BridgeConnection(await gcs.accept());
    const n = await bridge.negotiate();
    expect(n.Result).to.equal(0);
    expect(n.Version).to.equal(4);
    return { system, bridge, log: logText };
  }

  it('LCOW: entropy, log, then the bridge; host half through HCS, guest half over the bridge, one guest model', async () => {
    const trace = join(dir.path, 'trace.jsonl');
    configureSimulator({ trace });
    const system = await createTestSystem({ os: 'linux', start: false, guestConnection: false });
    let log = '';
    const { bridge, caps } = await clientBridge(system, LCOW_GCS_SERVICE_ID, async (rid) => {
      const [entropy, logListener] = await Promise.all([dir.listen(rid, SERVICE.entropy), dir.listen(rid, SERVICE.log)]);
      return async () => {
        (await entropy.accept()).end(randomBytes(512));
        log = await readUntil(await logListener.accept(), (t) => t.includes('\n'));
      };
    });
    expect(caps.RuntimeOsType).to.equal('Linux');
    expect(JSON.parse(log.split('\n')[0]!)).to.include({ level: 'info' });
    // checked against host state: nothing attached at LUN 3 yet
    expect(await refusal(bridge.modifySettings(mvd('Add', 3)))).to.deep.equal({ hresult: E_FAIL, module: 'gcs' });
    await system.modify({ ResourcePath: scsiPath(3), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: 'C:\\d.vhdx', ReadOnly: true } });
    await bridge.modifySettings(mvd('Add', 3));
    expect((await readSimulatorState(system)).Guest.MappedVirtualDisks).to.deep.equal([mvd('Add', 3).Settings]);
    // hcsshim's release order: guest unmount, guest unplug, host remove
    await bridge.modifySettings(mvd('Remove', 3));
    await bridge.modifySettings({ RequestType: 'Remove', ResourceType: 'SCSIDevice', Settings: { Lun: 3 } });
    await system.modify({ ResourcePath: scsiPath(3), RequestType: 'Remove' });
    const state = await readSimulatorState(system);
    expect(state.HotAdded).to.equal(0);
    // the VM stops: the guest's end of the bridge closes (the client sees EOF)
    const failed = new Promise<string>((resolve) => bridge.onFailure((err) => resolve(String(err.details.reason))));
    await system.terminate();
    expect(await failed).to.equal('eof');
    configureSimulator({ trace: null });
    const lines = readFileSync(trace, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { fn: string; id: string; doc: unknown; hr: number });
    const fns = lines.map((l) => l.fn);
    expect(fns).to.include.members(['bridge:NegotiateProtocol', 'bridge:ModifySettings', 'HcsModifyComputeSystem']);
    const guestAdd = lines.find((l) => l.fn === 'bridge:ModifySettings' && l.hr === 0)!;
    expect(guestAdd.id).to.equal(system.id);
    expect(guestAdd.doc).to.deep.equal({ ContainerId: NULL_ID, ActivityId: NULL_ID, Request: mvd('Add', 3) });
    // host half before guest half
    expect(fns.indexOf('HcsModifyComputeSystem')).to.be.lessThan(lines.indexOf(guestAdd));
  });

  it('WCOW: the null container Create/Start, the HvSocket update, a scratch mount', async () => {
    const system = await createTestSystem({ os: 'windows', start: false, guestConnection: false });
    const { bridge, caps, rid } = await clientBridge(system, WCOW_GCS_SERVICE_ID);
    expect(caps).to.deep.include({ SendHostCreateMessage: true, SendHostStartMessage: true });
    await bridge.rpc('Create', { ContainerId: NULL_ID, ContainerConfig: JSON.stringify({ SystemType: 'Container', TimeZoneInformation: { Bias: 0 } }) });
    await bridge.rpc('Start', { ContainerId: NULL_ID });
    const hv = { RequestType: 'Update', ResourceType: 'HvSocket', Settings: { LocalAddress: rid, ParentAddress: '894cc2d6-9d79-424f-93fe-42969ae6d8d1' } } as const;
    await bridge.modifySettings(hv as unknown as GuestRequest);
    expect((await refusal(bridge.modifySettings({ ...hv, Settings: { ...hv.Settings, LocalAddress: system.id } } as unknown as GuestRequest))).hresult).to.equal(E_FAIL);
    await system.modify({ ResourcePath: scsiPath(1), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: 'C:\\s.vhdx' } });
    const mount = { ResourceType: 'MappedVirtualDisk', Settings: { ContainerPath: 'C:\\c\\1', Lun: 1 } }; // RequestType omitted = Add
    await bridge.modifySettings(mount as unknown as GuestRequest);
    expect((await readSimulatorState(system)).Guest.MappedVirtualDisks).to.deep.equal([mount.Settings]);
    expect((await refusal(bridge.rpc('ExecuteProcess', { ContainerId: NULL_ID }))).hresult).to.equal(E_NOTIMPL);
    bridge.close();
  });

  it('bridge faults: fail one resource type, unknown id, oversized, delayed, dropped mid-RPC (then redialled), unsolicited notification', async () => {
    const { system, bridge } = await bootLcow();
    configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', resourceType: 'VPMemDevice', hr: 0x80070057 }] });
    expect((await bridge.modify(1n, { ResourceType: 'VPMemDevice', Settings: { MountPath: '/p' } })).Result).to.equal(0x80070057 | 0);

    configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', nth: 1, unknownId: true }] });
    bridge.send(RPC.ModifySettings, 2n, { ContainerId: NULL_ID, Request: { ResourceType: 'Bogus' } });
    expect((await bridge.next())!.id).to.not.equal(2n);

    configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', nth: 1, oversized: true }] });
    bridge.send(RPC.ModifySettings, 3n, { ContainerId: NULL_ID, Request: { ResourceType: 'Bogus' } });
    expect((await bridge.next())!.size).to.be.greaterThan(0x10000);

    // a parked answer is overtaken by a later one (responses match by id, not by order)
    configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', nth: 1, hang: true }] });
    bridge.send(RPC.ModifySettings, 4n, { ContainerId: NULL_ID, Request: { ResourceType: 'Bogus' } });
    expect((await bridge.modify(5n, { ResourceType: 'Bogus' })).Result).to.equal(E_FAIL);
    configureSimulator({ releaseHangs: true });
    expect((await bridge.next())!.id).to.equal(4n);
    // a delayed answer comes no sooner than its delay
    configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', nth: 1, delayMs: 150 }] });
    const sent = performance.now();
    expect((await bridge.modify(6n, { ResourceType: 'Bogus' })).Result).to.equal(E_FAIL);
    expect(performance.now() - sent).to.be.at.least(140);

    configureSimulator({ guestNotify: { systemId: system.id } });
    const note = (await bridge.next())!;
    expect(note.type).to.equal(CONTAINER_NOTIFICATION);
    expect(note.id).to.equal(0n);

    const rid = await runtimeIdOf(system);
    const again = await dir.listen(rid, SERVICE.lcowGcs);
    configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', nth: 1, drop: true }] });
    bridge.send(RPC.ModifySettings, 7n, { ContainerId: NULL_ID, Request: mvd('Add', 1) });
    expect(await bridge.next()).to.equal(undefined);
    await bridge.closed;
    const second = new BridgeConnection(await again.accept());
    expect((await second.modify(0n, mvd('Add', 1))).Result).to.equal(E_NOTIMPL); // negotiate first
    expect((await second.negotiate()).Result).to.equal(0);
    expect((await readSimulatorState(system)).Guest.MappedVirtualDisks).to.deep.equal([]); // the dropped request was not applied
    second.close();
  });

  it('guestDial "never": nobody dials until it is set back to "auto"', async () => {
    configureSimulator({ guestDial: 'never' });
    const system = await createTestSystem({ os: 'windows', start: false, guestConnection: false });
    const gcs = await dir.listen(await runtimeIdOf(system), SERVICE.wcowGcs);
    await system.start();
    const dialsBefore = simulatorStats().Guest.Dials;
    const early = await Promise.race([gcs.accept().then(() => 'dialled'), delay(300).then(() => 'silent')]);
    expect(early).to.equal('silent'); // 300 ms bounds a negative check, it synchronises nothing
    expect(simulatorStats().Guest.Dials).to.equal(dialsBefore);
    configureSimulator({ guestDial: 'auto' });
    new BridgeConnection(await gcs.accept()).close();
  });

  it('guestRequestWithoutGuestConnection "refuse": HCS refuses a GuestRequest without GuestConnection, nothing applied', async () => {
    const system = await createTestSystem({ os: 'linux', guestConnection: false });
    configureSimulator({ guestRequestWithoutGuestConnection: 'refuse' });
    const err = await rejection(
      system.modify({ ResourcePath: scsiPath(2), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: 'C:\\d.vhdx' }, GuestRequest: mvd('Add', 2) }),
    );
    expect(err).to.be.instanceOf(HcsError);
    expect((err as HcsError).hresult).to.equal(HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION);
    expect((await readSimulatorState(system)).HotAdded).to.equal(0);
    configureSimulator({ guestRequestWithoutGuestConnection: 'accept' });
  });
});
