// uvmctl under signals and crashes (issue 12), through the binary on the simulator with latency on
// and its persisted state (HCSSIM_STATE_FILE), which stands in for real HCS outliving the process:
// - SIGINT mid-allocation: exit 130, one `uvmctl:` line, and nothing left in HCS;
// - a run --journal killed with SIGKILL mid-allocation, then `uvmctl down <journal>`: nothing left.
// The signal is sent when the run announces the second container, i.e. with the first one
// allocated and the second in flight (every HCS call takes HCSSIM_LATENCY_MS).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { REPO, UVMCTL, runCli, spawnCli } from './cli-support.js';

const LATENCY_MS = '40';

interface Killed {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs uvmctl and sends `signal` once stderr shows `trigger`. */
function runAndSignal(args: string[], env: Record<string, string>, trigger: string, signal: NodeJS.Signals): Promise<Killed & { sent: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, env);
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d: string) => (stdout += d));
    child.stderr.on('data', (d: string) => {
      stderr += d;
      if (!sent && stderr.includes(trigger)) {
        sent = true;
        child.kill(signal);
      }
    });
    child.on('error', reject);
    child.on('close', (code, sig) => resolve({ code, signal: sig, stdout, stderr, sent }));
  });
}

/**
 * The compute systems HCS still has, from the simulator's persisted state (each with its devices;
 * VM-access grants are file ACLs that outlive the VM, as on Windows, and are not listed here).
 */
function systemsLeft(stateFile: string): unknown[] {
  return (JSON.parse(readFileSync(stateFile, 'utf8')) as { Systems: unknown[] }).Systems;
}

describe('uvmctl: signals, crashes and `uvmctl down` (simulator latency and persisted state)', function () {
  this.timeout(180_000); // a safety net on a loaded machine

  let dir: string;
  let scenario: string;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'uvmctl-signals-'));
    const containers = ['a', 'b', 'c'];
    for (const id of containers) {
      await mkdir(path.join(dir, 'bundles', id), { recursive: true });
      writeFileSync(
        path.join(dir, 'bundles', id, 'config.json'),
        JSON.stringify({
          windows: { layerFolders: [`../../host/layers/${id}`, '../../host/layers/base', `../../host/scratch/${id}`] },
          mounts: [{ destination: '/data', type: 'bind', source: '../../host/data', options: ['ro'] }],
        }),
      );
    }
    scenario = path.join(dir, 'scenario.json');
    writeFileSync(
      scenario,
      JSON.stringify({
        uvm: { id: `signals-${process.pid}`, os: 'linux', vpmem: { count: 4, maxSizeBytes: 67108864 } },
        containers: containers.map((id) => ({ id, bundle: `bundles/${id}` })),
        fixtures: [
          { type: 'sparse-file', path: 'host/layers/base/layer.vhd', sizeBytes: 8 << 20 },
          ...containers.flatMap((id) => [
            { type: 'sparse-file', path: `host/layers/${id}/layer.vhd`, sizeBytes: 4 << 20 },
            { type: 'sparse-file', path: `host/scratch/${id}/sandbox.vhdx`, sizeBytes: 1 << 30 },
          ]),
          { type: 'directory', path: 'host/data' },
        ],
      }),
    );
  });
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('SIGINT mid-allocation: aborts, releases, terminates the UVM; exit 130, one line, nothing left in HCS', async () => {
    const stateFile = path.join(dir, 'hcs-state.json');
    const env = { HCSSIM_STATE_FILE: stateFile, HCSSIM_LATENCY_MS: LATENCY_MS };
    const r = await runAndSignal(['run', scenario], env, 'allocating container b (2/3)', 'SIGINT');
    expect(r.sent, r.stderr).to.equal(true);
    expect(r.code, r.stderr).to.equal(130);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('uvmctl: '));
    expect(lines, r.stderr).to.deep.equal([`uvmctl: SIGINT: interrupted; everything allocated was released and UVM signals-${process.pid} terminated`]);
    expect(r.stdout).to.equal('');
    expect(systemsLeft(stateFile), 'HCS holds nothing after the interrupted run').to.deep.equal([]);
    // The next run starts from a clean HCS (it used to fail HCS_E_SYSTEM_ALREADY_EXISTS).
    const again = await runCli(['run', scenario, '--quiet'], { HCSSIM_STATE_FILE: stateFile });
    expect(again.code, again.stderr).to.equal(0);
    expect(systemsLeft(stateFile)).to.deep.equal([]);
  });

  it('a run --journal killed with SIGKILL mid-allocation, then `uvmctl down <journal>`: everything released, UVM terminated, nothing left', async () => {
    const stateFile = path.join(dir, 'hcs-state.json');
    const journal = path.join(dir, 'run.journal.json');
    const env = { HCSSIM_STATE_FILE: stateFile, HCSSIM_LATENCY_MS: LATENCY_MS };
    const r = await runAndSignal(['run', scenario, '--journal', journal], env, 'allocating container b (2/3)', 'SIGKILL');
    expect(r.signal, r.stderr).to.equal('SIGKILL');
    expect(systemsLeft(stateFile), 'the killed run left its UVM in HCS').to.have.length(1);
    expect(existsSync(journal)).to.equal(true);

    const down = await runCli(['down', journal, '--json'], { HCSSIM_STATE_FILE: stateFile });
    expect(down.code, down.stderr).to.equal(0);
    const report = JSON.parse(down.stdout) as { terminated: boolean; released: string[]; uvm: { id: string } };
    expect(report).to.deep.include({ terminated: true, uvm: { id: `signals-${process.pid}` } });
    expect(report.released).to.include('a');
    expect(systemsLeft(stateFile), 'HCS holds nothing after uvmctl down').to.deep.equal([]);
    expect(existsSync(journal), 'the journal is discarded with the UVM').to.equal(false);
  });

  it('uvmctl down on a journal that does not exist: exit 1, NOT_FOUND, and a JSON error with --json', async () => {
    const r = await runCli(['down', path.join(dir, 'none.json'), '--json']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^uvmctl: NOT_FOUND: no journal at /);
    expect(JSON.parse(r.stdout)).to.deep.include({ ok: false });
  });

  it('stdout closed early (`| head -c0`): no EPIPE stack trace', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [UVMCTL, 'help'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy();
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.stderr).to.not.match(/EPIPE|at .*\.js/);
    expect(r.code).to.equal(0);
  });
});
