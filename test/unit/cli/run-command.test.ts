import { expect } from 'chai';
import { UvmError } from '../../../src/core/errors.js';
import type { ResourceInfo } from '../../../src/devices/device-types.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import { Progress } from '../../../src/cli/progress.js';
import type { RunBackend, RunContainer, RunUvm } from '../../../src/cli/run-backend.js';
import { runScenario, summarizeContainer } from '../../../src/cli/run-command.js';
import type { Scenario } from '../../../src/cli/scenario.js';

/** A fake UVM: each container holds one resource per layer folder; records every call. */
class FakeUvm implements RunUvm {
  readonly id = 'pod';
  readonly os = 'linux' as const;
  readonly calls: string[] = [];
  readonly held = new Map<string, ResourceInfo[]>();
  failAllocation: string | undefined;
  failRelease = new Set<string>();
  hotAddedValue: number | null = 0;
  failClose = false;
  /** Direct-mapped shares the fake keeps after the containers are gone (state `kept`, still hot-added). */
  keptShareCount = 0;

  describe(): ResourceInfo[] {
    const kept = Array.from({ length: this.keptShareCount }, (_, i): ResourceInfo => ({ kind: 'vsmb-share', key: `k${i}`, state: 'kept', refCount: 0, slot: `s${i + 1}` }));
    return [...[...this.held.values()].flat(), ...kept];
  }

  async allocateContainer(spec: OciSpec, containerId: string): Promise<RunContainer> {
    this.calls.push(`allocate ${containerId}`);
    if (this.failAllocation === containerId) throw new UvmError('NO_SLOT', 'full');
    const infos = (spec.windows?.layerFolders ?? []).map(
      (f, i): ResourceInfo => ({ kind: 'vpmem-device', key: f, state: 'live', refCount: 1, hostPath: f, slot: String(i), guestPath: `/run/layers/p${i}` }),
    );
    this.held.set(containerId, infos);
    return {
      containerEntries: [],
      spec: { ...spec, root: { path: `/run/gcs/c/${containerId}/rootfs` }, mounts: (spec.mounts ?? []).map((m, i) => ({ ...m, source: `/g/${i}` })) },
      release: async () => {
        this.calls.push(`release ${containerId}`);
        if (this.failRelease.has(containerId)) throw new UvmError('HCS_ERROR', 'boom');
        this.held.delete(containerId);
      },
    };
  }

  keptShares(): number {
    this.calls.push('keptShares');
    return this.keptShareCount;
  }

  async hotAdded(): Promise<number | null> {
    this.calls.push('hotAdded');
    return this.hotAddedValue;
  }

  async close(options: { terminate: boolean }): Promise<void> {
    this.calls.push(options.terminate ? 'terminate' : 'close');
    if (this.failClose) throw new UvmError('HCS_ERROR', 'terminate failed');
  }
}

function backendOf(uvm: FakeUvm): RunBackend {
  return { kind: 'simulator', createUvm: async () => uvm };
}

function scenario(teardown = true): Scenario {
  return {
    file: '/pods/p/scenario.json',
    dir: '/pods/p',
    uvm: { id: 'pod', os: 'linux' },
    containers: [
      { id: 'a', bundle: '/pods/p/bundles/a' },
      { id: 'b', bundle: '/pods/p/bundles/b' },
      { id: 'c', bundle: '/pods/p/bundles/c' },
    ],
    teardown,
    fixtures: [],
  };
}

const specs: OciSpec[] = ['a', 'b', 'c'].map((id) => ({
  windows: { layerFolders: [`/l/${id}`, `/s/${id}`] },
  mounts: [{ destination: '/data', type: 'bind', source: `/h/${id}` }],
}));

