import { expect } from 'chai';
import type { ScsiDiskRequest } from '../../../src/devices/device-types.js';
import { deviceKit } from '../devices/device-test-kit.js';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import type { HostFs } from '../../../src/core/host-fs.js';
import type { UvmErrorCode } from '../../../src/core/errors.js';
import { planMounts, type PlannedMount } from '../../../src/oci/mount-planner.js';
import type { OciMount, OciSpec } from '../../../src/oci/oci-spec.js';
import { fakeFacts } from '../devices/device-test-kit.js';
import { expectCode } from '../../fakes/expect-code.js';
import type { UvmFacts } from '../../../src/devices/device-types.js';

function hostFs(): FakeHostFs {
  return new FakeHostFs()
    .dir('/data')
    .file('/cfg/app.conf', 10)
    .file('/disks/d.vhdx', 1 << 20)
    .dir('C:\\data')
    .file('C:\\cfg\\app.json', 10);
}

async function planOne(os: 'linux' | 'windows', mount: OciMount, facts: Partial<UvmFacts> = {}): Promise<PlannedMount> {
  const plan = await planMounts({ mounts: [mount] }, fakeFacts(os, facts), 'c1', hostFs());
  expect(plan).to.have.length(1);
  return plan[0]!;
}

async function planError(os: 'linux' | 'windows', mount: unknown, code: UvmErrorCode, facts: Partial<UvmFacts> = {}): Promise<void> {
  const first: OciMount = os === 'linux' ? { destination: '/ok', type: 'tmpfs', source: 'tmpfs' } : { destination: 'C:\\ok', source: 'sandbox://ok' };
  const spec = { mounts: [first, mount as OciMount] };
  const err = await expectCode(planMounts(spec, fakeFacts(os, facts), 'c1', hostFs()), code);
  expect(err.details.mountIndex).to.equal(1);
}

