/**
 * Entry of the host file system worker thread (host-fs-worker.ts). Each message is one batch of
 * requests, flat: `[op, path, op, path, …]` (op 0: stat, 1: realpath); the answer is one message
 * with four slots per request, in the same order:
 * - a stat: `[0, kind, size, 0]` (kind 1: regular file, 2: directory, 0: anything else);
 * - a realpath: `[0, resolvedPath, 0, 0]`;
 * - a failure: `[1, code, errno, message]` (node's error code, errno and message).
 * Batches are answered in the order they arrive. Its first message, once the module has loaded, is
 * `'ready'`.
 */
import { realpathSync, statSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

function answer(batch: unknown[]): unknown[] {
  const out = new Array<unknown>(batch.length * 2);
  for (let i = 0, o = 0; i < batch.length; i += 2, o += 4) {
    const path = batch[i + 1] as string;
    try {
      if (batch[i] === 0) {
        const s = statSync(path);
        out[o] = 0;
        out[o + 1] = s.isFile() ? 1 : s.isDirectory() ? 2 : 0;
        out[o + 2] = s.size;
        out[o + 3] = 0;
      } else {
        out[o] = 0;
        out[o + 1] = realpathSync.native(path);
        out[o + 2] = 0;
        out[o + 3] = 0;
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      out[o] = 1;
      out[o + 1] = typeof e?.code === 'string' ? e.code : 'EUNKNOWN';
      out[o + 2] = typeof e?.errno === 'number' ? e.errno : 0;
      out[o + 3] = typeof e?.message === 'string' ? e.message : String(err);
    }
  }
  return out;
}

parentPort?.on('message', (batch: unknown[]) => parentPort!.postMessage(answer(batch)));
parentPort?.postMessage('ready');
