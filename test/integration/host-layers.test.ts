// Process-isolated (Argon) host layer mounts through the FFI and the simulator's host layer API:
// containerd's windows-layer mount and unmount, the source record, every step's failure unwinding,
// a mount undone by another process, and allocateProcessIsolatedContainer.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { allocateContainer } from '../../src/containers/allocate-container.js';
import { allocateProcessIsolatedContainer } from '../../src/containers/process-isolated.js';
import { WindowsLayerMounts, type MountSourceStore } from '../../src/hcs/host-layer-mounts.js';
import { readSimulatorHostLayers, type SimulatorHostLayers } from '../../src/hcs/host-layers.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import { expectCode } from '../fakes/expect-code.js';
import { checkAfterTest } from '../support/leak-checks.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'host-layers-child.js');

function runChild(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const EMPTY: SimulatorHostLayers = { Layers: [], Bindings: [] };

describe('integration: process-isolated host layer mounts (simulator)', function () {
  this.timeout(60000);
  let dir: string;
  let base: string;
  let mid: string;
  let scratch: string;
  let target: string;
  const record = (): { type: string; source: string; options: string[] } => ({
    type: 'windows-layer',
    source: scratch,
    options: ['rw', `parentLayerPaths=${JSON.stringify([mid, base])}`],
  });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hostlayers-it-'));
    base = join(dir, 'snapshots', '1');
    mid = join(dir, 'snapshots', '2');
    scratch = join(dir, 'snapshots', '3');
    for (const d of [join(base, 'Files'), mid, scratch]) mkdirSync(d, { recursive: true });
    writeFileSync(join(scratch, 'sandbox.vhdx'), '');
    target = join(dir, 'bundle', 'rootfs');
    // Every test leaves the simulated host as it found it.
    checkAfterTest(() => {
      const state = readSimulatorHostLayers();
      return state.Layers.length + state.Bindings.length === 0 ? [] : [`host layers left: ${JSON.stringify(state)}`];
    });
  });
  afterEach(() => {
    configureSimulator({ clearFaults: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('mounts over the parents, binds the volume to the target, records the source, and unmounts from the target alone', async () => {
    const mounts = new WindowsLayerMounts();
    const trace = join(dir, 'trace.jsonl');
    configureSimulator({ trace });
    await mounts.mount(record(), target);
    const state = readSimulatorHostLayers();
    expect(state.Layers).to.have.length(1);
    const layer = state.Layers[0]!;
    expect(layer).to.deep.include({ Path: scratch, Activated: true, Prepared: true, ReadWrite: true, Parents: [mid, base] });
    expect(layer.MountPath).to.match(/^\\\\\?\\Volume\{[0-9a-f-]{36}\}$/);
    expect(state.Bindings).to.deep.equal([{ Root: target, Target: `${layer.MountPath}\\`, Flags: 0x40 }]);
    expect(readFileSync(`${target}:containerd.io-source`, 'utf8')).to.equal(scratch);

    await mounts.unmount(target);
    configureSimulator({ trace: null });
    expect(readSimulatorHostLayers()).to.deep.equal(EMPTY);
    expect(existsSync(`${target}:containerd.io-source`)).to.equal(false);
    const calls = readFileSync(trace, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { fn: string; hr: number; doc: Record<string, unknown> })
      // The host layer API only: a compute-system call still finishing from an earlier test (a
      // late undo, a close) may land in the trace too.
      .filter((c) => !c.fn.startsWith('Hcs'));
    expect(calls.map((c) => c.fn)).to.deep.equal([
      'ActivateLayer',
      'NameToGuid', // each parent's LayerId, as hcsshim
      'NameToGuid',
      'PrepareLayer',
      'GetLayerMountPath',
      'GetLayerMountPath',
      'BfSetupFilter',
      'BfRemoveMapping',
      'UnprepareLayer',
      'DeactivateLayer',
    ]);
    expect(calls.every((c) => c.hr === 0)).to.equal(true);
    const prepare = calls[3]!.doc as { Layers: { Path: string; Flags: number }[] };
    expect(prepare.Layers.map((l) => [l.Path, l.Flags])).to.deep.equal([
      [mid, 0],
      [base, 0],
    ]);
  });

  it('a read-only base layer binds its Files folder read-only; without Files → NOT_FOUND, nothing left', async () => {
    const mounts = new WindowsLayerMounts();
    writeFileSync(join(base, 'sandbox.vhdx'), '');
    await mounts.mount({ type: 'windows-layer', source: base, options: ['ro'] }, target);
    const state = readSimulatorHostLayers();
    expect(state.Bindings).to.deep.equal([{ Root: target, Target: `${state.Layers[0]!.MountPath}\\Files\\`, Flags: 0x41 }]);
    await mounts.unmount(target);
    await expectCode(mounts.mount({ type: 'windows-layer', source: mid, options: ['rw'] }, join(dir, 't2')), 'NOT_FOUND');
  });

  it('undoes every step in reverse when any step fails (each call faulted in turn, and the source record)', async () => {
    const steps = ['ActivateLayer', 'PrepareLayer', 'GetLayerMountPath', 'BfSetupFilter'];
    for (const fn of steps) {
      for (const nth of fn === 'GetLayerMountPath' ? [1, 2] : [1]) {
        configureSimulator({ faults: [{ fn, nth }] });
        const err = await expectCode(new WindowsLayerMounts().mount(record(), target), 'HCS_ERROR');
        expect(err.details.op, `${fn} #${nth}`).to.equal(fn);
        configureSimulator({ clearFaults: true });
        expect(readSimulatorHostLayers(), `${fn} #${nth}`).to.deep.equal(EMPTY);
      }
    }
    const failingStore: MountSourceStore = {
      write: () => Promise.reject(new Error('disk full')),
      read: () => Promise.resolve(undefined),
      remove: () => Promise.resolve(),
    };
    await new WindowsLayerMounts({ sources: failingStore })
      .mount(record(), target)
      .then(
        () => expect.fail('mount should fail'),
        (err: Error) => expect(err.message).to.equal('disk full'),
      );
    expect(readSimulatorHostLayers()).to.deep.equal(EMPTY);
  });

  it('a failed unmount step is retried to completion; not a mount is success', async () => {
    const mounts = new WindowsLayerMounts();
    for (const fn of ['BfRemoveMapping', 'UnprepareLayer', 'DeactivateLayer']) {
      await mounts.mount(record(), target);
      configureSimulator({ faults: [{ fn, nth: 1 }] });
      await expectCode(mounts.unmount(target), 'HCS_ERROR');
      configureSimulator({ clearFaults: true });
      expect(readSimulatorHostLayers(), fn).to.not.deep.equal(EMPTY);
      await mounts.unmount(target);
      expect(readSimulatorHostLayers(), fn).to.deep.equal(EMPTY);
      expect(existsSync(`${target}:containerd.io-source`)).to.equal(false);
    }
    await mounts.unmount(target); // not a mount
    await mounts.unmountAll('');
    await mounts.unmountAll(join(dir, 'missing'));
    await expectCode(mounts.mount({ type: 'lcow-layer', source: scratch }, target), 'INVALID_ARGUMENT');
    await expectCode(mounts.mount({ ...record(), options: ['parentLayerPaths=[1]'] }, target), 'INVALID_ARGUMENT');
    await expectCode(mounts.mount({ ...record(), options: ['parentLayerPaths={'] }, target), 'INVALID_ARGUMENT');
    await expectCode(mounts.mount(record(), 'relative'), 'INVALID_ARGUMENT');
    expect(readSimulatorHostLayers()).to.deep.equal(EMPTY);
  });

  it('a mount made by one process is undone from the target alone by another (shim restart)', async () => {
    const stateFile = join(dir, 'sim-state.json');
    const mounted = await runChild(['mount', stateFile, JSON.stringify(record()), target]);
    expect(mounted.code, mounted.stderr).to.equal(0);
    const after = JSON.parse(mounted.stdout) as SimulatorHostLayers;
    expect(after.Layers.map((l) => [l.Path, l.Prepared])).to.deep.equal([[scratch, true]]);
    expect(after.Bindings.map((b) => b.Root)).to.deep.equal([target]);
    const unmounted = await runChild(['unmount', stateFile, target]);
    expect(unmounted.code, unmounted.stderr).to.equal(0);
    expect(JSON.parse(unmounted.stdout)).to.deep.equal(EMPTY);
    expect(existsSync(`${target}:containerd.io-source`)).to.equal(false);
  });

  it('allocateProcessIsolatedContainer mounts the layers at the target, leaves mounts and devices to the container document, and release unmounts', async () => {
    const layers = new WindowsLayerMounts();
    const data = join(dir, 'data');
    mkdirSync(data);
    const spec = {
      root: { path: '' },
      windows: {
        layerFolders: [mid, base, scratch],
        devices: [{ id: 'PCIROOT(0)#PCI(0100)', idType: 'vpci-location-path' }],
      },
      mounts: [
        { destination: 'C:\\data', source: data, options: ['ro'] },
        { destination: '\\\\.\\pipe\\engine', source: '\\\\.\\pipe\\docker_engine' },
      ],
    };
    const c = await allocateProcessIsolatedContainer(spec, { containerId: 'argon', target, layers });
    expect(c.spec.root).to.deep.equal({ path: target });
    expect(c.containerEntries).to.deep.equal([
      { kind: 'mapped-directory', value: { HostPath: data, ContainerPath: 'C:\\data', ReadOnly: true } },
      { kind: 'mapped-pipe', value: { ContainerPipeName: 'engine', HostPath: '\\\\.\\pipe\\docker_engine' } },
    ]);
    expect(c.containerDevices).to.deep.equal([{ Type: 'DeviceInstance', LocationPath: 'PCIROOT(0)#PCI(0100)' }]);
    const hot = await c.resources.addContainerMount({ hostPath: data, containerPath: 'C:\\more' });
    expect(hot).to.deep.equal({ request: { ResourcePath: 'Container/MappedDirectories', RequestType: 'Add', Settings: { HostPath: data, ContainerPath: 'C:\\more' } }, sent: false });
    await c.resources.release();
    await c.resources.release();
    expect(readSimulatorHostLayers()).to.deep.equal(EMPTY);

    await expectCode(allocateContainer(undefined as never, spec, { containerId: 'a1' }), 'INVALID_ARGUMENT');
    await expectCode(allocateProcessIsolatedContainer({ ...spec, windows: { ...spec.windows, devices: [{ id: 'x', idType: 'gpu' }] } }, { containerId: 'a2', target, layers }), 'INVALID_SPEC');
    await expectCode(allocateProcessIsolatedContainer({ ...spec, mounts: [{ destination: '/x', type: 'tmpfs', source: 'tmpfs' }] }, { containerId: 'a3', target, layers }), 'INVALID_SPEC');
    expect(readSimulatorHostLayers()).to.deep.equal(EMPTY);
  });
});
