// Plan9, VSMB and mapped-pipe adoption (crash recovery, docs/recovery.md): names are claimed and
// never reused, releases send what the original manager would have sent.
import { expect } from 'chai';
import { forgetFirstProcess, restartedManagers } from './adopt-kit.js';
import { deviceKit, rejectsWithCode } from './device-test-kit.js';

describe('Plan9Manager.adopt (recovery)', () => {
  it('adopts directory and single-file shares with no HCS call; new names continue after them', async () => {
    const kit = await deviceKit({ os: 'linux' });
    kit.hostFs.dir('/data').file('/cfg/app.conf', 10).dir('/other').dir('/tmp1');
    const tmp = await kit.plan9.acquire({ hostPath: '/tmp1', readOnly: true });
    const dir = await kit.plan9.acquire({ hostPath: '/data', readOnly: false });
    const file = await kit.plan9.acquire({ hostPath: '/cfg/app.conf', readOnly: true });
    await tmp.release(); // name "0" was used and must never come back
    const { plan9 } = restartedManagers(kit);
    const calls = kit.hcs.calls.length;
    const adoptedDir = await plan9.adopt({ hostPath: '/data', readOnly: false }, dir.value);
    const adoptedFile = await plan9.adopt({ hostPath: '/cfg/app.conf', readOnly: true }, file.value);
    expect(kit.hcs.calls.length).to.equal(calls);
    expect([adoptedDir.value, adoptedFile.value]).to.deep.equal([dir.value, file.value]);
    expect(adoptedFile.value.guestPath).to.equal('/run/mounts/plan9/2/app.conf');
    // Read-only next to the adopted read-write share of /data: a second share (as hcsshim).
    const readOnly = await plan9.acquire({ hostPath: '/data', readOnly: true });
    expect(readOnly.value.name).to.equal('3');
    await readOnly.release();
    const next = await plan9.acquire({ hostPath: '/other', readOnly: true });
    expect(next.value.name).to.equal('4');
    plan9.reserveNames(10);
    await next.release();
    const later = await plan9.acquire({ hostPath: '/other', readOnly: true });
    expect(later.value.name).to.equal('10');
    for (const l of [later, adoptedFile, adoptedDir]) await l.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, [dir, file]);
  });

  it('rejects a host path recorded under two names', async () => {
    const kit = await deviceKit({ os: 'linux' });
    kit.hostFs.dir('/data');
    const dir = await kit.plan9.acquire({ hostPath: '/data', readOnly: false });
    const { plan9 } = restartedManagers(kit);
    const adopted = await plan9.adopt({ hostPath: '/data', readOnly: false }, dir.value);
    await rejectsWithCode(plan9.adopt({ hostPath: '/data', readOnly: false }, { ...dir.value, name: '7' }), 'RECOVERY_FAILED');
    await rejectsWithCode(plan9.adopt({ hostPath: '/x', readOnly: false }, { ...dir.value, name: 's1' }), 'RECOVERY_FAILED');
    expect(plan9.describe().map((r) => [r.slot, r.refCount])).to.deep.equal([['0', 1]]);
    await adopted.release();
    await forgetFirstProcess(kit, [dir]);
  });
});

describe('VsmbManager.adopt (recovery)', () => {
  it('adopts directory and restricted single-file shares; new names continue; AllowedFiles shrink on release', async () => {
    const kit = await deviceKit({ os: 'windows', vsmbNoDirectMap: true });
    kit.hostFs.dir('C:\\layers\\base').file('C:\\cfg\\a.conf', 1).file('C:\\cfg\\b.conf', 1).dir('C:\\other');
    const layer = await kit.vsmb.acquire({ hostPath: 'C:\\layers\\base', readOnly: true, layer: true });
    const a = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\a.conf', readOnly: true });
    const b = await kit.vsmb.acquire({ hostPath: 'C:\\cfg\\b.conf', readOnly: true });
    const { vsmb } = restartedManagers(kit);
    const calls = kit.hcs.calls.length;
    const adopted = [
      await vsmb.adopt({ hostPath: 'C:\\layers\\base', readOnly: true, layer: true }, layer.value),
      await vsmb.adopt({ hostPath: 'C:\\cfg\\a.conf', readOnly: true }, a.value),
      await vsmb.adopt({ hostPath: 'C:\\cfg\\b.conf', readOnly: true }, b.value),
    ];
    expect(kit.hcs.calls.length).to.equal(calls);
    expect(adopted.map((l) => l.value)).to.deep.equal([layer.value, a.value, b.value]);
    expect(vsmb.describe().map((r) => [r.kind, r.slot, r.refCount])).to.deep.equal(kit.vsmb.describe().map((r) => [r.kind, r.slot, r.refCount]));
    // The first process is gone (dropping its VSMB bookkeeping still sends its AllowedFiles Update).
    await forgetFirstProcess(kit, [a, b, layer]);
    const { Options: options } = kit.system.host.get('VirtualMachine/Devices/VirtualSmb/Shares/s2') as { Options: unknown };
    const other = await vsmb.acquire({ hostPath: 'C:\\other', readOnly: true });
    expect(other.value.name).to.equal('s3');
    const start = kit.docs().length;
    await adopted[1]!.release();
    expect(kit.docs().slice(start)).to.deep.equal([
      {
        ResourcePath: 'VirtualMachine/Devices/VirtualSmb/Shares',
        RequestType: 'Update',
        Settings: { Name: 's2', Path: 'C:\\cfg', Options: options, AllowedFiles: ['C:\\cfg\\b.conf'] },
      },
    ]);
    for (const l of [other, adopted[2]!, adopted[0]!]) await l.release();
    expect(kit.system.attached()).to.deep.equal([]);
  });

  it('rejects a directory recorded under two names', async () => {
    const kit = await deviceKit({ os: 'windows', vsmbNoDirectMap: true });
    kit.hostFs.dir('C:\\d');
    const d = await kit.vsmb.acquire({ hostPath: 'C:\\d', readOnly: true });
    const { vsmb } = restartedManagers(kit);
    const adopted = await vsmb.adopt({ hostPath: 'C:\\d', readOnly: true }, d.value);
    await rejectsWithCode(vsmb.adopt({ hostPath: 'C:\\d', readOnly: true }, { ...d.value, name: 's9' }), 'RECOVERY_FAILED');
    await rejectsWithCode(vsmb.adopt({ hostPath: 'C:\\e', readOnly: true }, { ...d.value, name: '12' }), 'RECOVERY_FAILED');
    await adopted.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, [d]);
  });
});

describe('PipeManager.adopt (recovery)', () => {
  it('adopts a mapped pipe with no HCS call and removes it on the last release', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const pipe = await kit.pipes.acquire({ hostPath: '\\\\.\\pipe\\docker' });
    const { pipes } = restartedManagers(kit);
    const calls = kit.hcs.calls.length;
    const adopted = await pipes.adopt({ hostPath: '\\\\.\\pipe\\docker' }, pipe.value);
    const shared = await pipes.acquire({ hostPath: '\\\\.\\pipe\\docker' });
    expect(kit.hcs.calls.length).to.equal(calls);
    expect(adopted.value).to.deep.equal(pipe.value);
    await shared.release();
    await adopted.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, [pipe]);
  });
});
