import { expect } from 'chai';
import sinon from 'sinon';
import { UvmError } from '../../../src/core/errors.js';
import type { GuestRequest } from '../../../src/hcs/schema.js';
import { deviceKit, rejectsWithCode, settle } from './device-test-kit.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const DEV = 'VirtualMachine/Devices/VirtualPMem/Devices';

describe('VpmemManager', () => {
  describe('default mode (one layer per device)', () => {
    it('A4: combined host+guest Add on the lowest free device; removal mirrors it', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 4 });
      kit.hostFs.file('C:\\snap\\6\\layer.vhd', 10 * MiB).file('C:\\snap\\7\\layer.vhd', 20 * MiB);
      const first = await kit.vpmem.acquire({ hostPath: 'C:\\snap\\6\\layer.vhd' });
      const second = await kit.vpmem.acquire({ hostPath: 'C:\\snap\\7\\layer.vhd' });
      expect(first.value).to.deep.equal({ device: 0, hostPath: 'C:\\snap\\6\\layer.vhd', guestPath: '/run/layers/p0' });
      expect(second.value).to.deep.equal({ device: 1, hostPath: 'C:\\snap\\7\\layer.vhd', guestPath: '/run/layers/p1' });
      await second.release();
      await first.release();
      expect(kit.docs()).to.deep.equal([
        {
          ResourcePath: `${DEV}/0`,
          RequestType: 'Add',
          Settings: { HostPath: 'C:\\snap\\6\\layer.vhd', ReadOnly: true, ImageFormat: 'Vhd1' },
          GuestRequest: { RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: { MountPath: '/run/layers/p0' } },
        },
        {
          ResourcePath: `${DEV}/1`,
          RequestType: 'Add',
          Settings: { HostPath: 'C:\\snap\\7\\layer.vhd', ReadOnly: true, ImageFormat: 'Vhd1' },
          GuestRequest: { RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: { DeviceNumber: 1, MountPath: '/run/layers/p1' } },
        },
        {
          ResourcePath: `${DEV}/1`,
          RequestType: 'Remove',
          GuestRequest: { RequestType: 'Remove', ResourceType: 'VPMemDevice', Settings: { DeviceNumber: 1, MountPath: '/run/layers/p1' } },
        },
        {
          ResourcePath: `${DEV}/0`,
          RequestType: 'Remove',
          GuestRequest: { RequestType: 'Remove', ResourceType: 'VPMemDevice', Settings: { MountPath: '/run/layers/p0' } },
        },
      ]);
    });

    it('the Add has call priority 1 (the overlay that needs it follows); the removal none', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 4 });
      kit.hostFs.file('C:\\snap\\6\\layer.vhd', 10 * MiB);
      const lease = await kit.vpmem.acquire({ hostPath: 'C:\\snap\\6\\layer.vhd' });
      await lease.release();
      expect(kit.hcs.calls.filter((c) => c.fn === 'modify').map((c) => c.priority)).to.deep.equal([1, undefined]);
    });

    it('heldFile: what the placing stat said while a reservation would share the layer; nothing while it is torn down, after, or for a path never placed', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 4 });
      kit.hostFs.file('/l/a.vhd', 3 * MiB);
      expect(kit.vpmem.heldFile('/l/a.vhd')).to.equal(undefined);
      const reserved = kit.vpmem.reserve({ hostPath: '/l/a.vhd' }, 3 * MiB);
      if (!reserved.ok) throw reserved.error;
      expect(kit.vpmem.heldFile('/l/a.vhd')).to.deep.equal({ isFile: true, isDirectory: false, size: 3 * MiB });
      const lease = await reserved.reservation.commit();
      expect(kit.vpmem.heldFile('/l/a.vhd')).to.deep.equal({ isFile: true, isDirectory: false, size: 3 * MiB });
      expect(kit.vpmem.heldFile('/l/other.vhd')).to.equal(undefined);
      const removal = kit.hcs.gate((c) => c.fn === 'modify');
      const released = lease.release();
      await settle();
      expect(kit.vpmem.heldFile('/l/a.vhd')).to.equal(undefined); // destroying: a reservation would place it anew
      removal.open();
      await released;
      expect(kit.vpmem.heldFile('/l/a.vhd')).to.equal(undefined);
      expect(kit.system.attached()).to.deep.equal([]);
    });

    it('two owners of one host path share the device', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 4 });
      kit.hostFs.file('/l/a.vhd', MiB);
      const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      const b = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      expect(b.value).to.deep.equal(a.value);
      expect(kit.docs()).to.have.length(1);
      expect(kit.vpmem.describe()).to.deep.equal([
        { kind: 'vpmem-device', key: '/l/a.vhd', state: 'live', refCount: 2, hostPath: '/l/a.vhd', slot: '0', guestPath: '/run/layers/p0' },
      ]);
      await a.release();
      expect(kit.docs()).to.have.length(1);
      await b.release();
      expect(kit.docs()).to.have.length(2);
    });

    it('LAYER_TOO_LARGE above maxSizeBytes; NO_SLOT when every device is used; both without an HCS call', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 2, vpmemMaxSizeBytes: 64 * MiB });
      kit.hostFs.file('/l/big.vhd', 64 * MiB + 1).file('/l/a.vhd', 64 * MiB).file('/l/b.vhd', MiB).file('/l/c.vhd', MiB);
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/big.vhd' }), 'LAYER_TOO_LARGE');
      const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      const b = await kit.vpmem.acquire({ hostPath: '/l/b.vhd' });
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/c.vhd' }), 'NO_SLOT');
      expect(kit.docs()).to.have.length(2);
      await a.release();
      const c = await kit.vpmem.acquire({ hostPath: '/l/c.vhd' });
      expect(c.value.device).to.equal(0);
      await b.release();
      await c.release();
    });

    it('VPMEM off (count 0) → NO_SLOT (so layers fall back to SCSI); WCOW → NOT_SUPPORTED', async () => {
      const off = await deviceKit({ os: 'linux', vpmemCount: 0 });
      await rejectsWithCode(off.vpmem.acquire({ hostPath: '/l/a.vhd' }), 'NO_SLOT');
      const wcow = await deviceKit({ os: 'windows' });
      await rejectsWithCode(wcow.vpmem.acquire({ hostPath: 'C:\\l\\a.vhd' }), 'NOT_SUPPORTED');
    });

    it('a missing file → NOT_FOUND, nothing kept', async () => {
      const kit = await deviceKit({ os: 'linux' });
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/none.vhd' }), 'NOT_FOUND');
      expect(kit.vpmem.describe()).to.deep.equal([]);
    });

    it('a failed combined Add is compensated by a host-only Remove and frees the device', async () => {
      const kit = await deviceKit({ os: 'linux' });
      kit.hostFs.file('/l/a.vhd', MiB);
      kit.hcs.failNext((c) => c.fn === 'modify');
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/a.vhd' }), 'HCS_ERROR');
      expect(kit.docs()).to.deep.equal([
        {
          ResourcePath: `${DEV}/0`,
          RequestType: 'Add',
          Settings: { HostPath: '/l/a.vhd', ReadOnly: true, ImageFormat: 'Vhd1' },
          GuestRequest: { RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: { MountPath: '/run/layers/p0' } },
        },
        { ResourcePath: `${DEV}/0`, RequestType: 'Remove', Settings: { HostPath: '/l/a.vhd', ReadOnly: true, ImageFormat: 'Vhd1' } },
      ]);
      const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      expect(a.value.device).to.equal(0);
      await a.release();
    });

    it('a failed combined Remove is retried half by half (guest, then host)', async () => {
      const kit = await deviceKit({ os: 'linux' });
      kit.hostFs.file('/l/a.vhd', MiB);
      const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      kit.hcs.failNext((c) => (c.doc as { RequestType?: string }).RequestType === 'Remove');
      await rejectsWithCode(a.release(), 'TEARDOWN_FAILED');
      await a.release();
      expect(kit.docs().slice(2)).to.deep.equal([
        { GuestRequest: { RequestType: 'Remove', ResourceType: 'VPMemDevice', Settings: { MountPath: '/run/layers/p0' } } },
        { ResourcePath: `${DEV}/0`, RequestType: 'Remove' },
      ]);
    });

    it('concurrent acquires of one path make one Add; another path does not wait for it', async () => {
      const kit = await deviceKit({ os: 'linux' });
      kit.hostFs.file('/l/a.vhd', MiB).file('/l/b.vhd', MiB);
      const gate = kit.hcs.gate((c) => JSON.stringify(c.doc).includes('/l/a.vhd'));
      const pa = Promise.all([kit.vpmem.acquire({ hostPath: '/l/a.vhd' }), kit.vpmem.acquire({ hostPath: '/l/a.vhd' })]);
      await settle();
      const b = await kit.vpmem.acquire({ hostPath: '/l/b.vhd' });
      expect(b.value.device).to.equal(1);
      gate.open();
      const [a1, a2] = await pa;
      expect(a1.value.device).to.equal(0);
      expect(a2.value.device).to.equal(0);
      expect(kit.docs().filter((d) => JSON.stringify(d).includes('/l/a.vhd'))).to.have.length(1);
      for (const l of [a1, a2, b]) await l.release();
    });

    for (const [name, hostPath] of [
      ['empty', ''],
      ['relative', 'l/a.vhd'],
      ['NUL', '/l/a\0.vhd'],
    ]) {
      it(`invalid host path (${name}) → INVALID_ARGUMENT, no stat, no HCS call`, async () => {
        const kit = await deviceKit({ os: 'linux' });
        await rejectsWithCode(kit.vpmem.acquire({ hostPath }), 'INVALID_ARGUMENT');
        expect(kit.hostFs.lookups).to.deep.equal([]);
        expect(kit.docs()).to.deep.equal([]);
      });
    }
  });

  describe('multi-mapping mode', () => {
    it('A4: a 5 MiB layer after a 16 MiB one lands at offset 16 MiB of device 0; removal keeps the device', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 4, vpmemMultiMapping: true });
      kit.hostFs.file('C:\\snap\\7\\layer.vhd', 16 * MiB).file('C:\\snap\\8\\layer.vhd', 5 * MiB - 100);
      const a = await kit.vpmem.acquire({ hostPath: 'C:\\snap\\7\\layer.vhd' });
      const b = await kit.vpmem.acquire({ hostPath: 'C:\\snap\\8\\layer.vhd' });
      expect(a.value).to.deep.equal({ device: 0, offset: 0, size: 16 * MiB, hostPath: 'C:\\snap\\7\\layer.vhd', guestPath: '/run/layers/p0-0-16777216' });
      expect(b.value).to.deep.equal({
        device: 0,
        offset: 16 * MiB,
        size: 5 * MiB,
        hostPath: 'C:\\snap\\8\\layer.vhd',
        guestPath: '/run/layers/p0-16777216-5242880',
      });
      expect(kit.docs()[1]).to.deep.equal({
        ResourcePath: `${DEV}/0/Mappings/16777216`,
        RequestType: 'Add',
        Settings: { HostPath: 'C:\\snap\\8\\layer.vhd', ImageFormat: 'Vhd1' },
        GuestRequest: {
          RequestType: 'Add',
          ResourceType: 'VPMemDevice',
          Settings: { MountPath: '/run/layers/p0-16777216-5242880', MappingInfo: { DeviceOffsetInBytes: 16777216, DeviceSizeInBytes: 5242880 } },
        },
      });
      await b.release();
      expect(kit.docs()[2]).to.deep.equal({
        ResourcePath: `${DEV}/0/Mappings/16777216`,
        RequestType: 'Remove',
        GuestRequest: {
          RequestType: 'Remove',
          ResourceType: 'VPMemDevice',
          Settings: { MountPath: '/run/layers/p0-16777216-5242880', MappingInfo: { DeviceOffsetInBytes: 16777216, DeviceSizeInBytes: 5242880 } },
        },
      });
      await a.release();
      expect(kit.docs().every((d) => /Mappings\/\d+$/.test((d as { ResourcePath: string }).ResourcePath))).to.equal(true);
      expect(kit.vpmem.describe()).to.deep.equal([]);
    });

    it('packs many small layers into one device, then spills to the next at 1024 mappings', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 2, vpmemMultiMapping: true });
      const leases = [];
      for (let i = 0; i < 1025; i++) {
        kit.hostFs.file(`/l/${i}.vhd`, 512 * 1024);
        leases.push(await kit.vpmem.acquire({ hostPath: `/l/${i}.vhd` }));
      }
      expect(leases.slice(0, 1024).every((l) => l.value.device === 0)).to.equal(true);
      expect(leases[1024].value).to.include({ device: 1, offset: 0 });
      expect(new Set(leases.slice(0, 1024).map((l) => l.value.offset)).size).to.equal(1024);
      for (const l of leases) await l.release();
    });

    it('layers over 4 GiB, or when nothing fits, → NO_SLOT (no LAYER_TOO_LARGE in this mode)', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 1, vpmemMultiMapping: true });
      kit.hostFs.file('/l/huge.vhd', 4 * GiB + 1).file('/l/a.vhd', 3 * GiB).file('/l/b.vhd', 2 * GiB);
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/huge.vhd' }), 'NO_SLOT');
      const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/b.vhd' }), 'NO_SLOT');
      await a.release();
    });

    it('respects maxSizeBytes: a region past the device end is not used', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemCount: 2, vpmemMultiMapping: true, vpmemMaxSizeBytes: 32 * MiB });
      kit.hostFs.file('/l/a.vhd', 16 * MiB).file('/l/b.vhd', 16 * MiB).file('/l/c.vhd', 16 * MiB);
      const leases = [await kit.vpmem.acquire({ hostPath: '/l/a.vhd' }), await kit.vpmem.acquire({ hostPath: '/l/b.vhd' }), await kit.vpmem.acquire({ hostPath: '/l/c.vhd' })];
      expect(leases.map((l) => [l.value.device, l.value.offset])).to.deep.equal([
        [0, 0],
        [0, 16 * MiB],
        [1, 0],
      ]);
      for (const l of leases) await l.release();
    });

    it('a failed mapping Add frees the region', async () => {
      const kit = await deviceKit({ os: 'linux', vpmemMultiMapping: true });
      kit.hostFs.file('/l/a.vhd', MiB);
      kit.hcs.failNext((c) => c.fn === 'modify');
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/a.vhd' }), 'HCS_ERROR');
      const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      expect(a.value.offset).to.equal(0);
      await a.release();
    });
  });

  describe('through a GuestConnection', () => {
    it('host first then guest; a failed guest half rolls the host back; removal guest first', async () => {
      const connection = { modifySettings: sinon.stub().resolves() };
      const kit = await deviceKit({ os: 'linux' }, { guestConnection: connection });
      kit.hostFs.file('/l/a.vhd', MiB).file('/l/b.vhd', MiB);
      const modify = sinon.spy(kit.system, 'modify');
      const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
      await a.release();
      sinon.assert.callOrder(modify, connection.modifySettings, connection.modifySettings, modify);
      expect(kit.docs()).to.deep.equal([
        { ResourcePath: `${DEV}/0`, RequestType: 'Add', Settings: { HostPath: '/l/a.vhd', ReadOnly: true, ImageFormat: 'Vhd1' } },
        { ResourcePath: `${DEV}/0`, RequestType: 'Remove' },
      ]);
      expect(connection.modifySettings.args.map((x) => (x[0] as GuestRequest).RequestType)).to.deep.equal(['Add', 'Remove']);

      // The guest may have applied the add before reporting the failure: its Remove goes first.
      connection.modifySettings.onCall(2).rejects(new UvmError('HCS_ERROR', 'guest failed'));
      await rejectsWithCode(kit.vpmem.acquire({ hostPath: '/l/b.vhd' }), 'HCS_ERROR');
      expect(kit.docs().slice(2).map((d) => (d as { RequestType: string }).RequestType)).to.deep.equal(['Add', 'Remove']);
      expect(connection.modifySettings.args.slice(2).map((x) => (x[0] as GuestRequest).RequestType)).to.deep.equal(['Add', 'Remove']);
      expect(kit.system.attached()).to.deep.equal([]);
    });
  });
});
