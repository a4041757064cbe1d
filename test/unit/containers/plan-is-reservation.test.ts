// planContainer IS the allocation's reserve step: for random pods (random layers, sizes, shared
// scratches, mounts, VPMEM modes and tight SCSI), each container's plan shows exactly the places
// its allocation then takes, a plan that fits allocates, and one that does not fit fails with the
// plan's code and leaves nothing. Real managers over FakeHcs; nothing attached at the end.
import { expect } from 'chai';
import fc from 'fast-check';
import { allocateContainer, planContainer, type AllocatedContainer } from '../../../src/containers/allocate-container.js';
import type { ResourceInfo } from '../../../src/devices/device-types.js';
import type { OciMount, OciSpec } from '../../../src/oci/oci-spec.js';
import { deviceKit, kitUvm, type KitUvm } from '../devices/device-test-kit.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const LAYER_SIZES = [64 * KIB, 700 * KIB, 3 * MIB];

interface PodContainer {
  layers: number[];
  /** Share the first container's scratch (a symlink to it), as a pod's containers do. */
  sharedScratch: boolean;
  /** Indexes into the OS's mount sources. */
  mounts: { source: number; readOnly: boolean }[];
  /** Release this container (if allocated) after the next one is planned. */
  releaseAfter: boolean;
}

interface Pod {
  os: 'linux' | 'windows';
  vpmemCount: number;
  multiMapping: boolean;
  /** Free SCSI slots (the rest reserved at boot). */
  scsiFree: number;
  containers: PodContainer[];
}

const podArb: fc.Arbitrary<Pod> = fc.record({
  os: fc.constantFrom('linux' as const, 'windows' as const),
  vpmemCount: fc.integer({ min: 0, max: 3 }),
  multiMapping: fc.boolean(),
  scsiFree: fc.integer({ min: 2, max: 9 }),
  containers: fc.array(
    fc.record({
      layers: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 4 }),
      sharedScratch: fc.boolean(),
      mounts: fc.array(fc.record({ source: fc.integer({ min: 0, max: 5 }), readOnly: fc.boolean() }), { maxLength: 3 }),
      releaseAfter: fc.boolean(),
    }),
    { minLength: 1, maxLength: 6 },
  ),
});

const LINUX_SOURCES: { type: string; source: string }[] = [
  { type: 'bind', source: '/d/0' },
  { type: 'bind', source: '/d/1' },
  { type: 'bind', source: '/f/0/app.conf' },
  { type: 'virtual-disk', source: '/disk/0.vhdx' },
  { type: 'virtual-disk', source: '/disk/1.vhdx' },
  { type: 'bind', source: '/d/0' },
];
const WINDOWS_SOURCES: { type: string; source: string }[] = [
  { type: '', source: 'C:\\d\\0' },
  { type: '', source: 'C:\\d\\1' },
  { type: '', source: 'C:\\f\\0\\app.conf' },
  { type: 'virtual-disk', source: 'C:\\disk\\0.vhdx' },
  { type: '', source: '\\\\.\\pipe\\p0' },
  { type: 'virtual-disk', source: 'C:\\disk\\1.vhdx' },
];

async function podUvm(pod: Pod): Promise<KitUvm> {
  const linux = pod.os === 'linux';
  const kit = await deviceKit({
    os: pod.os,
    vpmemCount: linux ? pod.vpmemCount : 0,
    vpmemMultiMapping: pod.multiMapping,
    // Small devices: some layers are too large (default mode), mappings fill devices (multi-mapping).
    vpmemMaxSizeBytes: 4 * MIB,
    reservedScsiSlots: Array.from({ length: 64 - pod.scsiFree }, (_, i) => i),
  });
  const fs = kit.hostFs;
  for (let i = 0; i < 6; i++) {
    if (linux) fs.file(`/l/${i}/layer.vhd`, LAYER_SIZES[i % LAYER_SIZES.length]);
    else fs.dir(`C:\\l\\layer${i}`);
  }
  for (const [i] of pod.containers.entries()) {
    if (linux) {
      if (i === 0 || !pod.containers[i]!.sharedScratch) fs.file(`/s/${i}/sandbox.vhdx`);
      else fs.symlink(`/s/${i}/sandbox.vhdx`, '/s/0/sandbox.vhdx');
    } else fs.file(`C:\\s\\${i}\\sandbox.vhdx`);
  }
  if (linux) fs.dir('/d/0').dir('/d/1').file('/f/0/app.conf').file('/disk/0.vhdx').file('/disk/1.vhdx');
  else fs.dir('C:\\d\\0').dir('C:\\d\\1').file('C:\\f\\0\\app.conf').file('C:\\disk\\0.vhdx').file('C:\\disk\\1.vhdx');
  return kitUvm(kit);
}

