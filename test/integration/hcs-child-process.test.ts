// Processes that load the binding, run HCS operations and exit on their own must exit cleanly:
// exit code 0, no signal (a crash at teardown — koffi unloading the library under a native thread,
// a callback into a torn-down environment — shows up as SIGSEGV/SIGABRT here), and the keep-alive
// must hold the process open for an operation nobody awaits.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const script = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hcs-child.js');

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe('hcs binding: child processes', function () {
  this.timeout(180_000);

  it('20 consecutive processes run operations and exit with code 0 and no signal', async function () {
    for (let i = 0; i < 20; i++) {
      const r = await runChild(['ops']);
      expect({ i, code: r.code, signal: r.signal, stderr: r.stderr }).to.deep.equal({ i, code: 0, signal: null, stderr: '' });
      // 'late-ok' is printed by an operation only the keep-alive waits for.
      expect(r.stdout.split('\n').filter(Boolean)).to.deep.equal(['ok', 'late-ok']);
    }
  });

  it('a library that cannot be loaded → LIBRARY_LOAD_FAILED', async function () {
    const r = await runChild(['load-failure'], { UVM_HCS_LIBRARY: '/nonexistent/libhcssim.so' });
    expect(r.code).to.equal(0);
    expect(r.signal).to.equal(null);
    expect(r.stdout.trim()).to.equal('load-failed-ok');
  });
});
