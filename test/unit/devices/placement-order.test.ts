import { expect } from 'chai';
import sinon from 'sinon';
import type { HostStat } from '../../../src/core/host-fs.js';
import { deviceKit, settle } from './device-test-kit.js';

/**
 * Concurrent acquires get slots and names in the order they were CALLED, even when the host
 * file stats that precede placement complete in another order (InOrder in the managers).
 */
describe('placement order under concurrency', () => {
  /** Makes the kit's stats resolve only when released, in any order the test chooses. */
  function gateStats(kit: Awaited<ReturnType<typeof deviceKit>>): Map<string, () => void> {
    const release = new Map<string, () => void>();
    const real = kit.hostFs.stat.bind(kit.hostFs);
    sinon.stub(kit.hostFs, 'stat').callsFake(async (path: string): Promise<HostStat> => {
      await new Promise<void>((resolve) => release.set(path, resolve));
      return real(path);
    });
    return release;
  }

  it('VPMEM devices follow call order when stats finish in reverse', async () => {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 4 });
    const paths = ['/a/layer.vhd', '/b/layer.vhd', '/c/layer.vhd'];
    for (const p of paths) kit.hostFs.file(p, 1 << 20);
    const gates = gateStats(kit);
    const pending = paths.map((hostPath) => kit.vpmem.acquire({ hostPath }));
    await settle();
    for (const p of [...paths].reverse()) gates.get(p)!();
    const leases = await Promise.all(pending);
    expect(leases.map((l) => l.value.guestPath)).to.deep.equal(['/run/layers/p0', '/run/layers/p1', '/run/layers/p2']);
    await Promise.all(leases.map((l) => l.release()));
  });

  it('Plan9 share names follow call order when stats finish in reverse', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const paths = ['/d1', '/d2', '/d3'];
    for (const p of paths) kit.hostFs.dir(p);
    const gates = gateStats(kit);
    const pending = paths.map((hostPath) => kit.plan9.acquire({ hostPath, readOnly: true }));
    await settle();
    for (const p of [...paths].reverse()) gates.get(p)!();
    const leases = await Promise.all(pending);
    expect(leases.map((l) => l.value.name)).to.deep.equal(['0', '1', '2']);
    await Promise.all(leases.map((l) => l.release()));
  });

  it('VSMB share names follow call order when stats finish in reverse', async () => {
    const kit = await deviceKit({ os: 'windows' });
    const paths = ['C:\\l\\1', 'C:\\l\\2', 'C:\\l\\3'];
    for (const p of paths) kit.hostFs.dir(p);
    const gates = gateStats(kit);
    const pending = paths.map((hostPath) => kit.vsmb.acquire({ hostPath, readOnly: true, layer: true }));
    await settle();
    for (const p of [...paths].reverse()) gates.get(p)!();
    const leases = await Promise.all(pending);
    expect(leases.map((l) => l.value.name)).to.deep.equal(['s1', 's2', 's3']);
    await Promise.all(leases.map((l) => l.release()));
  });
});