function specOf(pod: Pod, i: number): OciSpec {
  const c = pod.containers[i]!;
  const linux = pod.os === 'linux';
  const scratchFolder = linux ? `/s/${i}` : pod.containers[i]!.sharedScratch && i > 0 ? 'C:\\s\\0' : `C:\\s\\${i}`;
  const layerFolders = [...c.layers.map((l) => (linux ? `/l/${l}` : `C:\\l\\layer${l}`)), scratchFolder];
  const sources = linux ? LINUX_SOURCES : WINDOWS_SOURCES;
  const mounts = c.mounts.map(({ source, readOnly }, m): OciMount => {
    const s = sources[source]!;
    const destination = linux ? `/m/${m}` : s.source.startsWith('\\\\.\\pipe\\') ? `\\\\.\\pipe\\c${m}` : `C:\\m${m}`;
    const options = s.type === 'bind' || (s.type === '' && !s.source.startsWith('\\\\.\\pipe\\')) ? { options: [readOnly ? 'ro' : 'rw'] } : {};
    return { destination, ...(s.type ? { type: s.type } : {}), source: s.source, ...options };
  });
  return { ociVersion: '1.1.0', root: { path: 'rootfs' }, process: { args: ['x'] }, windows: { layerFolders }, mounts };
}

/** Every manager's entries with their places (states differ: reserved in the plan, live after). */
function places(infos: ResourceInfo[]): string[] {
  return infos.map((i) => JSON.stringify([i.kind, i.key, i.refCount, i.hostPath, i.slot, i.guestPath])).sort();
}

function describeAll(uvm: KitUvm): ResourceInfo[] {
  return [uvm.scsi, uvm.vpmem, uvm.plan9, uvm.vsmb, uvm.pipes].flatMap((m) => m.describe());
}

async function runPod(pod: Pod): Promise<{ planned: number; fitted: number }> {
  const uvm = await podUvm(pod);
  const held: (AllocatedContainer | undefined)[] = [];
  let fitted = 0;
  try {
    for (const [i, c] of pod.containers.entries()) {
      const spec = specOf(pod, i);
      const before = places(describeAll(uvm));
      const plan = await planContainer(uvm, spec, { containerId: `c${i}` });
      expect(places(describeAll(uvm)), 'a plan changes nothing').to.deep.equal(before);
      let allocated: AllocatedContainer | undefined;
      let error: unknown;
      try {
        allocated = await allocateContainer(uvm, spec, { containerId: `c${i}` });
      } catch (err) {
        error = err;
      }
      if (plan.fits) {
        if (error) throw new Error(`plan of c${i} fits but allocation failed: ${String(error)}`, { cause: error });
        fitted += 1;
        expect(places(describeAll(uvm)), `c${i}: allocation places == plan places`).to.deep.equal(places(plan.resources));
        plan.mounts.forEach((m, k) => {
          if (m.kind === 'device') expect(allocated!.spec.mounts![k]!.source, `mount ${k}`).to.equal(m.guestPath);
        });
        if (plan.rootfs.kind === 'layers' && plan.rootfs.plan.os === 'linux') {
          expect(allocated!.spec.root!.path).to.equal(plan.rootfs.plan.rootfsPath);
          expect(allocated!.resources.layers!.layers.map((l) => l.guestPath)).to.deep.equal(plan.rootfs.plan.layers.map((l) => l.guestPath));
        } else if (plan.rootfs.kind === 'layers') {
          expect(allocated!.spec.root!.path).to.equal(plan.rootfs.plan.scratch.mountPath);
        }
      } else {
        expect(allocated, `plan of c${i} does not fit (${JSON.stringify(plan.unfit)}) but allocation succeeded`).to.equal(undefined);
        expect((error as { code?: string }).code).to.equal(plan.unfit![0]!.code);
        expect(places(describeAll(uvm)), 'a failed allocation leaves nothing').to.deep.equal(before);
      }
      held.push(allocated);
      if (c.releaseAfter && i > 0) {
        await held[i - 1]?.resources.release();
        held[i - 1] = undefined;
      }
    }
  } finally {
    for (const a of held.reverse()) await a?.resources.release();
  }
  expect(describeAll(uvm)).to.deep.equal([]);
  return { planned: pod.containers.length, fitted };
}

describe('planContainer is the reservation (property)', () => {
  it('plan == allocation places for random pods; a plan that fits allocates; one that does not fails with its code', async function () {
    this.timeout(120_000);
    let planned = 0;
    let fitted = 0;
    await fc.assert(
      fc.asyncProperty(podArb, async (pod) => {
        const r = await runPod(pod);
        planned += r.planned;
        fitted += r.fitted;
      }),
      { numRuns: Number(process.env.UVM_PLAN_RUNS ?? 150), seed: process.env.UVM_PLAN_SEED ? Number(process.env.UVM_PLAN_SEED) : undefined },
    );
    // Both outcomes are exercised.
    expect(fitted).to.be.greaterThan(0);
    expect(planned - fitted).to.be.greaterThan(0);
  });
});