describe('cli/run-command', () => {
  it('allocates in order, reports, releases in reverse, checks, terminates', async () => {
    const uvm = new FakeUvm();
    const lines: string[] = [];
    const { report, teardownError } = await runScenario(scenario(), specs, backendOf(uvm), new Progress({ write: (s: string) => lines.push(s) }), { keep: false });
    expect(uvm.calls).to.deep.equal(['allocate a', 'allocate b', 'allocate c', 'release c', 'release b', 'release a', 'keptShares', 'hotAdded', 'terminate']);
    expect(teardownError).to.equal(undefined);
    expect(report.ok).to.equal(true);
    expect(report.containers.map((c) => c.rootfs)).to.deep.equal(['/run/gcs/c/a/rootfs', '/run/gcs/c/b/rootfs', '/run/gcs/c/c/rootfs']);
    expect(report.resources.vpmem).to.have.length(6);
    expect(report.resources.scsi).to.deep.equal([]);
    expect(report.teardown).to.deep.equal({ performed: true, released: ['c', 'b', 'a'], sharesKept: 0, remaining: [], hotAdded: 0 });
    expect(lines).to.include('[uvmctl] allocating container b (2/3)\n');
  });

  it('counts kept direct-mapped shares as expected (never removed while the VM runs; they go with it)', async () => {
    const uvm = new FakeUvm();
    uvm.keptShareCount = 3;
    uvm.hotAddedValue = 3;
    const { report } = await runScenario(scenario(), specs, backendOf(uvm), new Progress(undefined), { keep: false });
    expect(report.teardown.sharesKept).to.equal(3);
    expect(report.teardown.remaining).to.deep.equal([]);
    expect(uvm.calls.indexOf('keptShares')).to.be.greaterThan(uvm.calls.indexOf('release a'));
    expect(report.ok).to.equal(true);
  });

  it('reports not ok when the simulator still has devices hot-added', async () => {
    const uvm = new FakeUvm();
    uvm.hotAddedValue = 2;
    const { report } = await runScenario(scenario(), specs, backendOf(uvm), new Progress(undefined), { keep: false });
    expect(report.ok).to.equal(false);
    expect(report.teardown.hotAdded).to.equal(2);
  });

  it('continues past a failed release, reports what is left and returns RELEASE_FAILED', async () => {
    const uvm = new FakeUvm();
    uvm.failRelease.add('b');
    const { report, teardownError } = await runScenario(scenario(), specs, backendOf(uvm), new Progress(undefined), { keep: false });
    expect(uvm.calls).to.deep.equal(['allocate a', 'allocate b', 'allocate c', 'release c', 'release b', 'release a', 'keptShares', 'hotAdded', 'terminate']);
    expect(teardownError?.code).to.equal('RELEASE_FAILED');
    expect(report.ok).to.equal(false);
    expect(report.teardown.released).to.deep.equal(['c', 'a']);
    expect(report.teardown.remaining.map((r) => r.hostPath)).to.deep.equal(['/l/b', '/s/b']);
  });

  it('rolls back the allocated containers and terminates when an allocation fails', async () => {
    const uvm = new FakeUvm();
    uvm.failAllocation = 'c';
    let err: unknown;
    await runScenario(scenario(), specs, backendOf(uvm), new Progress(undefined), { keep: false }).catch((e: unknown) => (err = e));
    expect(UvmError.is(err, 'NO_SLOT')).to.equal(true);
    expect((err as UvmError).details.containerId).to.equal('c');
    expect(uvm.calls).to.deep.equal(['allocate a', 'allocate b', 'allocate c', 'release b', 'release a', 'terminate']);
    expect(uvm.held.size).to.equal(0);
  });

  it('an allocation error is not hidden by a failing terminate; a terminate failure alone is reported', async () => {
    const uvm = new FakeUvm();
    uvm.failAllocation = 'b';
    uvm.failClose = true;
    let err: unknown;
    await runScenario(scenario(), specs, backendOf(uvm), new Progress(undefined), { keep: false }).catch((e: unknown) => (err = e));
    expect(UvmError.is(err, 'NO_SLOT')).to.equal(true);

    const clean = new FakeUvm();
    clean.failClose = true;
    err = undefined;
    await runScenario(scenario(), specs, backendOf(clean), new Progress(undefined), { keep: false }).catch((e: unknown) => (err = e));
    expect(UvmError.is(err, 'HCS_ERROR')).to.equal(true);
  });

  for (const [name, teardown, keep] of [
    ['"teardown": false', false, false],
    ['--keep', true, true],
  ] as const) {
    it(`skips the teardown and leaves the UVM running with ${name}`, async () => {
      const uvm = new FakeUvm();
      const { report } = await runScenario(scenario(teardown), specs, backendOf(uvm), new Progress(undefined), { keep });
      expect(uvm.calls).to.deep.equal(['allocate a', 'allocate b', 'allocate c', 'close']);
      expect(report.teardown.performed).to.equal(false);
      expect(report.ok).to.equal(true);
    });
  }

  it('pairs original and rewritten mounts by index', () => {
    const summary = summarizeContainer(
      'web',
      '/b',
      { mounts: [{ destination: '/d', type: 'virtual-disk', source: '/h/d.vhdx' }, { destination: '/proc', type: 'proc', source: 'proc' }] },
      { root: { path: '/run/gcs/c/web/rootfs' }, mounts: [{ destination: '/d', type: 'none', source: '/run/mounts/scsi/m1' }, { destination: '/proc', type: 'proc', source: 'proc' }] },
    );
    expect(summary).to.deep.equal({
      id: 'web',
      bundle: '/b',
      rootfs: '/run/gcs/c/web/rootfs',
      mounts: [
        { index: 0, destination: '/d', type: 'virtual-disk', guestType: 'none', source: '/h/d.vhdx', guestSource: '/run/mounts/scsi/m1' },
        { index: 1, destination: '/proc', type: 'proc', source: 'proc', guestSource: 'proc' },
      ],
      containerEntries: [],
    });
  });
});
