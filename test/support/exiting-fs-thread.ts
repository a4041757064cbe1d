/**
 * A HostFsWorker thread entry for tests (host-fs-worker.test.ts) that exits as soon as a batch
 * arrives: the worker dying with requests in flight.
 */
import { parentPort } from 'node:worker_threads';

parentPort?.on('message', () => process.exit(3));
parentPort?.postMessage('ready');
