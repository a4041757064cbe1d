/**
 * Entry of the hvsocket worker thread (one per listener and the connection it accepts; see
 * hvsocket-windows.ts). Loads the Winsock module it is told to (ws2_32 through koffi, or a test
 * fake), runs the blocking select loop until it ends, and releases Winsock. The main thread gets
 * every outcome as a message on `port`; a failure to load Winsock arrives as `load-failed`.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { runHvSocketLoop, type HostMessage, type LoopMessage } from './hvsocket-windows-loop.js';
import type { Winsock, WinsockModule } from './hvsocket-windows-winsock.js';

/** What the main thread passes to the worker. */
export interface HvSocketWorkerData {
  vmId: string;
  serviceId: string;
  /** URL of a module exporting `createWinsock(data)`. */
  winsockModule: string;
  winsockData: unknown;
  port: MessagePort;
}

/** Posted instead of the loop's messages when Winsock could not be created. */
export interface LoadFailedMessage {
  t: 'load-failed';
  code: string;
  message: string;
  details: Record<string, unknown>;
}

const data = workerData as HvSocketWorkerData;
const port = data.port;
const post = (message: LoopMessage | LoadFailedMessage, transfer?: ArrayBuffer[]): void => port.postMessage(message, transfer ?? []);

let ws: Winsock | undefined;
try {
  const mod = (await import(data.winsockModule)) as WinsockModule;
  ws = mod.createWinsock(data.winsockData);
} catch (e) {
  const err = e as { code?: unknown; message?: unknown; details?: unknown };
  post({
    t: 'load-failed',
    code: typeof err.code === 'string' ? err.code : 'LIBRARY_LOAD_FAILED',
    message: String(err.message ?? e),
    details: typeof err.details === 'object' && err.details !== null ? (err.details as Record<string, unknown>) : {},
  });
}
if (ws !== undefined) {
  try {
    runHvSocketLoop(
      ws,
      {
        receive: () => receiveMessageOnPort(port)?.message as HostMessage | undefined,
        post,
      },
      { vmId: data.vmId, serviceId: data.serviceId },
    );
  } finally {
    ws.dispose();
  }
}
port.close();