describe('planMounts', () => {
  describe('LCOW (spec §6.2)', () => {
    for (const mount of [
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] },
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/x', source: '/does/not/exist' },
      { destination: '/y', type: '', source: 'relative' },
    ] as OciMount[]) {
      it(`passes a ${mount.type || 'typeless'} mount (${mount.destination}) through untouched`, async () => {
        const planned = await planOne('linux', mount);
        expect(planned).to.deep.equal({ kind: 'keep', index: 0, mount, reason: 'not-a-host-mount' });
      });
    }

    it('plans a directory bind mount as a writable Plan9 share', async () => {
      const planned = await planOne('linux', { destination: '/d', type: 'bind', source: '/data', options: ['rbind'] });
      expect(planned).to.deep.include({ kind: 'device', device: 'plan9', readOnly: false, hostKind: 'directory', rewriteType: 'bind' });
      expect((planned as { request: unknown }).request).to.deep.equal({ hostPath: '/data', readOnly: false });
    });

    it('plans a file bind mount with an RO option (any case) as a read-only Plan9 share', async () => {
      const planned = await planOne('linux', { destination: '/etc/app.conf', type: 'bind', source: '/cfg/app.conf', options: ['RO'] });
      expect(planned).to.deep.include({ kind: 'device', device: 'plan9', readOnly: true, hostKind: 'file' });
      expect((planned as { request: unknown }).request).to.deep.equal({ hostPath: '/cfg/app.conf', readOnly: true });
    });

    it('does not treat an option merely containing "ro" as read-only', async () => {
      const planned = await planOne('linux', { destination: '/d', type: 'bind', source: '/data', options: ['rorw', 'rro'] });
      expect(planned).to.deep.include({ readOnly: false });
    });

    it('accepts an EVD source without the evd:// prefix (as hcsshim), and attaches <type>/<path> as an EVD', async () => {
      const planned = await planOne('linux', { destination: '/disk', type: 'extensible-virtual-disk', source: 'space/vol1' });
      expect((planned as { request: { hostPath: string; type: string } }).request).to.deep.include({ hostPath: 'space/vol1', type: 'ExtensibleVirtualDisk' });
      const kit = await deviceKit({ os: 'linux' });
      const lease = await kit.scsi.acquire((planned as { request: ScsiDiskRequest }).request);
      expect(kit.docs()[0]).to.deep.include({ Settings: { Type: 'ExtensibleVirtualDisk', Path: 'vol1', ExtensibleVirtualDiskType: 'space' } });
      await lease.release();
    });

    const disks: [string, string, boolean][] = [
      ['virtual-disk', 'VirtualDisk', true],
      ['physical-disk', 'PassThru', true],
      ['extensible-virtual-disk', 'ExtensibleVirtualDisk', false],
    ];
    for (const [type, attachType, grant] of disks) {
      it(`plans a ${type} mount on SCSI with the mount options (grant: ${grant}), type := none`, async () => {
        const source = type === 'extensible-virtual-disk' ? 'evd://space/vol1' : type === 'physical-disk' ? '\\\\.\\PHYSICALDRIVE2' : '/disks/d.vhdx';
        const planned = await planOne('linux', { destination: '/disk', type, source, options: ['ro', 'noatime'] });
        expect(planned).to.deep.include({ kind: 'device', device: 'scsi', readOnly: true, rewriteType: 'none' });
        expect((planned as { request: unknown }).request).to.deep.equal({
          hostPath: source,
          type: attachType,
          readOnly: true,
          grantVmAccess: grant,
          mount: { options: ['ro', 'noatime'] },
        });
      });
    }

    it('exposes a disk as a block device for a blockdev:// destination (type := bind)', async () => {
      const planned = await planOne('linux', { destination: 'blockdev:///dev/blk', type: 'virtual-disk', source: '/disks/d.vhdx' });
      expect(planned).to.deep.include({ kind: 'device', device: 'scsi', readOnly: false, rewriteType: 'bind' });
      expect((planned as { request: { mount: unknown } }).request.mount).to.deep.equal({ blockDev: true });
    });

    for (const source of ['sandbox://shared/x', 'sandbox-tmp://scratch', 'uvm:///run/thing', 'hugepages://2M/hp']) {
      it(`keeps a ${source.split('://')[0]}:// source for the guest to resolve`, async () => {
        const mount = { destination: '/m', type: 'bind', source };
        expect(await planOne('linux', mount)).to.deep.equal({ kind: 'keep', index: 0, mount, reason: 'guest-source' });
      });
    }

    it('reads nothing from the host but bind sources', async () => {
      const fs = hostFs();
      await planMounts(
        {
          mounts: [
            { destination: '/a', type: 'virtual-disk', source: '/disks/none.vhdx' },
            { destination: '/b', type: 'bind', source: 'sandbox://x' },
            { destination: '/c', type: 'bind', source: '/data' },
          ],
        },
        fakeFacts('linux'),
        'c1',
        fs,
      );
      expect(fs.lookups).to.deep.equal(['/data']);
    });

    const errors: [string, unknown, UvmErrorCode, Partial<UvmFacts>?][] = [
      ['a bind mount without a source', { destination: '/d', type: 'bind' }, 'INVALID_SPEC'],
      ['a disk mount without a destination', { type: 'virtual-disk', source: '/disks/d.vhdx' }, 'INVALID_SPEC'],
      ['a mount that is not an object', null, 'INVALID_SPEC'],
      ['hugepages with one component', { destination: '/h', type: 'bind', source: 'hugepages://2M' }, 'INVALID_SPEC'],
      ['hugepages of another size', { destination: '/h', type: 'bind', source: 'hugepages://1G/hp' }, 'INVALID_SPEC'],
      ['a bind mount with a blockdev:// destination', { destination: 'blockdev:///dev/x', type: 'bind', source: '/data' }, 'INVALID_SPEC'],
      ['a relative bind source', { destination: '/d', type: 'bind', source: 'data' }, 'INVALID_ARGUMENT'],
      ['a relative disk source', { destination: '/d', type: 'virtual-disk', source: 'd.vhdx' }, 'INVALID_ARGUMENT'],
      ['a malformed EVD source', { destination: '/d', type: 'extensible-virtual-disk', source: 'evd://nopath' }, 'INVALID_ARGUMENT'],
      ['a bind destination with ..', { destination: '/a/../etc', type: 'bind', source: '/data' }, 'INVALID_ARGUMENT'],
      ['a tmpfs destination with ..', { destination: '../x', type: 'tmpfs', source: 'tmpfs' }, 'INVALID_ARGUMENT'],
      ['a sandbox:// source with ..', { destination: '/s', type: 'bind', source: 'sandbox://../../etc' }, 'INVALID_ARGUMENT'],
      ['a NUL in a bind source', { destination: '/d', type: 'bind', source: '/da\0ta' }, 'INVALID_ARGUMENT'],
      ['a missing bind source', { destination: '/d', type: 'bind', source: '/nope' }, 'NOT_FOUND'],
      ['a writable bind on a UVM denying writable shares', { destination: '/d', type: 'bind', source: '/data' }, 'ACCESS_DENIED', { noWritableFileShares: true }],
    ];
    for (const [what, mount, code, facts] of errors) {
      it(`rejects ${what} with ${code} naming the mount index`, () => planError('linux', mount, code, facts));
    }

    it('allows a read-only bind on a UVM denying writable shares', async () => {
      const planned = await planOne('linux', { destination: '/d', type: 'bind', source: '/data', options: ['ro'] }, { noWritableFileShares: true });
      expect(planned).to.deep.include({ device: 'plan9', readOnly: true });
    });
  });

  describe('WCOW (spec §6.3)', () => {
    it('plans a typeless directory mount as a VSMB share with a MappedDirectory', async () => {
      const planned = await planOne('windows', { destination: 'C:\\data', source: 'C:\\data' });
      expect(planned).to.deep.include({ kind: 'device', device: 'vsmb', readOnly: false, hostKind: 'directory', containerEntry: 'mapped-directory', rewriteType: undefined });
      expect((planned as { request: unknown }).request).to.deep.equal({ hostPath: 'C:\\data', readOnly: false });
    });

    it('plans a read-only single file as a VSMB share of that file', async () => {
      const planned = await planOne('windows', { destination: 'C:\\app.json', type: '', source: 'C:\\cfg\\app.json', options: ['ro'] });
      expect(planned).to.deep.include({ device: 'vsmb', readOnly: true, hostKind: 'file' });
    });

    for (const [type, attachType, grant] of [
      ['virtual-disk', 'VirtualDisk', true],
      ['physical-disk', 'PassThru', true],
      ['extensible-virtual-disk', 'ExtensibleVirtualDisk', false],
    ] as const) {
      it(`plans a ${type} mount on SCSI with an empty mount config and a MappedDirectory`, async () => {
        const source = type === 'extensible-virtual-disk' ? 'evd://space/vol' : 'C:\\disks\\d.vhdx';
        const planned = await planOne('windows', { destination: 'C:\\disk', type, source, options: ['ro'] });
        expect(planned).to.deep.include({ kind: 'device', device: 'scsi', readOnly: true, containerEntry: 'mapped-directory', rewriteType: undefined });
        expect((planned as { request: unknown }).request).to.deep.equal({ hostPath: source, type: attachType, readOnly: true, grantVmAccess: grant, mount: {} });
      });
    }

    it('maps sandbox://x to C:\\SandboxMounts\\x', async () => {
      const planned = await planOne('windows', { destination: 'C:\\s', source: 'sandbox://cache\\a' });
      expect(planned).to.deep.include({ kind: 'guest', source: 'C:\\SandboxMounts\\cache\\a', containerEntry: 'mapped-directory' });
    });

    it('maps a host named pipe through the pipe manager', async () => {
      const planned = await planOne('windows', { destination: '\\\\.\\pipe\\in', source: '\\\\.\\pipe\\docker_engine' });
      expect(planned).to.deep.include({ kind: 'device', device: 'pipe', containerEntry: 'mapped-pipe' });
      expect((planned as { request: unknown }).request).to.deep.equal({ hostPath: '\\\\.\\pipe\\docker_engine' });
    });

    it('maps uvm://\\\\.\\pipe\\x to a pipe of the pod inside the UVM, with no host resource', async () => {
      const planned = await planOne('windows', { destination: '\\\\.\\pipe\\x', source: 'uvm://\\\\.\\pipe\\x' });
      expect(planned).to.deep.include({ kind: 'guest', source: '\\\\.\\pipe\\uvm-w\\x', containerEntry: 'mapped-pipe' });
    });

    const errors: [string, unknown, UvmErrorCode, Partial<UvmFacts>?][] = [
      ['a bind mount', { destination: 'C:\\d', type: 'bind', source: 'C:\\data' }, 'INVALID_SPEC'],
      ['a tmpfs mount', { destination: 'C:\\d', type: 'tmpfs', source: 'tmpfs' }, 'INVALID_SPEC'],
      ['a mount without a source', { destination: 'C:\\d' }, 'INVALID_SPEC'],
      ['a uvm:// source that is not a pipe', { destination: 'C:\\d', source: 'uvm://C:\\x' }, 'INVALID_SPEC'],
      ['a pipe destination with a directory source', { destination: '\\\\.\\pipe\\p', source: 'C:\\data' }, 'INVALID_SPEC'],
      ['a pipe source with a directory destination', { destination: 'C:\\p', source: '\\\\.\\pipe\\p' }, 'INVALID_SPEC'],
      ['an empty sandbox:// source', { destination: 'C:\\s', source: 'sandbox://' }, 'INVALID_SPEC'],
      ['a sandbox:// source with ..', { destination: 'C:\\s', source: 'sandbox://..\\x' }, 'INVALID_ARGUMENT'],
      ['a destination with ..', { destination: 'C:\\a\\..\\b', source: 'C:\\data' }, 'INVALID_ARGUMENT'],
      ['a relative source', { destination: 'C:\\d', source: 'data' }, 'INVALID_ARGUMENT'],
      ['a missing source', { destination: 'C:\\d', source: 'C:\\nope' }, 'NOT_FOUND'],
      ['a writable share on a UVM denying them', { destination: 'C:\\d', source: 'C:\\data' }, 'ACCESS_DENIED', { noWritableFileShares: true }],
    ];
    for (const [what, mount, code, facts] of errors) {
      it(`rejects ${what} with ${code} naming the mount index`, () => planError('windows', mount, code, facts));
    }
  });

  it('plans one entry per mount, in order, with their indices', async () => {
    const spec: OciSpec = {
      mounts: [
        { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' },
        { destination: '/d', type: 'bind', source: '/data' },
        { destination: '/v', type: 'virtual-disk', source: '/disks/d.vhdx' },
      ],
    };
    const plan = await planMounts(spec, fakeFacts('linux'), 'c1', hostFs());
    expect(plan.map((p) => [p.index, p.kind])).to.deep.equal([
      [0, 'keep'],
      [1, 'device'],
      [2, 'device'],
    ]);
  });

  it('stats every mount at once, and still reports the first bad mount in spec order', async () => {
    const inner = hostFs();
    let inFlight = 0;
    let most = 0;
    const slowFirst: HostFs = {
      // mounts[0] answers last: its error must still win over the later mounts' errors.
      stat: async (path) => {
        inFlight++;
        most = Math.max(most, inFlight);
        for (let i = 0; i < (path === '/missing-0' ? 5 : 1); i++) await Promise.resolve();
        inFlight--;
        return inner.stat(path);
      },
      realpath: (path) => inner.realpath(path),
    };
    const spec: OciSpec = {
      mounts: [
        { destination: '/a', type: 'bind', source: '/missing-0' },
        { destination: '/b', type: 'bind', source: '/missing-1' },
        { destination: '/c', type: 'bind', source: '/data' },
      ],
    };
    const err = await expectCode(planMounts(spec, fakeFacts('linux'), 'c1', slowFirst), 'NOT_FOUND');
    expect(err.details.mountIndex).to.equal(0);
    expect(most, 'the stats ran at once').to.equal(3);
  });

  it('plans no mounts when the spec has none', async () => {
    expect(await planMounts({}, fakeFacts('linux'), 'c1', hostFs())).to.deep.equal([]);
  });

  it('rejects mounts that are not an array with INVALID_SPEC', async () => {
    await expectCode(planMounts({ mounts: {} as unknown as OciMount[] }, fakeFacts('linux'), 'c1', hostFs()), 'INVALID_SPEC');
  });

  for (const id of ['', 'a/b', 'a\\b', '..', 'a..b', 'x'.repeat(129), 'a b']) {
    it(`rejects the container id ${JSON.stringify(id.slice(0, 12))} with INVALID_ARGUMENT`, async () => {
      await expectCode(planMounts({}, fakeFacts('linux'), id, hostFs()), 'INVALID_ARGUMENT');
    });
  }
});
