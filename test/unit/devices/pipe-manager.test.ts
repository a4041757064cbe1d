import { expect } from 'chai';
import { deviceKit, rejectsWithCode } from './device-test-kit.js';

describe('PipeManager', () => {
  it('A7: Add/Remove at MappedPipes/<host pipe path> without Settings; shared by two owners', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const a = await kit.pipes.acquire({ hostPath: '\\\\.\\pipe\\docker_engine' });
    const b = await kit.pipes.acquire({ hostPath: '\\\\.\\pipe\\docker_engine' });
    expect(a.value).to.deep.equal({
      hostPath: '\\\\.\\pipe\\docker_engine',
      guestPath: '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\IPC$\\docker_engine',
    });
    expect(kit.pipes.describe().map((r) => r.refCount)).to.deep.equal([2]);
    await a.release();
    await b.release();
    expect(kit.docs()).to.deep.equal([
      { ResourcePath: 'VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\docker_engine', RequestType: 'Add' },
      { ResourcePath: 'VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\docker_engine', RequestType: 'Remove' },
    ]);
  });

  it('a failed Remove is retried by release()', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const a = await kit.pipes.acquire({ hostPath: '\\\\.\\pipe\\p' });
    kit.hcs.failNext((c) => (c.doc as { RequestType?: string }).RequestType === 'Remove');
    await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
    await a.release();
    expect(kit.pipes.describe()).to.deep.equal([]);
  });

  it('LCOW → NOT_SUPPORTED', async () => {
    const kit = await deviceKit({ os: 'linux' });
    await rejectsWithCode(kit.pipes.acquire({ hostPath: '\\\\.\\pipe\\p' }), 'NOT_SUPPORTED');
  });

  for (const hostPath of ['', 'C:\\pipe\\x', '\\\\.\\pipe\\', '\\\\.\\pipe\\a\\b', '\\\\.\\pipe\\a\0']) {
    it(`invalid pipe path ${JSON.stringify(hostPath)} → INVALID_ARGUMENT, no HCS call`, async () => {
      const kit = await deviceKit({ os: 'windows' });
      await rejectsWithCode(kit.pipes.acquire({ hostPath }), 'INVALID_ARGUMENT');
      expect(kit.docs()).to.deep.equal([]);
    });
  }
});
