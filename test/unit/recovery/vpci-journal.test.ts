// Assigned devices (vPCI) in the recovery journal: the VirtualPci Add/Remove documents become
// write-ahead parts, a vPCI lease record claims its device by VMBus GUID and function, and the
// manager adopts it without an HCS call (the crash tests are in test/integration/recovery-sweep).
import { expect } from 'chai';
import { VpciManagerImpl, vpciResourcePath, vpciSettings } from '../../../src/devices/vpci-manager.js';
import { guestRequest, hostRequest } from '../../../src/devices/wire-requests.js';
import { LEASE_CODECS, parseJournal, newJournalDocument, type JsonObject, type LeaseRecord } from '../../../src/recovery/journal-format.js';
import { partChangesOf } from '../../../src/recovery/parts.js';
import { derivedParts, expectedParts, planReconcile } from '../../../src/recovery/reconcile.js';
import { expectCode } from '../../fakes/expect-code.js';
import { detachTablesFromLeakCheck } from '../../support/leak-checks.js';
import { deviceKit, silentLogger } from '../devices/device-test-kit.js';

const GPU = 'PCIP\\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\\6&1a2b3c4d&0&0';
const GUID = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';

function record(id: number, value: { vmbusGuid: string; boot?: boolean; virtualFunction?: number }, owner?: string): LeaseRecord {
  const encoded = LEASE_CODECS.vpci.encode(
    { instancePath: GPU, ...(value.virtualFunction ? { virtualFunction: value.virtualFunction } : {}) },
    { instancePath: GPU, virtualFunction: value.virtualFunction ?? 0, vmbusGuid: value.vmbusGuid, boot: value.boot ?? false },
  );
  return { id, kind: 'vpci', ...(owner ? { owner } : {}), ...encoded };
}

describe('vPCI in the recovery journal', () => {
  it('a VirtualPci Add is a host part keyed by its VMBus GUID; its Remove removes it; the guest VPCIDevice is not a part', () => {
    const add = { ...hostRequest(vpciResourcePath(GUID.toUpperCase()), 'Add', vpciSettings(GPU, 2)), GuestRequest: guestRequest('Add', 'VPCIDevice', { VMBusGUID: GUID }) };
    expect(partChangesOf(add, 'linux')).to.deep.equal([
      {
        op: 'add',
        part: { key: `vpci:${GUID}`, kind: 'vpci-device', half: 'host', settings: { Functions: [{ DeviceInstancePath: GPU, VirtualFunction: 2 }], VMBusGUID: GUID } },
      },
    ]);
    expect(partChangesOf(hostRequest(vpciResourcePath(GUID), 'Remove'), 'windows')).to.deep.equal([{ op: 'remove', key: `vpci:${GUID}`, kind: 'vpci-device', half: 'host' }]);
  });

  it('a record claims the part that assigns its function under its GUID; another function or GUID is not it; a boot device needs no part', () => {
    const part = (fn: JsonObject) => ({ key: `vpci:${GUID}`, kind: 'vpci-device' as const, half: 'host' as const, settings: { Functions: [fn], VMBusGUID: GUID } });
    const plan = (parts: ReturnType<typeof part>[], r: LeaseRecord) => planReconcile({ os: 'linux', records: [r], containers: [], hcs: { state: 'Running', parts } });
    const mine = record(1, { vmbusGuid: GUID });
    expect(plan([part({ DeviceInstancePath: GPU })], mine).adopt.map((r) => r.id)).to.deep.equal([1]);
    // Another virtual function under the same GUID: forgotten, and the part removed.
    const other = plan([part({ DeviceInstancePath: GPU, VirtualFunction: 3 })], mine);
    expect(other.adopt).to.deep.equal([]);
    expect(other.remove.map((p) => p.key)).to.deep.equal([`vpci:${GUID}`]);
    // Gone: forgotten, nothing to remove.
    expect(plan([], mine).forget.map((f) => f.missing)).to.deep.equal([[`vpci:${GUID}`]]);
    // A boot device (create document) is there as long as the VM.
    expect(expectedParts(record(2, { vmbusGuid: GUID, boot: true }), 'linux')).to.deep.equal([]);
    expect(plan([], record(2, { vmbusGuid: GUID, boot: true })).adopt.map((r) => r.id)).to.deep.equal([2]);
    // derivedParts (what a record stands for) is claimed by its own record.
    const derived = derivedParts(record(3, { vmbusGuid: GUID, virtualFunction: 1 }), 'linux');
    expect(plan(derived as ReturnType<typeof part>[], record(3, { vmbusGuid: GUID, virtualFunction: 1 })).adopt.map((r) => r.id)).to.deep.equal([3]);
  });

  it('the record validates when read back; a malformed GUID or function is corrupt', () => {
    const doc = { ...newJournalDocument('vm-1', { os: 'linux' }), nextRecordId: 2, records: [record(1, { vmbusGuid: GUID }, 'c1')] };
    expect(parseJournal(JSON.stringify(doc)).records).to.deep.equal(doc.records);
    for (const bad of [{ vmbusGuid: 'not-a-guid' }, { virtualFunction: 70000 }]) {
      const broken = structuredClone(doc);
      Object.assign(broken.records[0]!.value, bad);
      expect(() => parseJournal(JSON.stringify(broken))).to.throw().with.property('code', 'RECOVERY_FAILED');
    }
  });

  it('a new manager adopts an assignment with no HCS call, shares it by refcount, and removes it once at the last release', async () => {
    const kit = await deviceKit({ os: 'linux' });
    // A process dies in this test: what must end empty is what HCS holds (the kit checks it).
    detachTablesFromLeakCheck();
    // The process that assigned it (and then crashed: its lease is never released).
    const before = await new VpciManagerImpl(kit.config, kit.delivery, silentLogger, kit.lifecycle).acquire({ instancePath: GPU });
    const guid = before.value.vmbusGuid;
    const sent = kit.docs().length;
    const vpci = new VpciManagerImpl(kit.config, kit.delivery, silentLogger, kit.lifecycle);
    const adopted = await vpci.adopt({ instancePath: GPU }, { instancePath: GPU, virtualFunction: 0, vmbusGuid: guid, boot: false });
    expect(adopted.value.vmbusGuid).to.equal(guid);
    const shared = await vpci.acquire({ instancePath: GPU });
    expect(shared.value.vmbusGuid).to.equal(guid);
    // The same function under another GUID cannot be adopted (and the reference is not kept).
    await expectCode(vpci.adopt({ instancePath: GPU }, { instancePath: GPU, virtualFunction: 0, vmbusGuid: GUID, boot: false }), 'RECOVERY_FAILED');
    await adopted.release();
    expect(kit.docs()).to.have.length(sent);
    await shared.release();
    expect(kit.docs().slice(sent)).to.deep.equal([{ ResourcePath: vpciResourcePath(guid), RequestType: 'Remove' }]);
    expect(vpci.describe()).to.deep.equal([]);
  });
});
