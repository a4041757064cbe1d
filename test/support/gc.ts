// Forced garbage collection for the tests that check what the library retains (issue 16). Works
// with or without `node --expose-gc`: the flag can be set at run time and the `gc` function read
// from a fresh context.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gcFn: (() => void) | undefined = (globalThis as { gc?: () => void }).gc;

function gcFunction(): () => void {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  return gcFn;
}

/**
 * Full collections after letting the current job end (a WeakRef dereferenced in this job keeps its
 * target until the job ends; a macrotask turn releases it).
 */
export async function forceGc(rounds = 2): Promise<void> {
  const gc = gcFunction();
  for (let i = 0; i < rounds; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    gc();
  }
}

/** The heap in use after a forced collection, in bytes. */
export async function heapAfterGc(): Promise<number> {
  await forceGc(3);
  return process.memoryUsage().heapUsed;
}
