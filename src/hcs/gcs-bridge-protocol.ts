/**
 * The GCS bridge wire format (hcsshim `internal/gcs/prot`): a 16-byte little-endian header
 * `{u32 type, u32 size (header included), u64 id}`, then `size - 16` bytes of UTF-8 JSON.
 * Message types are `kind:4 | category:8 | message id:12 | version:8`.
 */

/** Header size in bytes. */
export const BRIDGE_HEADER_SIZE = 16;
/** The largest message the host accepts from the guest (hcsshim `maxMsgSize`). */
export const BRIDGE_MAX_MESSAGE_SIZE = 0x10000;

export const MessageKind = {
  request: 0x10000000,
  response: 0x20000000,
  notification: 0x30000000,
} as const;
const KIND_MASK = 0xf0000000;

/** RPC codes (the request type without its kind nibble). */
export const BridgeRpc = {
  Create: 0x00100101,
  Start: 0x00100201,
  ShutdownGraceful: 0x00100301,
  ShutdownForced: 0x00100401,
  ExecuteProcess: 0x00100501,
  WaitForProcess: 0x00100601,
  SignalProcess: 0x00100701,
  ResizeConsole: 0x00100801,
  GetProperties: 0x00100901,
  ModifySettings: 0x00100a01,
  NegotiateProtocol: 0x00100b01,
  DumpStacks: 0x00100c01,
  DeleteContainerState: 0x00100d01,
  UpdateContainer: 0x00100e01,
  LifecycleNotification: 0x00100f01,
  ModifyServiceSettings: 0x00200101,
} as const;
export type BridgeRpcName = keyof typeof BridgeRpc;

/** The container notification (guest → host). */
export const CONTAINER_NOTIFICATION_TYPE = 0x30100101;

/** The container id that addresses the UVM itself (hcsshim `nullContainerID`). */
export const NULL_CONTAINER_ID = '00000000-0000-0000-0000-000000000000';
/** hcsshim never sets an activity id: the zero GUID goes out. */
export const NULL_ACTIVITY_ID = NULL_CONTAINER_ID;

/** The protocol version hcsshim negotiates (min = max = 4). */
export const BRIDGE_PROTOCOL_VERSION = 4;

/** One decoded message. */
export interface BridgeFrame {
  type: number;
  id: bigint;
  /** The UTF-8 JSON body. */
  body: Buffer;
}

/** The kind of a message type: request, response, notification, or unknown. */
export function messageKind(type: number): keyof typeof MessageKind | undefined {
  const k = (type & KIND_MASK) >>> 0;
  if (k === MessageKind.request) return 'request';
  if (k === MessageKind.response) return 'response';
  if (k === MessageKind.notification) return 'notification';
  return undefined;
}

/** The RPC name of a request or response type (undefined when unknown). */
export function rpcName(type: number): BridgeRpcName | undefined {
  const code = (type & ~KIND_MASK) >>> 0;
  return (Object.keys(BridgeRpc) as BridgeRpcName[]).find((name) => BridgeRpc[name] === code);
}

/** Request type of an RPC (`0x10000000 | code`). */
export function requestType(rpc: BridgeRpcName): number {
  return (MessageKind.request | BridgeRpc[rpc]) >>> 0;
}

/** Response type of a request type (kind nibble 2). */
export function responseType(type: number): number {
  return (MessageKind.response | (type & ~KIND_MASK)) >>> 0;
}

/** Encodes one message: header, then `body` serialised as JSON (never HTML-escaped; no newline). */
export function encodeFrame(type: number, id: bigint, body: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  const frame = Buffer.allocUnsafe(BRIDGE_HEADER_SIZE + json.length);
  frame.writeUInt32LE(type >>> 0, 0);
  frame.writeUInt32LE(frame.length, 4);
  frame.writeBigUInt64LE(id, 8);
  json.copy(frame, BRIDGE_HEADER_SIZE);
  return frame;
}

/** Why the incoming byte stream cannot be decoded any more. */
export class FrameError extends Error {
  constructor(
    readonly reason: 'bad-size' | 'oversized',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Splits an incoming byte stream into frames. `push` returns the complete frames so far and
 * throws a `FrameError` for a size below the header or above `maxSize` (the stream is unusable
 * after that: the bridge fails as a whole). The oversized check runs on the header alone, so no
 * oversized body is ever buffered.
 */
export class FrameReader {
  #buffered: Buffer[] = [];
  #length = 0;

  constructor(private readonly maxSize = BRIDGE_MAX_MESSAGE_SIZE) {}

  push(chunk: Buffer): BridgeFrame[] {
    this.#buffered.push(chunk);
    this.#length += chunk.length;
    const frames: BridgeFrame[] = [];
    let data = this.#buffered.length === 1 ? this.#buffered[0]! : Buffer.concat(this.#buffered, this.#length);
    let offset = 0;
    while (data.length - offset >= BRIDGE_HEADER_SIZE) {
      const type = data.readUInt32LE(offset);
      const size = data.readUInt32LE(offset + 4);
      if (size < BRIDGE_HEADER_SIZE) throw new FrameError('bad-size', `bridge message of ${size} bytes is shorter than its header`);
      if (size > this.maxSize) throw new FrameError('oversized', `bridge message of ${size} bytes is over the ${this.maxSize}-byte limit`);
      if (data.length - offset < size) break;
      const id = data.readBigUInt64LE(offset + 8);
      frames.push({ type, id, body: Buffer.from(data.subarray(offset + BRIDGE_HEADER_SIZE, offset + size)) });
      offset += size;
    }
    data = data.subarray(offset);
    this.#buffered = data.length > 0 ? [data] : [];
    this.#length = data.length;
    return frames;
  }
}
