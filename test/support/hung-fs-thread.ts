/**
 * A HostFsWorker thread entry for tests (host-fs-worker.test.ts) that takes every batch and never
 * answers: a path on a share that stopped answering.
 */
import { parentPort } from 'node:worker_threads';

const held: unknown[] = [];
parentPort?.on('message', (batch: unknown) => held.push(batch));
parentPort?.postMessage('ready');
