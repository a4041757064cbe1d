import { expect } from 'chai';
import { deviceKit, rejectsWithCode, settle, type DeviceKit } from './device-test-kit.js';

const SHARES = 'VirtualMachine/Devices/Plan9/Shares';

async function lcow(over: Record<string, unknown> = {}): Promise<DeviceKit> {
  const kit = await deviceKit({ os: 'linux', ...over });
  kit.hostFs.dir('C:\\data').file('C:\\data\\app.conf').file('C:\\data\\other.conf').dir('/srv/a').dir('/srv/b');
  return kit;
}

describe('Plan9Manager', () => {
  it('A5: a read-only single file shares its directory restricted to the file (flags 0x85); removal', async () => {
    const kit = await lcow();
    for (const d of ['/srv/a', '/srv/b', '/srv/a']) await (await kit.plan9.acquire({ hostPath: d, readOnly: true })).release();
    const start = kit.docs().length;
    const lease = await kit.plan9.acquire({ hostPath: 'C:\\data\\app.conf', readOnly: true });
    expect(lease.value).to.deep.equal({
      name: '3',
      hostPath: 'C:\\data\\app.conf',
      readOnly: true,
      mountPath: '/run/mounts/plan9/3',
      guestPath: '/run/mounts/plan9/3/app.conf',
    });
    await lease.release();
    expect(kit.docs().slice(start)).to.deep.equal([
      {
        ResourcePath: SHARES,
        RequestType: 'Add',
        Settings: { Name: '3', AccessName: '3', Path: 'C:\\data\\', Port: 564, Flags: 133, AllowedFiles: ['app.conf'] },
        GuestRequest: { RequestType: 'Add', ResourceType: 'MappedDirectory', Settings: { MountPath: '/run/mounts/plan9/3', Port: 564, ShareName: '3', ReadOnly: true } },
      },
      {
        ResourcePath: SHARES,
        RequestType: 'Remove',
        Settings: { Name: '3', AccessName: '3', Port: 564 },
        GuestRequest: { RequestType: 'Remove', ResourceType: 'MappedDirectory', Settings: { MountPath: '/run/mounts/plan9/3', Port: 564, ShareName: '3' } },
      },
    ]);
  });

  it('a writable directory: flags LinuxMetadata only, no AllowedFiles, name "0"', async () => {
    const kit = await lcow();
    const lease = await kit.plan9.acquire({ hostPath: '/srv/a', readOnly: false });
    expect(lease.value.guestPath).to.equal('/run/mounts/plan9/0');
    await lease.release();
    expect(kit.docs()[0]).to.deep.equal({
      ResourcePath: SHARES,
      RequestType: 'Add',
      Settings: { Name: '0', AccessName: '0', Path: '/srv/a', Port: 564, Flags: 4 },
      GuestRequest: { RequestType: 'Add', ResourceType: 'MappedDirectory', Settings: { MountPath: '/run/mounts/plan9/0', Port: 564, ShareName: '0' } },
    });
  });

  it('two owners of one host path share one share; the last release removes it', async () => {
    const kit = await lcow();
    const a = await kit.plan9.acquire({ hostPath: '/srv/a', readOnly: true });
    const b = await kit.plan9.acquire({ hostPath: '/srv/a', readOnly: true });
    expect(b.value).to.deep.equal(a.value);
    expect(kit.plan9.describe()).to.deep.equal([
      { kind: 'plan9-share', key: JSON.stringify(['/srv/a', true, false]), state: 'live', refCount: 2, hostPath: '/srv/a', slot: '0', guestPath: '/run/mounts/plan9/0' },
    ]);
    await a.release();
    expect(kit.docs()).to.have.length(1);
    await b.release();
    expect(kit.docs()).to.have.length(2);
  });

  it('the same host path read-only and read-write is two shares (hcsshim: a share per mount), also while the first is in flight', async () => {
    const kit = await lcow();
    const gate = kit.hcs.gate((c) => c.fn === 'modify');
    const pa = kit.plan9.acquire({ hostPath: '/srv/a', readOnly: true });
    await settle();
    const prw = kit.plan9.acquire({ hostPath: '/srv/a', readOnly: false });
    gate.open();
    const [a, rw] = await Promise.all([pa, prw]);
    expect([a.value.name, a.value.readOnly, rw.value.name, rw.value.readOnly]).to.deep.equal(['0', true, '1', false]);
    expect(kit.docs().map((d) => (d as { Settings: { Flags: number } }).Settings.Flags)).to.deep.equal([0x5, 0x4]);
    await a.release();
    await rw.release();
  });

  it('two files of one directory are two restricted shares, not a conflict', async () => {
    const kit = await lcow();
    const a = await kit.plan9.acquire({ hostPath: 'C:\\data\\app.conf', readOnly: true });
    const b = await kit.plan9.acquire({ hostPath: 'C:\\data\\other.conf', readOnly: false });
    expect([a.value.name, b.value.name]).to.deep.equal(['0', '1']);
    expect((kit.docs()[1] as { Settings: unknown }).Settings).to.deep.equal({
      Name: '1',
      AccessName: '1',
      Path: 'C:\\data\\',
      Port: 564,
      Flags: 0x84,
      AllowedFiles: ['other.conf'],
    });
    await a.release();
    await b.release();
  });

  it('concurrent acquires of one path make one Add; another path does not wait', async () => {
    const kit = await lcow();
    const gate = kit.hcs.gate((c) => JSON.stringify(c.doc).includes('/srv/a'));
    const pa = Promise.all([kit.plan9.acquire({ hostPath: '/srv/a', readOnly: true }), kit.plan9.acquire({ hostPath: '/srv/a', readOnly: true })]);
    await settle();
    const b = await kit.plan9.acquire({ hostPath: '/srv/b', readOnly: true });
    gate.open();
    const leases = [...(await pa), b];
    expect(kit.docs()).to.have.length(2);
    for (const l of leases) await l.release();
  });

  it('a failed Add is compensated and nothing is kept; a failed Remove is retried half by half', async () => {
    const kit = await lcow();
    kit.hcs.failNext((c) => c.fn === 'modify');
    await rejectsWithCode(kit.plan9.acquire({ hostPath: '/srv/a', readOnly: true }), 'HCS_ERROR');
    expect(kit.docs()[1]).to.deep.include({ ResourcePath: SHARES, RequestType: 'Remove' });
    expect(kit.plan9.describe()).to.deep.equal([]);
    const a = await kit.plan9.acquire({ hostPath: '/srv/a', readOnly: false });
    kit.hcs.failNext((c) => (c.doc as { RequestType?: string }).RequestType === 'Remove');
    await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
    await a.release();
    expect(kit.docs().slice(-2)).to.deep.equal([
      { GuestRequest: { RequestType: 'Remove', ResourceType: 'MappedDirectory', Settings: { MountPath: '/run/mounts/plan9/1', Port: 564, ShareName: '1' } } },
      { ResourcePath: SHARES, RequestType: 'Remove', Settings: { Name: '1', AccessName: '1', Port: 564 } },
    ]);
  });

  it('writable shares → ACCESS_DENIED when noWritableFileShares; WCOW → NOT_SUPPORTED', async () => {
    const kit = await lcow({ noWritableFileShares: true });
    await rejectsWithCode(kit.plan9.acquire({ hostPath: '/srv/a', readOnly: false }), 'ACCESS_DENIED');
    expect(kit.docs()).to.deep.equal([]);
    await (await kit.plan9.acquire({ hostPath: '/srv/a', readOnly: true })).release();
    const wcow = await deviceKit({ os: 'windows' });
    await rejectsWithCode(wcow.plan9.acquire({ hostPath: 'C:\\data', readOnly: true }), 'NOT_SUPPORTED');
  });

  for (const [name, req] of [
    ['empty', { hostPath: '', readOnly: true }],
    ['relative', { hostPath: 'srv/a', readOnly: true }],
    ['NUL', { hostPath: '/srv/\0a', readOnly: true }],
    ['readOnly missing', { hostPath: '/srv/a' }],
  ] as const) {
    it(`invalid input (${name}) → INVALID_ARGUMENT, no stat, no HCS call`, async () => {
      const kit = await lcow();
      await rejectsWithCode(kit.plan9.acquire(req as never), 'INVALID_ARGUMENT');
      expect(kit.docs()).to.deep.equal([]);
      expect(kit.hostFs.lookups).to.deep.equal([]);
    });
  }
});
