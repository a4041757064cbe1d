import { expect } from 'chai';
import sinon from 'sinon';
import { UvmError } from '../../../src/core/errors.js';
import { pendingPromises } from '../../../src/core/pending-promises.js';
import { HcsError, HResult } from '../../../src/hcs/hcs-error.js';
import type { GuestRequest } from '../../../src/hcs/schema.js';
import { deviceKit, rejectsWithCode, settle } from './device-test-kit.js';

const C0 = 'df6d0690-79e5-55b6-a5ec-c1e2f77f580a';
const C1 = '0110f83b-de10-5172-a266-78bca56bf50a';
const att = (c: string, lun: number): string => `VirtualMachine/Devices/Scsi/${c}/Attachments/${lun}`;
const isHostRemove = (c: { fn: string; doc: unknown }): boolean =>
  c.fn === 'modify' && (c.doc as { ResourcePath?: string; RequestType?: string }).RequestType === 'Remove' &&
  (c.doc as { ResourcePath?: string }).ResourcePath !== undefined;
const notFound = (): HcsError => new HcsError({ op: 'HcsModifyComputeSystem', hresult: HResult.HCS_E_SYSTEM_NOT_FOUND });

describe('ScsiManager', () => {
  describe('wire documents (Appendix A)', () => {
    it('A1: LCOW read-only layer: attach, mount, then unmount → unplug → host remove', async () => {
      const kit = await deviceKit({ os: 'linux', reservedScsiSlots: [0, 1] });
      const other = await kit.scsi.acquire({ hostPath: 'C:\\other.vhd', readOnly: true, mount: { options: ['ro'] } });
      const lease = await kit.scsi.acquire({ hostPath: 'C:\\snap\\12\\layer.vhd', readOnly: true, mount: { options: ['ro'] } });
      expect(lease.value).to.deep.equal({
        controller: 0,
        lun: 3,
        hostPath: 'C:\\snap\\12\\layer.vhd',
        readOnly: true,
        type: 'VirtualDisk',
        guestPath: '/run/mounts/scsi/m1',
      });
      await lease.release();
      await other.release();
      const docs = kit.docs();
      expect(docs.slice(2, 7)).to.deep.equal([
        { ResourcePath: att(C0, 3), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: 'C:\\snap\\12\\layer.vhd', ReadOnly: true } },
        { GuestRequest: { RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/mounts/scsi/m1', Lun: 3, ReadOnly: true, Options: ['ro'] } } },
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/mounts/scsi/m1', Lun: 3, ReadOnly: true } } },
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'SCSIDevice', Settings: { Lun: 3 } } },
        { ResourcePath: att(C0, 3), RequestType: 'Remove' },
      ]);
    });

    it('omits controller 0 / LUN 0 and keeps an empty unplug Settings object', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const lease = await kit.scsi.acquire({ hostPath: '/disks/a.vhdx', readOnly: false, mount: {} });
      await lease.release();
      expect(kit.docs()).to.deep.equal([
        { ResourcePath: att(C0, 0), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: '/disks/a.vhdx' } },
        { GuestRequest: { RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/mounts/scsi/m0' } } },
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/mounts/scsi/m0' } } },
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'SCSIDevice', Settings: {} } },
        { ResourcePath: att(C0, 0), RequestType: 'Remove' },
      ]);
    });

    it('LCOW mount carries the full config; unmount only MountPath/ReadOnly/Lun/Partition/Controller/BlockDev', async () => {
      const kit = await deviceKit({ os: 'linux', scsiControllers: 2, reservedScsiSlots: Array.from({ length: 64 }, (_, i) => i) });
      const lease = await kit.scsi.acquire({
        hostPath: '/d/x.vhdx',
        readOnly: true,
        mount: { partition: 2, encrypted: true, options: ['z', 'a'], ensureFilesystem: true, filesystem: 'xfs', blockDev: true },
        guestPath: '/run/gcs/c/abc',
      });
      expect(lease.value).to.include({ controller: 1, lun: 0, guestPath: '/run/gcs/c/abc' });
      await lease.release();
      const docs = kit.docs() as { GuestRequest?: GuestRequest; ResourcePath?: string }[];
      expect(docs[0].ResourcePath).to.equal(att(C1, 0));
      expect(docs[1].GuestRequest!.Settings).to.deep.equal({
        MountPath: '/run/gcs/c/abc',
        Controller: 1,
        Partition: 2,
        ReadOnly: true,
        Encrypted: true,
        Options: ['a', 'z'],
        BlockDev: true,
        EnsureFilesystem: true,
        Filesystem: 'xfs',
      });
      expect(docs[2].GuestRequest!.Settings).to.deep.equal({ MountPath: '/run/gcs/c/abc', Controller: 1, Partition: 2, ReadOnly: true, BlockDev: true });
      expect(docs[3].GuestRequest).to.deep.equal({ RequestType: 'Remove', ResourceType: 'SCSIDevice', Settings: { Controller: 1 } });
    });

    it('A2: WCOW mount {ContainerPath, Lun}; no unplug on release', async () => {
      const kit = await deviceKit({ os: 'windows', reservedScsiSlots: [0] });
      const lease = await kit.scsi.acquire({ hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, mount: {}, grantVmAccess: true });
      expect(lease.value.guestPath).to.equal('c:\\mounts\\scsi\\m0');
      await lease.release();
      expect(kit.docs()).to.deep.equal([
        { ResourcePath: att(C0, 1), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: 'C:\\s\\sandbox.vhdx' } },
        { GuestRequest: { RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { ContainerPath: 'c:\\mounts\\scsi\\m0', Lun: 1 } } },
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'MappedVirtualDisk', Settings: { ContainerPath: 'c:\\mounts\\scsi\\m0', Lun: 1 } } },
        { ResourcePath: att(C0, 1), RequestType: 'Remove' },
      ]);
    });

    it('call priorities: the steps that others follow go first among queued calls (attach 2, mount 1; unmount 2, unplug 1, detach 0)', async () => {
      const priorities = async (os: 'linux' | 'windows'): Promise<(number | undefined)[]> => {
        const kit = await deviceKit({ os });
        const lease = await kit.scsi.acquire({ hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, mount: {} });
        await lease.release();
        return kit.hcs.calls.filter((c) => c.fn === 'modify').map((c) => c.priority);
      };
      // attach, mount, unmount, unplug, detach (the docs are the A1 test's)
      expect(await priorities('linux')).to.deep.equal([2, 1, 2, 1, undefined]);
      // attach, mount, unmount, detach: no unplug in WCOW
      expect(await priorities('windows')).to.deep.equal([2, 1, 1, undefined]);
    });

    it('EVD: evd://<type>/<path> → ExtensibleVirtualDisk, never a VM grant', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const lease = await kit.scsi.acquire({ hostPath: 'evd://space/C:\\pool\\disk1', readOnly: false, grantVmAccess: true });
      expect(lease.value.type).to.equal('ExtensibleVirtualDisk');
      expect(lease.value.guestPath).to.equal(undefined);
      await lease.release();
      expect(kit.hcs.calls.filter((c) => c.fn === 'grant')).to.have.length(0);
      expect(kit.docs()[0]).to.deep.equal({
        ResourcePath: att(C0, 0),
        RequestType: 'Add',
        Settings: { Type: 'ExtensibleVirtualDisk', Path: 'C:\\pool\\disk1', ExtensibleVirtualDiskType: 'space' },
      });
    });

    it('PassThru attach', async () => {
      const kit = await deviceKit({ os: 'windows' });
      const lease = await kit.scsi.acquire({ hostPath: '\\\\.\\PHYSICALDRIVE3', type: 'PassThru', readOnly: false });
      await lease.release();
      expect((kit.docs()[0] as { Settings: unknown }).Settings).to.deep.equal({ Type: 'PassThru', Path: '\\\\.\\PHYSICALDRIVE3' });
    });
  });

  describe('VM access grant', () => {
    it('grants before attaching when asked, on every call, with the UVM id', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/s/sandbox.vhdx', readOnly: false, grantVmAccess: true });
      const b = await kit.scsi.acquire({ hostPath: '/s/sandbox.vhdx', readOnly: false, grantVmAccess: true });
      const fns = kit.hcs.calls.filter((c) => c.fn === 'grant' || c.fn === 'modify').map((c) => c.fn);
      expect(fns).to.deep.equal(['grant', 'modify', 'grant']);
      expect(kit.hcs.calls.find((c) => c.fn === 'grant')).to.deep.include({ id: 'uvm1', doc: { path: '/s/sandbox.vhdx' } });
      await a.release();
      await b.release();
    });

    it('does not grant when not asked', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/l/layer.vhd', readOnly: true });
      await a.release();
      expect(kit.hcs.calls.filter((c) => c.fn === 'grant')).to.have.length(0);
    });
  });

  describe('refcounting', () => {
    it('two owners of one disk share the attachment and the mount; the last release removes', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const req = { hostPath: '/l/layer.vhd', readOnly: true, mount: { options: ['ro'] } };
      const a = await kit.scsi.acquire(req);
      const b = await kit.scsi.acquire(req);
      expect(b.value).to.deep.equal(a.value);
      expect(kit.docs()).to.have.length(2);
      expect(kit.scsi.describe().map((r) => [r.kind, r.refCount])).to.deep.equal([
        ['scsi-attachment', 2],
        ['scsi-mount', 2],
      ]);
      await a.release();
      expect(kit.docs()).to.have.length(2);
      await b.release();
      expect(kit.docs()).to.have.length(5);
      expect(kit.scsi.describe()).to.deep.equal([]);
    });

    it('a reused mount returns the EXISTING guest path even when another was asked for', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/s/sb.vhdx', readOnly: false, mount: { ensureFilesystem: true, filesystem: 'ext4' }, guestPath: '/run/gcs/c/pause' });
      const b = await kit.scsi.acquire({ hostPath: '/s/sb.vhdx', readOnly: false, mount: { filesystem: 'ext4', ensureFilesystem: true }, guestPath: '/run/gcs/c/work' });
      expect(b.value.guestPath).to.equal('/run/gcs/c/pause');
      await b.release();
      await a.release();
    });

    it('a caller-chosen path used by a different mount → MOUNT_CONFLICT, and the attach reference is released', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhdx', readOnly: false, mount: {}, guestPath: '/run/x' });
      await rejectsWithCode(kit.scsi.acquire({ hostPath: '/d/b.vhdx', readOnly: false, mount: {}, guestPath: '/run/x' }), 'MOUNT_CONFLICT');
      expect(kit.scsi.describe().filter((r) => r.kind === 'scsi-attachment')).to.have.length(1);
      await a.release();
    });

    it('generated mount indexes are the lowest free and recycled', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const m = (p: string) => kit.scsi.acquire({ hostPath: p, readOnly: true, mount: {} });
      const a = await m('/d/a.vhd');
      const b = await m('/d/b.vhd');
      expect([a.value.guestPath, b.value.guestPath]).to.deep.equal(['/run/mounts/scsi/m0', '/run/mounts/scsi/m1']);
      await a.release();
      const c = await m('/d/c.vhd');
      expect(c.value.guestPath).to.equal('/run/mounts/scsi/m0');
      await b.release();
      await c.release();
    });

    it('a generated index skips a path a caller chose', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {}, guestPath: '/run/mounts/scsi/m0' });
      const b = await kit.scsi.acquire({ hostPath: '/d/b.vhd', readOnly: true, mount: {} });
      expect(b.value.guestPath).to.equal('/run/mounts/scsi/m1');
      await a.release();
      await b.release();
    });

    it('the same path read-only and read-write are two attachments (two slots)', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const ro = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true });
      const rw = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: false });
      expect([ro.value.lun, rw.value.lun]).to.deep.equal([0, 1]);
      await ro.release();
      await rw.release();
    });

    it('options are compared order-insensitively without mutating the caller', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const opts = ['rw', 'noatime'];
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: false, mount: { options: opts } });
      const b = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: false, mount: { options: ['noatime', 'rw'] } });
      expect(opts).to.deep.equal(['rw', 'noatime']);
      expect(b.value.guestPath).to.equal(a.value.guestPath);
      expect(kit.docs()).to.have.length(2);
      await a.release();
      await b.release();
    });

    it('different mount configs of one disk: one attachment, two mounts; attach refcounted per acquire', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const p1 = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: { partition: 1 } });
      const p2 = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: { partition: 2 } });
      expect(p1.value.lun).to.equal(p2.value.lun);
      expect(p1.value.guestPath).to.not.equal(p2.value.guestPath);
      await p1.release();
      expect(kit.scsi.describe().find((r) => r.kind === 'scsi-attachment')?.refCount).to.equal(1);
      await p2.release();
    });

    it('release is idempotent', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
      await Promise.all([a.release(), a.release()]);
      await a.release();
      expect(kit.docs()).to.have.length(5);
    });
  });

  describe('slots', () => {
    it('fills controller-major, skips reserved slots, then NO_SLOT without an HCS call', async () => {
      const kit = await deviceKit({ os: 'linux', scsiControllers: 2, reservedScsiSlots: [0, 64] });
      const leases = [];
      for (let i = 0; i < 126; i++) leases.push(await kit.scsi.acquire({ hostPath: `/d/${i}.vhd`, readOnly: true }));
      expect(leases[0].value).to.include({ controller: 0, lun: 1 });
      expect(leases[62].value).to.include({ controller: 0, lun: 63 });
      expect(leases[63].value).to.include({ controller: 1, lun: 1 });
      const before = kit.hcs.calls.length;
      await rejectsWithCode(kit.scsi.acquire({ hostPath: '/d/full.vhd', readOnly: true }), 'NO_SLOT');
      expect(kit.hcs.calls.length).to.equal(before);
      await leases[10].release();
      const again = await kit.scsi.acquire({ hostPath: '/d/full.vhd', readOnly: true });
      expect(again.value).to.include({ controller: 0, lun: 11 });
      await again.release();
      for (const l of leases) await l.release();
    });
  });

  describe('failures and retryable teardown', () => {
    it('a failed attach frees the slot and leaves nothing', async () => {
      const kit = await deviceKit({ os: 'linux' });
      kit.hcs.failNext((c) => c.fn === 'modify');
      await rejectsWithCode(kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} }), 'HCS_ERROR');
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true });
      expect(a.value.lun).to.equal(0);
      await a.release();
    });

    it('a failed mount releases the attach reference it took (unplug + host remove)', async () => {
      const kit = await deviceKit({ os: 'linux' });
      kit.hcs.failNext((c) => c.fn === 'modify' && JSON.stringify(c.doc).includes('"MappedVirtualDisk"'));
      await rejectsWithCode(kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} }), 'HCS_ERROR');
      expect(kit.docs().map((d) => JSON.stringify(d).match(/SCSIDevice|MappedVirtualDisk|"Add"|"Remove"/g)?.join(' '))).to.deep.equal([
        '"Add"',
        '"Add" MappedVirtualDisk',
        '"Remove" SCSIDevice',
        '"Remove"',
      ]);
      expect(kit.scsi.describe()).to.deep.equal([]);
    });

    it('a failed host remove rejects; release again resumes at the host remove (no second unplug)', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
      kit.hcs.failNext(isHostRemove);
      await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
      expect(kit.scsi.describe().map((r) => [r.kind, r.state])).to.deep.equal([['scsi-attachment', 'teardown-failed']]);
      await rejectsWithCode(kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true }), 'TEARDOWN_FAILED');
      await a.release();
      const kinds = kit.docs().map((d) => JSON.stringify(d));
      expect(kinds.filter((d) => d.includes('SCSIDevice'))).to.have.length(1);
      expect(kinds.filter((d) => d.includes('"ResourcePath"') && d.includes('"Remove"'))).to.have.length(2);
      expect(kit.scsi.describe()).to.deep.equal([]);
    });

    it('a failed unplug leaves the disk attached; the retry unplugs, then removes', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true });
      kit.hcs.failNext((c) => JSON.stringify(c.doc).includes('SCSIDevice'));
      await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
      await a.release();
      const docs = kit.docs().map((d) => JSON.stringify(d));
      expect(docs.filter((d) => d.includes('SCSIDevice'))).to.have.length(2);
    });

    it('a failed unmount keeps the attachment; the retry unmounts then detaches', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
      kit.hcs.failNext((c) => JSON.stringify(c.doc).includes('"Remove","ResourceType":"MappedVirtualDisk"'));
      await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
      expect(kit.scsi.describe().map((r) => [r.kind, r.state])).to.deep.equal([
        ['scsi-attachment', 'live'],
        ['scsi-mount', 'teardown-failed'],
      ]);
      await a.release();
      expect(kit.scsi.describe()).to.deep.equal([]);
    });

    it('while running, a "VM gone" removal error is a failure; while terminating it counts as removed', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true });
      kit.hcs.failNext(isHostRemove, notFound());
      await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
      kit.lifecycle.markTerminating();
      kit.hcs.failNext(isHostRemove, notFound());
      await a.release();
      expect(kit.scsi.describe()).to.deep.equal([]);
      // HCS never saw the removal succeed: clean the fake for the leak check.
      kit.system.host.clear();
    });

    it('after terminate, releases make no HCS call', async () => {
      const kit = await deviceKit({ os: 'linux' }, { leakCheck: false });
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
      kit.lifecycle.markTerminating();
      kit.lifecycle.markTerminated();
      const before = kit.hcs.calls.length;
      await a.release();
      expect(kit.hcs.calls.length).to.equal(before);
      expect(kit.scsi.describe()).to.deep.equal([]);
    });
  });

  describe('concurrency', () => {
    it('concurrent acquires of one key make one attach and one mount', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const gate = kit.hcs.gate((c) => c.fn === 'modify');
      const req = { hostPath: '/d/a.vhd', readOnly: true, mount: {} };
      const p = Promise.all([kit.scsi.acquire(req), kit.scsi.acquire(req), kit.scsi.acquire(req)]);
      await settle();
      expect(kit.docs()).to.have.length(1);
      gate.open();
      const leases = await p;
      expect(kit.docs()).to.have.length(2);
      expect(new Set(leases.map((l) => l.value.guestPath)).size).to.equal(1);
      for (const l of leases) await l.release();
    });

    it('a different key does not wait for a gated attach', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const gate = kit.hcs.gate((c) => JSON.stringify(c.doc).includes('/d/slow.vhd'));
      const slow = kit.scsi.acquire({ hostPath: '/d/slow.vhd', readOnly: true });
      await settle();
      const fast = await kit.scsi.acquire({ hostPath: '/d/fast.vhd', readOnly: true, mount: {} });
      expect(fast.value.lun).to.equal(1);
      await fast.release();
      gate.open();
      const s = await slow;
      expect(s.value.lun).to.equal(0);
      await s.release();
    });

    it('an aborted acquire finishes the step in flight, then rejects ABORTED; the shared creation completes for the others and nothing leaks', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const gate = kit.hcs.gate((c) => JSON.stringify(c.doc).includes('"MappedVirtualDisk"'));
      const controller = new AbortController();
      const req = { hostPath: '/d/a.vhd', readOnly: true, mount: {} };
      const aborted = kit.scsi.acquire(req, { signal: controller.signal });
      const other = kit.scsi.acquire(req);
      await settle();
      controller.abort();
      gate.open();
      await rejectsWithCode(aborted, 'ABORTED');
      const lease = await other;
      await settle();
      expect(kit.scsi.describe().map((r) => r.refCount)).to.deep.equal([1, 1]);
      await lease.release();
      expect(kit.scsi.describe()).to.deep.equal([]);
    });

    it('a reservation holding a mount\'s last reference (its other holder released meanwhile): on abort, cancel or a failed grant the unmount is done before the unplug is sent', async () => {
      const req = { hostPath: '/d/shared.vhd', readOnly: true, mount: {} };
      const isUnmount = (c: { doc: unknown }): boolean => JSON.stringify(c.doc).includes('"RequestType":"Remove","ResourceType":"MappedVirtualDisk"');
      const isUnplug = (c: { doc: unknown }): boolean => JSON.stringify(c.doc).includes('"SCSIDevice"');
      for (const how of ['abort', 'cancel', 'grant'] as const) {
        const kit = await deviceKit({ os: 'linux' });
        const first = await kit.scsi.acquire(req);
        // The second reservation shares the attachment and the mount, then the first holder lets go.
        const second = kit.scsi.reserve(how === 'grant' ? { ...req, grantVmAccess: true } : req);
        await first.release();
        expect(kit.scsi.describe().map((r) => r.refCount), how).to.deep.equal([1, 1]);
        const gate = kit.hcs.gate(isUnmount);
        if (how === 'grant') kit.hcs.failNext((c) => c.fn === 'grant');
        const controller = new AbortController();
        if (how === 'abort') controller.abort();
        const outcome = how === 'cancel' ? (second.cancel(), Promise.resolve()) : second.commit({ signal: controller.signal }).then(() => expect.fail('committed'), () => undefined);
        await settle();
        expect(kit.hcs.calls.filter(isUnmount), how).to.have.length(1);
        // Nothing may reach the guest's SCSI device while it is still mounted.
        expect(kit.hcs.calls.filter(isUnplug), how).to.deep.equal([]);
        gate.open();
        await outcome;
        await settle();
        const removes = kit.docs().slice(2).map((d) => JSON.stringify(d));
        expect(removes.findIndex((d) => d.includes('"SCSIDevice"')), how).to.be.greaterThan(removes.findIndex((d) => d.includes('"Remove","ResourceType":"MappedVirtualDisk"')));
        expect(kit.scsi.describe(), how).to.deep.equal([]);
      }
    });

    it('aborted while its own guest mount is in flight: the mount finishes, then is undone in order (unmount, unplug, detach) before it rejects ABORTED', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const gate = kit.hcs.gate((c) => JSON.stringify(c.doc).includes('"MappedVirtualDisk"'));
      const controller = new AbortController();
      const aborted = kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} }, { signal: controller.signal });
      let settled = false;
      void aborted.catch(() => (settled = true));
      await settle();
      controller.abort();
      await settle();
      // Nothing was removed while the guest mount is still in flight, and the acquire waits for it.
      expect(kit.docs().filter((d) => JSON.stringify(d).includes('"Remove"'))).to.deep.equal([]);
      expect(settled).to.equal(false);
      gate.open();
      await rejectsWithCode(aborted, 'ABORTED');
      expect(pendingPromises.byKind()).to.deep.equal({});
      expect(kit.docs()).to.deep.equal([
        { ResourcePath: att(C0, 0), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: '/d/a.vhd', ReadOnly: true } },
        { GuestRequest: { RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/mounts/scsi/m0', ReadOnly: true } } },
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/mounts/scsi/m0', ReadOnly: true } } },
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'SCSIDevice', Settings: {} } },
        { ResourcePath: att(C0, 0), RequestType: 'Remove' },
      ]);
      expect(kit.scsi.describe()).to.deep.equal([]);
    });

    it('concurrent waiters all get the creator\'s error; nothing is kept', async () => {
      const kit = await deviceKit({ os: 'linux' });
      const gate = kit.hcs.gate((c) => c.fn === 'modify');
      kit.hcs.failNext((c) => c.fn === 'modify');
      const req = { hostPath: '/d/a.vhd', readOnly: true };
      const results = Promise.allSettled([kit.scsi.acquire(req), kit.scsi.acquire(req)]);
      await settle();
      gate.open();
      const r = await results;
      expect(r.map((x) => x.status)).to.deep.equal(['rejected', 'rejected']);
      expect(kit.scsi.describe()).to.deep.equal([]);
    });
  });

  describe('invalid input → INVALID_ARGUMENT before any HCS call', () => {
    const cases: [string, 'linux' | 'windows', Record<string, unknown>][] = [
      ['empty host path', 'linux', { hostPath: '', readOnly: true }],
      ['relative host path', 'linux', { hostPath: 'disks/a.vhd', readOnly: true }],
      ['NUL in host path', 'linux', { hostPath: '/d/a\0.vhd', readOnly: true }],
      ['non-boolean readOnly', 'linux', { hostPath: '/d/a.vhd', readOnly: 'yes' }],
      ['unknown type', 'linux', { hostPath: '/d/a.vhd', readOnly: true, type: 'Floppy' }],
      ['relative guest path', 'linux', { hostPath: '/d/a.vhd', readOnly: true, mount: {}, guestPath: 'run/x' }],
      ['guest path with ..', 'linux', { hostPath: '/d/a.vhd', readOnly: true, mount: {}, guestPath: '/run/../etc' }],
      ['NUL in guest path', 'linux', { hostPath: '/d/a.vhd', readOnly: true, mount: {}, guestPath: '/run/\0x' }],
      ['Windows guest path on LCOW', 'linux', { hostPath: '/d/a.vhd', readOnly: true, mount: {}, guestPath: 'c:\\x' }],
      ['guest path without mount', 'linux', { hostPath: '/d/a.vhd', readOnly: true, guestPath: '/run/x' }],
      ['negative partition', 'linux', { hostPath: '/d/a.vhd', readOnly: true, mount: { partition: -1 } }],
      ['empty option', 'linux', { hostPath: '/d/a.vhd', readOnly: true, mount: { options: [''] } }],
      ['evd without path', 'linux', { hostPath: 'evd://space/', readOnly: true }],
      ['evd without type', 'linux', { hostPath: 'evd:///C:\\x', readOnly: true }],
      ['evd without slash', 'linux', { hostPath: 'evd://space', readOnly: true }],
      ['evd path typed VirtualDisk', 'linux', { hostPath: 'evd://space/x', type: 'VirtualDisk', readOnly: true }],
      ['WCOW partition', 'windows', { hostPath: 'C:\\a.vhdx', readOnly: true, mount: { partition: 1 } }],
      ['WCOW encrypted', 'windows', { hostPath: 'C:\\a.vhdx', readOnly: true, mount: { encrypted: true } }],
      ['WCOW options', 'windows', { hostPath: 'C:\\a.vhdx', readOnly: true, mount: { options: ['ro'] } }],
      ['WCOW ensureFilesystem', 'windows', { hostPath: 'C:\\a.vhdx', readOnly: true, mount: { ensureFilesystem: true } }],
      ['WCOW filesystem', 'windows', { hostPath: 'C:\\a.vhdx', readOnly: true, mount: { filesystem: 'ntfs' } }],
      ['WCOW relative guest path', 'windows', { hostPath: 'C:\\a.vhdx', readOnly: true, mount: {}, guestPath: 'mounts\\x' }],
    ];
    for (const [name, os, req] of cases) {
      it(name, async () => {
        const kit = await deviceKit({ os });
        const before = kit.hcs.calls.length;
        await rejectsWithCode(kit.scsi.acquire(req as never), 'INVALID_ARGUMENT');
        expect(kit.hcs.calls.length).to.equal(before);
      });
    }
  });

  describe('guest delivery through a GuestConnection', () => {
    it('sends the attach to HCS and every guest half to the connection, in order', async () => {
      const connection = { modifySettings: sinon.stub().resolves() };
      const kit = await deviceKit({ os: 'linux' }, { guestConnection: connection });
      const modify = sinon.spy(kit.system, 'modify');
      const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
      await a.release();
      expect(kit.docs()).to.deep.equal([
        { ResourcePath: att(C0, 0), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: '/d/a.vhd', ReadOnly: true } },
        { ResourcePath: att(C0, 0), RequestType: 'Remove' },
      ]);
      expect(connection.modifySettings.args.map((a) => (a[0] as GuestRequest).ResourceType)).to.deep.equal([
        'MappedVirtualDisk',
        'MappedVirtualDisk',
        'SCSIDevice',
      ]);
      sinon.assert.callOrder(modify, connection.modifySettings, modify);
    });

    it('a failed guest mount through the connection is undone (its Remove finds nothing) and releases the attachment', async () => {
      const connection = { modifySettings: sinon.stub() };
      connection.modifySettings.onCall(0).rejects(new UvmError('HCS_ERROR', 'guest says no'));
      connection.modifySettings.onCall(1).rejects(new HcsError({ op: 'modifySettings', hresult: HResult.E_NOT_FOUND }));
      const kit = await deviceKit({ os: 'windows' }, { guestConnection: connection });
      await rejectsWithCode(kit.scsi.acquire({ hostPath: 'C:\\a.vhdx', readOnly: true, mount: {} }), 'HCS_ERROR');
      expect(connection.modifySettings.args[1][0]).to.deep.include({ RequestType: 'Remove', ResourceType: 'MappedVirtualDisk' });
      expect(kit.system.attached()).to.deep.equal([]);
      expect(kit.scsi.describe()).to.deep.equal([]);
    });

    it('a failed guest mount whose undo fails too stays listed (teardown-failed) until a retried teardown removes it', async () => {
      const connection = { modifySettings: sinon.stub().rejects(new UvmError('HCS_ERROR', 'guest says no')) };
      const kit = await deviceKit({ os: 'windows' }, { guestConnection: connection });
      await rejectsWithCode(kit.scsi.acquire({ hostPath: 'C:\\a.vhdx', readOnly: true, mount: {} }), 'HCS_ERROR');
      // The disk stays attached while the guest may still have it mounted: detached after the mount.
      expect(kit.scsi.describe().map((r) => [r.kind, r.state, r.refCount])).to.deep.equal([
        ['scsi-attachment', 'live', 1],
        ['scsi-mount', 'teardown-failed', 0],
      ]);
      connection.modifySettings.resetBehavior();
      connection.modifySettings.resolves();
      await kit.scsi.retryFailedTeardowns();
      expect(kit.scsi.describe()).to.deep.equal([]);
    });
  });

  it('describe() reports slot, paths, state and refcount', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const a = await kit.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
    expect(kit.scsi.describe()).to.deep.equal([
      { kind: 'scsi-attachment', key: JSON.stringify(['/d/a.vhd', true, 'VirtualDisk', '']), state: 'live', refCount: 1, hostPath: '/d/a.vhd', slot: '0:0' },
      {
        kind: 'scsi-mount',
        key: JSON.stringify([0, 0, { readOnly: true, partition: 0, encrypted: false, options: [], ensureFilesystem: false, filesystem: '', blockDev: false }]),
        state: 'live',
        refCount: 1,
        slot: '0:0',
        guestPath: '/run/mounts/scsi/m0',
      },
    ]);
    await a.release();
  });
});

describe('ScsiManager: a release that stopped part-way', () => {
  it('is finished by retryFailedTeardowns when its holder never retries (a rolled-back allocation)', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const lease = await kit.scsi.acquire({ hostPath: '/d/a.vhdx', readOnly: true, mount: { options: ['ro'] } });
    kit.hcs.failNext((c) => c.fn === 'modify' && JSON.stringify(c.doc).includes('"Remove"'));
    await lease.release().then(
      () => expect.fail('the unmount was made to fail'),
      () => undefined,
    );
    // The unmount failed, so the attachment is still referenced by the dropped lease.
    expect(kit.scsi.describe().map((r) => `${r.kind} ${r.state} ${r.refCount}`)).to.deep.equal([
      'scsi-attachment live 1',
      'scsi-mount teardown-failed 0',
    ]);
    await kit.scsi.retryFailedTeardowns();
    expect(kit.scsi.describe()).to.deep.equal([]);
    expect(kit.system.attached()).to.deep.equal([]);
  });
});
