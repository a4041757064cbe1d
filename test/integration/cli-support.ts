// Helpers of the CLI end-to-end tests: spawn bin/uvmctl.js, read a simulator trace.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { expect } from 'chai';
import { NULL_CONTAINER_ID } from '../../src/hcs/gcs-bridge-protocol.js';

/** The repository root (this file is build/test/integration/cli-support.js once compiled). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const UVMCTL = path.join(REPO, 'bin', 'uvmctl.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `node bin/uvmctl.js ...args` (logs silent, output piped as UTF-8). */
export function spawnCli(args: string[], env: Record<string, string> = {}): ChildProcessByStdio<null, Readable, Readable> {
  const child = spawn(process.execPath, [UVMCTL, ...args], {
    cwd: REPO,
    env: { ...process.env, UVM_LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  return child;
}

/** Runs `node bin/uvmctl.js ...args` and collects its exit code and output. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, env);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: string) => (stdout += d));
    child.stderr.on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** One line of the simulator's trace. */
export interface TraceLine {
  fn: string;
  id: string | null;
  doc: any;
  hr: number;
}

/** The trace file's lines, parsed; [] when the file does not exist. */
export async function readTrace(file: string): Promise<TraceLine[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as TraceLine);
}

/**
 * The device documents on the wire, in trace order: each HcsModifyComputeSystem document, and each
 * GCS bridge ModifySettings as `{ GuestRequest: <its Request> }` — the CLI runs in the library's
 * default bridge delivery, so an HCS modify carries host halves only and every ModifySettings is
 * addressed to the all-zero container id (checked here). A request with both halves is therefore
 * two documents: `split` builds them from the combined form.
 */
export function modifyDocs(trace: TraceLine[]): any[] {
  return trace.flatMap((t) => {
    if (t.fn === 'HcsModifyComputeSystem') {
      expect(t.doc.GuestRequest, `bridge delivery: an HCS modify carries no GuestRequest: ${JSON.stringify(t.doc)}`).to.equal(undefined);
      return [t.doc];
    }
    if (t.fn === 'bridge:ModifySettings') {
      expect(t.doc.ContainerId, 'ModifySettings addresses the UVM as the all-zero container id').to.equal(NULL_CONTAINER_ID);
      return [{ GuestRequest: t.doc.Request }];
    }
    return [];
  });
}

/**
 * A request with both halves as the bridge delivery sends it (hcsshim's order): an Add is its host
 * half, then its guest half; a Remove its guest half, then its host half.
 */
export function split(combined: { GuestRequest: unknown } & Record<string, unknown>): unknown[] {
  const { GuestRequest, ...host } = combined;
  const guest = { GuestRequest };
  return host.RequestType === 'Remove' ? [guest, host] : [host, guest];
}

/** The index of `doc` in `docs` (deep equality of parsed JSON), asserting it occurs exactly once. */
export function indexOnce(docs: readonly unknown[], doc: unknown): number {
  const hits = docs.flatMap((d, i) => (isDeepStrictEqual(d, doc) ? [i] : []));
  expect(hits, `document ${JSON.stringify(doc)} should occur exactly once`).to.have.length(1);
  return hits[0]!;
}

/** Asserts that each expected document occurs exactly once and that they occur in the given order. */
export function expectInOrder(docs: readonly unknown[], expected: readonly unknown[]): number[] {
  const indices = expected.map((want) => indexOnce(docs, want));
  for (let i = 1; i < indices.length; i++) {
    expect(indices[i], `${JSON.stringify(expected[i])} should come after ${JSON.stringify(expected[i - 1])}`).to.be.greaterThan(indices[i - 1]!);
  }
  return indices;
}

/**
 * Asserts that every document of `earlier` comes before every document of `later` (each occurring
 * exactly once); the documents within each group may come in any order (they are sent at once).
 */
export function expectBefore(docs: readonly unknown[], earlier: readonly unknown[], later: readonly unknown[]): void {
  const last = Math.max(...earlier.map((d) => indexOnce(docs, d)));
  for (const d of later) expect(indexOnce(docs, d), `${JSON.stringify(d)} should come after ${JSON.stringify(earlier)}`).to.be.greaterThan(last);
}

/**
 * Every host Add has its Remove (by ResourcePath and share Name) and every guest Add its Remove
 * (by ResourceType): what the trace adds, it takes away.
 */
export function expectBalanced(docs: readonly any[]): void {
  const count = new Map<string, number>();
  const bump = (key: string, by: number): void => void count.set(key, (count.get(key) ?? 0) + by);
  for (const d of docs) {
    const by = d.RequestType === 'Add' ? 1 : d.RequestType === 'Remove' ? -1 : 0;
    if (d.ResourcePath !== undefined) bump(`host ${d.ResourcePath} ${d.Settings?.Name ?? ''}`, by);
    const g = d.GuestRequest;
    // SCSIDevice (unplug) has a Remove only.
    if (g !== undefined && g.ResourceType !== 'SCSIDevice') bump(`guest ${g.ResourceType}`, g.RequestType === 'Add' ? 1 : g.RequestType === 'Remove' ? -1 : 0);
  }
  const unbalanced = [...count].filter(([, n]) => n !== 0);
  expect(unbalanced, 'adds without removes (or the reverse)').to.deep.equal([]);
}

