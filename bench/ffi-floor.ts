// The floor of an asynchronous native call through koffi, for `npm run bench ffi`: the native
// library build/native/libhcsfloor.so (native/floor/floor.cpp) has the shape of an HCS operation
// and no work at all (create with a completion callback, start with a UTF-16 document, a worker
// thread calls the callback, read the result, close). The callback is registered with koffi as the
// HCS binding registers its completion callback, is called from a foreign thread in the same way,
// and hands the completion over as the binding does (recorded, resolved in batches per event-loop
// turn); nothing else. Measured in the same process as the
// simulator, the two differ by exactly what the simulator and the library add.
import { join } from 'node:path';
import koffi from 'koffi';
import { packageRoot, toWide } from '../src/hcs/computecore.js';
import { COMPLETION_BATCH } from '../src/hcs/operation-driver.js';

export interface Floor {
  /** One round trip: create, start with `document`, wait for the completion, result, close. */
  roundTrip(document: Buffer): Promise<void>;
}

let loaded: Floor | undefined;

/** Loads the floor library once per process and starts `threads` worker threads. */
export function loadFloor(threads: number): Floor {
  if (loaded) return loaded;
  const lib = koffi.load(join(packageRoot(), 'build', 'native', 'libhcsfloor.so'));
  const proto = koffi.proto('void UVMO_FLOOR_COMPLETION(void *operation, uintptr_t context)');
  const f = {
    init: lib.func('int32_t FloorInit(int32_t threads)'),
    create: lib.func('void *FloorCreateOperation(uintptr_t context, UVMO_FLOOR_COMPLETION *callback)'),
    start: lib.func('int32_t FloorStart(void *operation, const char16_t *document)'),
    // The out parameter as the binding passes it (src/hcs/computecore.ts): one reused pointer-sized Buffer.
    result: lib.func('int32_t FloorGetOperationResult(void *operation, void *result)'),
    close: lib.func('void FloorCloseOperation(void *operation)'),
  };
  f.init(threads);
  const waiting = new Map<number, () => void>();
  let next = 1;
  // The binding's delivery (src/hcs/operation-driver.ts): the callback records the completion and
  // returns; recorded completions are resolved at most COMPLETION_BATCH per event-loop turn.
  let completed: number[] = [];
  let scheduled = false;
  const drain = (): void => {
    scheduled = false;
    const batch = completed.length <= COMPLETION_BATCH ? completed : completed.slice(0, COMPLETION_BATCH);
    completed = batch === completed ? [] : completed.slice(COMPLETION_BATCH);
    if (completed.length > 0) schedule();
    for (const id of batch) {
      const resolve = waiting.get(id);
      waiting.delete(id);
      resolve?.();
    }
  };
  const schedule = (): void => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  };
  const callback = koffi.register((_op: unknown, context: number | bigint) => {
    completed.push(Number(context));
    schedule();
  }, koffi.pointer(proto));
  const keep = { lib, proto, f, callback };
  const resultSlot = Buffer.alloc(koffi.sizeof('void *'));
  // A callback from a native thread does not keep Node alive: hold a timer while calls wait.
  const alive = setInterval(() => undefined, 1 << 30);
  alive.unref();
  loaded = {
    async roundTrip(document: Buffer): Promise<void> {
      void keep;
      const id = next++;
      const done = new Promise<void>((resolve) => waiting.set(id, resolve));
      if (waiting.size === 1) alive.ref();
      const op = f.create(id, callback);
      f.start(op, document);
      await done;
      if (waiting.size === 0) alive.unref();
      f.result(op, resultSlot);
      f.close(op);
    },
  };
  return loaded;
}

export { toWide };
