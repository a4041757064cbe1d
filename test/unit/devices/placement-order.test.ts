import { expect } from 'chai';
import type { Lease } from '../../../src/core/lease.js';
import { deviceKit, settle } from './device-test-kit.js';

/**
 * Reservations take slots and names synchronously, in the order they are made: the HCS calls of
 * their commits may finish in any order without changing placement (no ordering callbacks).
 */
describe('placement order under concurrency', () => {
  /** Starts each commit in turn, holds each one's first HCS call, then lets them finish in reverse. */
  async function commitInReverse<T>(kit: Awaited<ReturnType<typeof deviceKit>>, commits: (() => Promise<Lease<T>>)[]): Promise<Lease<T>[]> {
    const gates: { open: () => void }[] = [];
    const pending: Promise<Lease<T>>[] = [];
    const modifies = () => kit.hcs.calls.filter((c) => c.fn === 'modify');
    for (const commit of commits) {
      const nth = modifies().length;
      gates.push(kit.hcs.gate((c) => c.fn === 'modify' && modifies().indexOf(c) === nth));
      pending.push(commit());
      await settle();
    }
    for (const gate of [...gates].reverse()) gate.open();
    return Promise.all(pending);
  }

  it('VPMEM devices follow reservation order when the Adds finish in reverse', async () => {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 4 });
    const paths = ['/a/layer.vhd', '/b/layer.vhd', '/c/layer.vhd'];
    const reservations = paths.map((hostPath) => {
      const placed = kit.vpmem.reserve({ hostPath }, 1 << 20);
      if (!placed.ok) throw placed.error;
      return placed.reservation;
    });
    expect(reservations.map((r) => r.value?.guestPath)).to.deep.equal(['/run/layers/p0', '/run/layers/p1', '/run/layers/p2']);
    const leases = await commitInReverse(kit, reservations.map((r) => () => r.commit()));
    expect(leases.map((l) => l.value.guestPath)).to.deep.equal(['/run/layers/p0', '/run/layers/p1', '/run/layers/p2']);
    await Promise.all(leases.map((l) => l.release()));
  });

  it('Plan9 share names follow reservation order when the Adds finish in reverse', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const reservations = ['/d1', '/d2', '/d3'].map((hostPath) => kit.plan9.reserve({ hostPath, readOnly: true }, 'directory'));
    const leases = await commitInReverse(kit, reservations.map((r) => () => r.commit()));
    expect(leases.map((l) => l.value.name)).to.deep.equal(['0', '1', '2']);
    await Promise.all(leases.map((l) => l.release()));
  });

  it('VSMB share names follow reservation order when the Adds finish in reverse', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const reservations = ['C:\\l\\1', 'C:\\l\\2', 'C:\\l\\3'].map((hostPath) => kit.vsmb.reserve({ hostPath, readOnly: true, layer: true }, 'directory'));
    const leases = await commitInReverse(kit, reservations.map((r) => () => r.commit()));
    expect(leases.map((l) => l.value.name)).to.deep.equal(['s1', 's2', 's3']);
    await Promise.all(leases.map((l) => l.release()));
  });

  it('SCSI slots and mount paths follow reservation order when the attaches finish in reverse', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const reservations = ['/d/a.vhd', '/d/b.vhd', '/d/c.vhd'].map((hostPath) => kit.scsi.reserve({ hostPath, readOnly: true, mount: {} }));
    const leases = await commitInReverse(kit, reservations.map((r) => () => r.commit()));
    expect(leases.map((l) => [l.value.lun, l.value.guestPath])).to.deep.equal([
      [0, '/run/mounts/scsi/m0'],
      [1, '/run/mounts/scsi/m1'],
      [2, '/run/mounts/scsi/m2'],
    ]);
    await Promise.all(leases.map((l) => l.release()));
  });

  it('a cancelled reservation sends nothing and frees its slot for the next one', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const a = kit.scsi.reserve({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
    a.cancel();
    const b = kit.scsi.reserve({ hostPath: '/d/b.vhd', readOnly: true, mount: {} });
    expect([b.value?.lun, b.value?.guestPath]).to.deep.equal([0, '/run/mounts/scsi/m0']);
    const lease = await b.commit();
    expect(kit.docs()).to.have.length(2);
    await lease.release();
  });
});
