// Shared by the crash-recovery suites (recovery-kill, recovery-sweep): run the recovery-pod
// fixture's children (build / recover / recover-crash) and collect what they report.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RecoveryResult } from './fixtures/recovery-pod.js';

export const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'recovery-pod.js');
/**
 * Where the simulator state files and journals live. A SIGKILL keeps the page cache, so a tmpfs
 * proves the same as a disk here, without paying fsync latency (power loss is out of scope).
 */
export const RECOVERY_TMP = process.env.UVM_RECOVERY_TMP ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());

/** Runs one fixture child to its end (it may SIGKILL itself); resolves with its output. */
export function runChild(mode: string, ...runFiles: string[]): Promise<{ killed: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, mode, ...runFiles], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (stdout += d));
    child.stderr.on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ killed: true, stdout, stderr });
      else if (code === 0) resolve({ killed: false, stdout, stderr });
      else reject(new Error(`${mode} child failed (${code}): ${stderr}`));
    });
  });
}

export interface BuildOutcome {
  killed: boolean;
  /** The last step the child announced before it died. */
  lastStep: number;
  stderr: string;
}

/**
 * Runs the build child and kills it `delayMs` after it announces step `killStep`, or as soon as it
 * announces a later step (so a fast step never lets it escape).
 */
export function buildAndKill(runFile: string, killStep: number, delayMs: number): Promise<BuildOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, 'build', runFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
    let lastStep = -1;
    let scheduled = false;
    let fired = false;
    const fire = (): void => {
      if (fired) return;
      fired = true;
      child.kill('SIGKILL');
    };
    let buffer = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    child.stdout.on('data', (d: string) => {
      buffer += d;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const m = /^step (\d+)/.exec(line);
        if (!m) continue;
        lastStep = Number(m[1]);
        if (lastStep === killStep && !scheduled) {
          scheduled = true;
          setTimeout(fire, delayMs);
        } else if (lastStep > killStep) {
          fire();
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ killed: true, lastStep, stderr });
      else if (code === 0) resolve({ killed: false, lastStep, stderr });
      else reject(new Error(`build child failed (${code}): ${stderr}`));
    });
  });
}

/** Runs one recover child over `runFiles`; resolves with one result per run. */
export async function recover(runFiles: string[]): Promise<RecoveryResult[]> {
  const { stdout, stderr } = await runChild('recover', ...runFiles);
  const results = stdout
    .split('\n')
    .filter((l) => l.startsWith('result '))
    .map((l) => JSON.parse(l.slice('result '.length)) as RecoveryResult);
  if (results.length !== runFiles.length) throw new Error(`recover child reported ${results.length} of ${runFiles.length} runs: ${stderr}`);
  return results;
}

export async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

