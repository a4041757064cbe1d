/**
 * Entry of the hvsocket worker thread (one per listener and the connection it accepts; see
 * hvsocket-windows.ts). Loads the Winsock module it is told to (ws2_32 through koffi, or a test
 * fake), runs the blocking select loop until it ends, and releases Winsock. The main thread gets
 * every outcome as a message on `port`; a failure to load Winsock arrives as `load-failed`.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { UvmError, type UvmErrorCode } from '../core/errors.js';
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
  code: UvmErrorCode;
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
  // A UvmError keeps its code (NOT_SUPPORTED off Windows, …); anything else is a load failure.
  post({
    t: 'load-failed',
    code: UvmError.is(e) ? e.code : 'LIBRARY_LOAD_FAILED',
    message: `cannot load the Winsock module ${data.winsockModule}: ${e instanceof Error ? e.message : String(e)}`,
    details: UvmError.is(e) ? { ...e.details } : { module: data.winsockModule },
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
