import { expect } from 'chai';
import { deviceKit, rejectsWithCode, settle, type DeviceKit } from './device-test-kit.js';

const SHARES = 'VirtualMachine/Devices/VirtualSmb/Shares';
const PREFIX = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';
const RO = { ReadOnly: true, ShareRead: true, CacheIo: true, PseudoOplocks: true };

async function wcow(over: Record<string, unknown> = {}): Promise<DeviceKit> {
  const kit = await deviceKit({ os: 'windows', ...over });
  kit.hostFs.dir('C:\\layers\\abc').dir('C:\\cfg').file('C:\\cfg\\a.json').file('C:\\cfg\\b.json').file('C:\\cfg\\c.json');
  kit.hostFs.dir('C:\\data').dir('C:\\data\\').dir('C:\\data2');
  return kit;
}

describe('VsmbManager', () => {
  it('A3: a layer share (RO defaults + TakeBackupPrivilege), file shares growing through Update, removal', async () => {
    const kit = await wcow({ vsmbNoDirectMap: false });
    const layer = await kit.vsmb.acquire({ hostPath: 'C:\\layers\\abc', readOnly: true, layer: true });
    const a = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\a.json', readOnly: true });
    const b = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\b.json', readOnly: true });
    expect(layer.value).to.deep.equal({
      name: 's1',
      hostPath: 'C:\\layers\\abc',
      readOnly: true,
      sharePath: `${PREFIX}\\s1`,
      guestPath: `${PREFIX}\\s1`,
    });
    expect(b.value).to.deep.equal({
      name: 's2',
      hostPath: 'C:\\cfg\\b.json',
      readOnly: true,
      sharePath: `${PREFIX}\\s2`,
      guestPath: `${PREFIX}\\s2\\b.json`,
    });
    const fileOptions = { ...RO, RestrictFileAccess: true, SingleFileMapping: true };
    expect(kit.docs()).to.deep.equal([
      { ResourcePath: SHARES, RequestType: 'Add', Settings: { Name: 's1', Path: 'C:\\layers\\abc', Options: { ...RO, TakeBackupPrivilege: true } } },
      { ResourcePath: SHARES, RequestType: 'Add', Settings: { Name: 's2', Path: 'C:\\cfg', AllowedFiles: ['C:\\cfg\\a.json'], Options: fileOptions } },
      { ResourcePath: SHARES, RequestType: 'Update', Settings: { Name: 's2', Path: 'C:\\cfg', AllowedFiles: ['C:\\cfg\\a.json', 'C:\\cfg\\b.json'], Options: fileOptions } },
    ]);
    // Deliberate improvement: the share stays for b.json, so a.json leaves AllowedFiles.
    await a.release();
    expect(kit.docs()[3]).to.deep.equal({
      ResourcePath: SHARES,
      RequestType: 'Update',
      Settings: { Name: 's2', Path: 'C:\\cfg', AllowedFiles: ['C:\\cfg\\b.json'], Options: fileOptions },
    });
    await b.release();
    await layer.release();
    // Direct-mapped (NoDirectmap false): kept at refcount 0, no Remove yet.
    expect(kit.docs()).to.have.length(4);
    expect(kit.vsmb.describe().map((r) => [r.slot, r.refCount, r.state])).to.have.deep.members([
      ['s2', 0, 'kept'],
      ['s1', 0, 'kept'],
    ]);
    // Never removed while the VM runs (no API sends that Remove); they go with the VM.
    kit.lifecycle.markTerminating();
    kit.lifecycle.markTerminated();
    expect(kit.docs()).to.have.length(4);
    expect(kit.vsmb.describe()).to.deep.equal([]);
    kit.system.host.clear(); // the VM is gone
  });

  it('NoDirectmap shares (vsmbNoDirectMap / fullyPhysicallyBacked) are removed on last release', async () => {
    for (const over of [{ vsmbNoDirectMap: true }, { vsmbNoDirectMap: false, fullyPhysicallyBacked: true }]) {
      const kit = await wcow(over);
      const s = await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: false });
      await s.release();
      expect(kit.docs()).to.deep.equal([
        { ResourcePath: SHARES, RequestType: 'Add', Settings: { Name: 's1', Path: 'C:\\data', Options: { NoDirectmap: true } } },
        { ResourcePath: SHARES, RequestType: 'Remove', Settings: { Name: 's1' } },
      ]);
    }
  });

  it('a kept direct-mapped share is reused by a later acquire without an HCS call, and forgotten on terminate', async () => {
    const kit = await wcow({ vsmbNoDirectMap: false });
    const a = await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: true });
    await a.release();
    const b = await kit.vsmb.acquire({ hostPath: 'C:\\data\\', readOnly: true });
    expect(b.value.name).to.equal('s1');
    expect(kit.docs()).to.have.length(1);
    await b.release();
    kit.lifecycle.markTerminating();
    kit.lifecycle.markTerminated();
    expect(kit.vsmb.describe()).to.deep.equal([]);
    kit.system.host.clear(); // the VM is gone
  });

  it('two owners share a directory share; read-only and read-write are distinct shares', async () => {
    const kit = await wcow();
    const a = await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: true });
    const b = await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: true });
    const rw = await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: false });
    expect([a.value.name, b.value.name, rw.value.name]).to.deep.equal(['s1', 's1', 's2']);
    expect(kit.docs()).to.have.length(2);
    await a.release();
    expect(kit.docs()).to.have.length(2);
    await b.release();
    await rw.release();
    expect(kit.docs()).to.have.length(4);
  });

  it('names are s<hex counter> from s1 and never reused', async () => {
    const kit = await wcow();
    const names: string[] = [];
    for (let i = 0; i < 11; i++) {
      kit.hostFs.dir(`C:\\d${i}`);
      const s = await kit.vsmb.acquire({ hostPath: `C:\\d${i}`, readOnly: true });
      names.push(s.value.name);
      await s.release();
    }
    expect(names).to.deep.equal(['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 'sa', 'sb']);
  });

  it('the same file twice shares one file entry (one Add, no Update)', async () => {
    const kit = await wcow();
    const a = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\a.json', readOnly: true });
    const b = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\a.json', readOnly: true });
    expect(kit.docs()).to.have.length(1);
    await a.release();
    await b.release();
    expect(kit.docs().map((d) => (d as { RequestType: string }).RequestType)).to.deep.equal(['Add', 'Remove']);
  });

  it('Updates of one share are serialised and each carries the whole list', async () => {
    const kit = await wcow();
    const a = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\a.json', readOnly: true });
    const gate = kit.hcs.gate((c) => (c.doc as { RequestType?: string }).RequestType === 'Update');
    const pb = kit.vsmb.acquire({ hostPath: 'C:\\cfg\\b.json', readOnly: true });
    const pc = kit.vsmb.acquire({ hostPath: 'C:\\cfg\\c.json', readOnly: true });
    await settle();
    expect(kit.docs().filter((d) => (d as { RequestType: string }).RequestType === 'Update')).to.have.length(1);
    gate.open();
    const [b, c] = await Promise.all([pb, pc]);
    const updates = kit.docs().filter((d) => (d as { RequestType: string }).RequestType === 'Update');
    const last = updates[updates.length - 1] as { Settings: { AllowedFiles: string[] } };
    expect(last.Settings.AllowedFiles).to.deep.equal(['C:\\cfg\\a.json', 'C:\\cfg\\b.json', 'C:\\cfg\\c.json']);
    expect(kit.system.host.get(`${SHARES}/s1`)).to.deep.include({ AllowedFiles: last.Settings.AllowedFiles });
    for (const l of [a, b, c]) await l.release();
  });

  it('a different share does not wait for a gated Add', async () => {
    const kit = await wcow();
    const gate = kit.hcs.gate((c) => JSON.stringify(c.doc).includes('C:\\\\data2'));
    const slow = kit.vsmb.acquire({ hostPath: 'C:\\data2', readOnly: true });
    await settle();
    const fast = await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: true });
    await fast.release();
    gate.open();
    await (await slow).release();
  });

  it('a failed Update drops the file and leaves the share as it was', async () => {
    const kit = await wcow();
    const a = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\a.json', readOnly: true });
    kit.hcs.failNext((c) => (c.doc as { RequestType?: string }).RequestType === 'Update');
    await rejectsWithCode(kit.vsmb.acquire({ hostPath: 'C:\\cfg\\b.json', readOnly: true }), 'HCS_ERROR');
    expect(kit.vsmb.describe().filter((r) => r.kind === 'vsmb-file')).to.have.length(1);
    const b = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\b.json', readOnly: true });
    await a.release();
    await b.release();
  });

  it('a failed Remove is retried by release()', async () => {
    const kit = await wcow();
    const s = await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: true });
    kit.hcs.failNext((c) => (c.doc as { RequestType?: string }).RequestType === 'Remove');
    await rejectsWithCode(s.release(), 'TEARDOWN_FAILED');
    await s.release();
    expect(kit.vsmb.describe()).to.deep.equal([]);
  });

  it('writable shares are ACCESS_DENIED when noWritableFileShares (no HCS call); read-only are fine', async () => {
    const kit = await wcow({ noWritableFileShares: true });
    await rejectsWithCode(kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: false }), 'ACCESS_DENIED');
    expect(kit.docs()).to.have.length(0);
    await (await kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: true })).release();
  });

  it('LCOW → NOT_SUPPORTED', async () => {
    const kit = await deviceKit({ os: 'linux' });
    await rejectsWithCode(kit.vsmb.acquire({ hostPath: 'C:\\data', readOnly: true }), 'NOT_SUPPORTED');
  });

  it('a missing host path → NOT_FOUND without an HCS call', async () => {
    const kit = await wcow();
    await rejectsWithCode(kit.vsmb.acquire({ hostPath: 'C:\\nope', readOnly: true }), 'NOT_FOUND');
    expect(kit.docs()).to.have.length(0);
  });

  for (const [name, req] of [
    ['empty path', { hostPath: '', readOnly: true }],
    ['relative path', { hostPath: 'data', readOnly: true }],
    ['NUL', { hostPath: 'C:\\da\0ta', readOnly: true }],
    ['writable layer', { hostPath: 'C:\\layers\\abc', readOnly: false, layer: true }],
    ['missing readOnly', { hostPath: 'C:\\data' }],
  ] as const) {
    it(`invalid input: ${name} → INVALID_ARGUMENT, no HCS call, no stat`, async () => {
      const kit = await wcow();
      await rejectsWithCode(kit.vsmb.acquire(req as never), 'INVALID_ARGUMENT');
      expect(kit.docs()).to.have.length(0);
      expect(kit.hostFs.lookups).to.deep.equal([]);
    });
  }
});
