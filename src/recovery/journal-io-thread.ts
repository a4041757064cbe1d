/**
 * The journal's I/O thread (src/recovery/journal-io.ts): a worker that performs the journal's
 * appends with blocking system calls, one request at a time in arrival order, so that they never
 * queue behind other work in libuv's thread pool. Each completion is published in the shared
 * completion board (`workerData`, layout in journal-io.ts) before it is answered by message. Not
 * imported by the library: started as a worker by journal-io.ts.
 */
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { BOARD_DONE, boardSlot, type IoReady, type IoReply, type IoRequest } from './journal-io.js';

const board = new Int32Array(workerData as SharedArrayBuffer);

/** Writes all of `text` (a short write continues where it stopped). */
function writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

function serve(request: IoRequest): IoReply {
  try {
    if (request.op === 'close') {
      closeSync(request.fd);
      return { id: request.id, fd: request.fd };
    }
    const opened = request.fd === undefined;
    const fd = request.fd ?? openSync(request.path, request.flags);
    try {
      writeAll(fd, request.text);
      if (request.datasync) fdatasyncSync(fd);
    } catch (err) {
      // A descriptor this request opened is not handed back when its write failed.
      if (opened) closeSync(fd);
      throw err;
    }
    return { id: request.id, fd };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { id: request.id, error: { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall, path: e.path } };
  }
}

parentPort?.on('message', (request: IoRequest) => {
  const reply = serve(request);
  const slot = boardSlot(reply.id);
  board[slot] = reply.error ? 0 : 1;
  board[slot + 1] = reply.error ? -1 : reply.fd;
  // Published after its slot: whoever reads BOARD_DONE ≥ id reads this request's slot.
  Atomics.store(board, BOARD_DONE, reply.id);
  parentPort!.postMessage(reply);
});
parentPort?.postMessage({ ready: true } satisfies IoReady);
