// The operation driver and ComputeSystem over a scripted in-memory ComputeCore: the test decides
// when (and how) each operation completes, so the ordering rules are checked without a library.
import { expect } from 'chai';
import sinon from 'sinon';
import { UvmError } from '../../../src/core/errors.js';
import { pendingPromises } from '../../../src/core/pending-promises.js';
import type {
  ComputeCore,
  Guid,
  OperationCompletion,
  OperationHandle,
  SystemHandle,
  WideString,
} from '../../../src/hcs/computecore.js';
import { formatGuid, packageRoot, recycleWide, resolveLibraryPath, toWide, wideDocument } from '../../../src/hcs/computecore.js';
import { join } from 'node:path';
import { ComputeSystem } from '../../../src/hcs/compute-system.js';
import { FakeHcs } from '../../../src/hcs/fake-hcs.js';
import { HcsError, HResult } from '../../../src/hcs/hcs-error.js';
import { isKeepingProcessAlive, lateOutcomeOf, OperationDriver, pendingOperationCount } from '../../../src/hcs/operation-driver.js';

interface FakeOp {
  readonly handle: OperationHandle;
  readonly context: number;
  fn?: string;
  document?: string;
  /** The document buffer the call was given (HCS may read it until the operation completes). */
  buffer?: WideString | null;
  started: boolean;
  done: boolean;
  hr: number;
  result?: string;
  closed: number;
  cancels: number;
}

/** A ComputeCore whose operations complete only when the test says so. */
class ScriptedComputeCore implements ComputeCore {
  readonly path = 'scripted';
  readonly isSimulator = false;
  readonly simConfigure = undefined;
  callback: OperationCompletion | undefined;
  registrations = 0;
  readonly ops: FakeOp[] = [];
  /** HRESULT the next operation-taking call returns synchronously. */
  syncHr = 0;
  /** Complete every call that starts, on the calling thread, before the call returns. */
  completeInCall = false;
  /** Run on HcsCancelOperation (default: nothing, like an operation already applied). */
  onCancel: (op: FakeOp) => void = () => undefined;
  closedSystems: SystemHandle[] = [];

  registerCompletion(fn: OperationCompletion): unknown {
    this.registrations++;
    this.callback = fn;
    return 'callback-pointer';
  }
  createOperation(context: number, callback: unknown): OperationHandle | null {
    expect(callback).to.equal('callback-pointer');
    const op: FakeOp = { handle: { id: this.ops.length } as unknown as OperationHandle, context, started: false, done: false, hr: 0, closed: 0, cancels: 0 };
    this.ops.push(op);
    return op.handle;
  }
  closeOperation(handle: OperationHandle): void {
    this.op(handle).closed++;
  }
  getOperationResult(handle: OperationHandle): { hr: number; document: string | undefined } {
    const op = this.op(handle);
    if (!op.started) return { hr: HResult.HCS_E_OPERATION_NOT_STARTED, document: undefined };
    if (!op.done) return { hr: HResult.HCS_E_OPERATION_PENDING, document: undefined };
    return { hr: op.hr, document: op.result };
  }
  cancelOperation(handle: OperationHandle): number {
    const op = this.op(handle);
    op.cancels++;
    this.onCancel(op);
    return 0;
  }
  createComputeSystem(_id: WideString, configuration: WideString, op: OperationHandle): { hr: number; system: SystemHandle | null } {
    return { hr: this.use(op, 'create', configuration), system: { system: 1 } as unknown as SystemHandle };
  }
  openComputeSystem(): Promise<{ hr: number; system: SystemHandle | null }> {
    throw new Error('not used');
  }
  closeComputeSystem(system: SystemHandle): void {
    this.closedSystems.push(system);
  }
  startComputeSystem = (_s: SystemHandle, op: OperationHandle, d: WideString | null): number => this.use(op, 'start', d);
  shutDownComputeSystem = (_s: SystemHandle, op: OperationHandle, d: WideString | null): number => this.use(op, 'shutdown', d);
  terminateComputeSystem = (_s: SystemHandle, op: OperationHandle, d: WideString | null): number => this.use(op, 'terminate', d);
  getComputeSystemProperties = (_s: SystemHandle, op: OperationHandle, d: WideString | null): number => this.use(op, 'properties', d);
  modifyComputeSystem = (_s: SystemHandle, op: OperationHandle, d: WideString): number => this.use(op, 'modify', d);
  enumerateComputeSystems = (d: WideString | null, op: OperationHandle): number => this.use(op, 'enumerate', d);
  grantVmAccess(): Promise<number> {
    throw new Error('not used');
  }
  revokeVmAccess(): Promise<number> {
    throw new Error('not used');
  }
  nameToGuid(): { hr: number; guid: Guid } {
    throw new Error('not used');
  }

  /** Completes an operation the way HCS does: result recorded, then the callback with its context. */
  complete(op: FakeOp, hr = 0, result?: string): void {
    expect(op.done, 'completed twice').to.equal(false);
    op.done = true;
    op.hr = hr;
    op.result = result;
    this.callback?.(op.handle, op.context);
  }
  last(): FakeOp {
    return this.ops[this.ops.length - 1];
  }
  private op(handle: OperationHandle): FakeOp {
    const op = this.ops.find((o) => o.handle === handle);
    if (!op) throw new Error('unknown operation handle');
    if (op.closed > 0) throw new Error('operation used after close');
    return op;
  }
  private use(handle: OperationHandle, fn: string, doc: WideString | null): number {
    const op = this.op(handle);
    op.fn = fn;
    op.buffer = doc;
    op.document = doc === null ? undefined : doc.toString('utf16le').split('\0')[0]; // a PCWSTR ends at its NUL
    if (this.syncHr < 0) return this.syncHr;
    op.started = true;
    if (this.completeInCall) this.complete(op);
    return 0;
  }
}

/** Captured before any fake timers: completions are processed in a setImmediate task. */
const realSetImmediate = globalThis.setImmediate;
const flush = async (): Promise<void> => {
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 20; i++) await Promise.resolve();
    await new Promise<void>((resolve) => realSetImmediate(resolve));
  }
};

function settled<T>(p: Promise<T>): { done: boolean; value?: T; error?: unknown } {
  const s: { done: boolean; value?: T; error?: unknown } = { done: false };
  p.then(
    (v) => Object.assign(s, { done: true, value: v }),
    (e: unknown) => Object.assign(s, { done: true, error: e }),
  );
  return s;
}

describe('OperationDriver (scripted library)', function () {
  let lib: ScriptedComputeCore;
  let driver: OperationDriver;
  let clock: sinon.SinonFakeTimers | undefined;

  beforeEach(() => {
    lib = new ScriptedComputeCore();
    driver = new OperationDriver(lib, { maxConcurrentOperations: 2 });
  });
  afterEach(() => {
    clock?.restore();
    clock = undefined;
  });

  const run = (options?: { timeoutMs?: number; signal?: AbortSignal }, inputs?: unknown[]): Promise<string | undefined> => {
    const doc = toWide('{"x":1}');
    return driver.run({
      op: 'HcsModifyComputeSystem',
      systemId: 'vm',
      call: (op) => lib.modifyComputeSystem({} as SystemHandle, op, doc),
      inputs: inputs ?? [doc],
      options,
    });
  };

  it('registers one completion callback per library and resolves with the result document', async function () {
    const a = settled(run());
    const b = settled(run());
    await flush();
    expect(lib.registrations).to.equal(1);
    expect(lib.ops.map((o) => o.document)).to.deep.equal(['{"x":1}', '{"x":1}']);
    expect(isKeepingProcessAlive()).to.equal(true);
    expect(pendingOperationCount()).to.equal(2);
    expect(a.done).to.equal(false);

    lib.complete(lib.ops[1], 0, '{"ok":true}');
    lib.complete(lib.ops[0], 0, '');
    await flush();
    expect(a).to.deep.equal({ done: true, value: undefined });
    expect(b).to.deep.equal({ done: true, value: '{"ok":true}' });
    expect(lib.ops.map((o) => o.closed)).to.deep.equal([1, 1]);
    expect(pendingOperationCount()).to.equal(0);
    expect(isKeepingProcessAlive()).to.equal(false);
  });

  it('a failed operation → HcsError from its result document; the operation is closed once', async function () {
    const p = settled(run());
    await flush();
    lib.complete(lib.last(), HResult.HCS_E_INVALID_JSON, JSON.stringify({ ErrorMessage: 'bad', ErrorEvents: [{ Message: 'm' }] }));
    await flush();
    const e = p.error as HcsError;
    expect(e).to.be.instanceOf(HcsError);
    expect(e).to.include({ code: 'HCS_ERROR', op: 'HcsModifyComputeSystem', systemId: 'vm', hresult: HResult.HCS_E_INVALID_JSON, errorMessage: 'bad' });
    expect(e.events).to.deep.equal([{ Message: 'm' }]);
    expect(lib.last().closed).to.equal(1);
  });

  it('a synchronous failure reads the operation result, closes and rejects with the call’s HRESULT', async function () {
    lib.syncHr = HResult.E_HANDLE;
    const p = settled(run());
    await flush();
    const e = p.error as HcsError;
    expect(e.hresult).to.equal(HResult.E_HANDLE);
    expect(lib.last().closed).to.equal(1);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('a stray completion of a closed operation never completes the operation that reuses its context slot', async function () {
    lib.syncHr = HResult.E_HANDLE;
    const refused = settled(run());
    await flush();
    const stale = lib.last();
    lib.syncHr = 0;
    const p = settled(run());
    await flush();
    const live = lib.last();
    expect(live.context, 'a new id').to.not.equal(stale.context);
    expect((live.context - 1) % (1 << 20), 'the same slot').to.equal((stale.context - 1) % (1 << 20));
    lib.callback!(stale.handle, stale.context);
    await flush();
    expect(p.done).to.equal(false);
    expect(live.closed).to.equal(0);
    lib.complete(live);
    await flush();
    expect(p).to.deep.equal({ done: true, value: undefined });
    expect((refused.error as HcsError).hresult).to.equal(HResult.E_HANDLE);
    expect(pendingOperationCount()).to.equal(0);
    expect(isKeepingProcessAlive()).to.equal(false);
  });

  it('bounds the operations in HCS at once', async function () {
    const all = Array.from({ length: 5 }, () => settled(run()));
    await flush();
    expect(lib.ops).to.have.length(2);
    expect(driver.size).to.equal(5);
    lib.complete(lib.ops[0]);
    await flush();
    expect(lib.ops).to.have.length(3);
    while (lib.ops.some((o) => !o.done)) {
      lib.complete(lib.ops.find((o) => !o.done)!);
      await flush();
    }
    expect(lib.ops).to.have.length(5);
    expect(all.every((s) => s.done && s.error === undefined)).to.equal(true);
  });

  it('a close that throws still lets go of the slot and the pending entry: the next call starts, nothing stays pending', async function () {
    const close = lib.closeOperation.bind(lib);
    let throws = 1;
    lib.closeOperation = (handle) => {
      close(handle);
      if (throws-- > 0) throw new Error('close failed');
    };
    const all = Array.from({ length: 3 }, () => settled(run()));
    await flush();
    expect(lib.ops).to.have.length(2);
    lib.complete(lib.ops[0]);
    await flush();
    expect(lib.ops, 'the freed slot starts the queued call').to.have.length(3);
    lib.complete(lib.ops[1]);
    lib.complete(lib.ops[2]);
    await flush();
    expect(all.every((s) => s.done && s.error === undefined)).to.equal(true);
    expect(pendingOperationCount()).to.equal(0);
    expect(driver.size).to.equal(0);
  });

  it('timeout → TIMEOUT at once, cancel tried (best effort); the handle is closed only once HCS completes', async function () {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const p = settled(run({ timeoutMs: 100 }));
    await flush();
    const op = lib.last();
    clock.tick(100);
    await flush();
    expect(op.cancels).to.equal(1);
    const e = p.error as HcsError;
    expect(e.code).to.equal('TIMEOUT');
    expect(e.hresult).to.equal(HResult.HCS_E_OPERATION_TIMEOUT);
    const late = lateOutcomeOf(e);
    expect(late).to.not.equal(undefined);
    expect(op.closed, 'the handle is kept while HCS may still use it').to.equal(0);
    expect(pendingOperationCount()).to.equal(1);

    lib.complete(op, HResult.E_FAIL, JSON.stringify({ ErrorMessage: 'late failure' }));
    await flush();
    const outcome = await late!;
    expect(outcome.applied).to.equal(false);
    expect(((outcome as { error: unknown }).error as HcsError).hresult).to.equal(HResult.E_FAIL);
    expect(op.closed).to.equal(1);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('the slot of an abandoned operation stays taken until HCS completes it; a late success is reported', async function () {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const p = settled(run({ timeoutMs: 10 }));
    const other = settled(run());
    const third = settled(run());
    await flush();
    clock.tick(10);
    await flush();
    expect((p.error as HcsError).code).to.equal('TIMEOUT');
    expect(lib.ops, 'two slots, both still taken').to.have.length(2);
    lib.complete(lib.ops[0], 0, '{"applied":true}');
    await flush();
    expect(await lateOutcomeOf(p.error)!).to.deep.equal({ applied: true, value: '{"applied":true}' });
    expect(lib.ops, 'the freed slot goes to the queued call').to.have.length(3);
    lib.complete(lib.ops[1]);
    lib.complete(lib.ops[2]);
    await flush();
    expect(other.done && third.done).to.equal(true);
  });

  it('AbortSignal → ABORTED at once; an aborted signal never reaches HCS', async function () {
    const controller = new AbortController();
    const p = settled(run({ signal: controller.signal }));
    await flush();
    controller.abort();
    await flush();
    expect((p.error as HcsError).code).to.equal('ABORTED');
    expect(lib.last().closed).to.equal(0);
    lib.complete(lib.last(), 0);
    await flush();
    expect(lib.last().closed).to.equal(1);

    const before = lib.ops.length;
    const q = settled(run({ signal: AbortSignal.abort() }));
    await flush();
    expect((q.error as HcsError).code).to.equal('ABORTED');
    expect(lateOutcomeOf(q.error)).to.equal(undefined);
    expect(lib.ops.length).to.equal(before);
  });

  it('a call that times out while queued never creates an operation', async function () {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const a = settled(run());
    const b = settled(run());
    const queued = settled(run({ timeoutMs: 5 }));
    await flush();
    expect(lib.ops).to.have.length(2);
    clock.tick(5);
    await flush();
    expect((queued.error as HcsError).code).to.equal('TIMEOUT');
    expect((queued.error as HcsError).cause).to.equal(undefined);
    lib.complete(lib.ops[0]);
    lib.complete(lib.ops[1]);
    await flush();
    expect(lib.ops).to.have.length(2);
    expect(a.done && b.done).to.equal(true);
  });

  it('long deadlines share a timer: fired together, never early, at most 10 ms late; a finished call leaves no timer', async function () {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const timers = clock.countTimers();
    const done = settled(run({ timeoutMs: 60_000 }));
    await flush();
    expect(clock.countTimers(), 'one timer for the deadline').to.equal(timers + 1);
    lib.complete(lib.last());
    await flush();
    expect(done).to.deep.equal({ done: true, value: undefined });
    expect(clock.countTimers(), 'its timer is cleared with its last call').to.equal(timers);

    const a = settled(run({ timeoutMs: 60_000 }));
    const b = settled(run({ timeoutMs: 60_000 }));
    await flush();
    expect(clock.countTimers(), 'two calls started together: one timer').to.equal(timers + 1);
    clock.tick(60_000 - 1);
    await flush();
    expect(a.done || b.done, 'never early').to.equal(false);
    clock.tick(11);
    await flush();
    expect([(a.error as HcsError).code, (b.error as HcsError).code]).to.deep.equal(['TIMEOUT', 'TIMEOUT']);
    lib.complete(lib.ops[1]);
    lib.complete(lib.ops[2]);
    await flush();
    expect(pendingOperationCount()).to.equal(0);
    expect(clock.countTimers()).to.equal(timers);
  });

  it('calls one after another (each started from the previous one’s continuation) share one deadline timer; none is left once they stop', async function () {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const timers = clock.countTimers();
    let completions = 0;
    const onCall = (): void => {
      // HCS completes each call as soon as it is made (in a later turn, as a callback would).
      realSetImmediate(() => {
        completions++;
        lib.complete(lib.last());
      });
    };
    const counts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const p = run({ timeoutMs: 60_000 });
      onCall();
      expect(await p).to.equal(undefined);
      counts.push(clock.countTimers() - timers);
    }
    expect(completions).to.equal(5);
    expect(counts, 'one group timer throughout').to.deep.equal([1, 1, 1, 1, 1]);
    await flush();
    expect(clock.countTimers(), 'swept in the turn after the last call').to.equal(timers);
    expect(pendingOperationCount()).to.equal(0);

    // The next call starts a group (and timer) again.
    const next = settled(run({ timeoutMs: 60_000 }));
    await flush();
    expect(clock.countTimers() - timers).to.equal(1);
    lib.complete(lib.last());
    await flush();
    expect(next).to.deep.equal({ done: true, value: undefined });
    expect(clock.countTimers()).to.equal(timers);
  });

  it('without a deadline or signal a call with a free slot starts at once (no queue); with the slots taken it waits', async function () {
    const a = run();
    expect(lib.ops, 'created synchronously').to.have.length(1);
    const b = run();
    const c = settled(run());
    expect(lib.ops).to.have.length(2);
    expect(driver.size).to.equal(3);
    lib.complete(lib.ops[0]);
    await flush();
    expect(lib.ops).to.have.length(3);
    lib.complete(lib.ops[1]);
    lib.complete(lib.ops[2]);
    await Promise.all([a, b]);
    await flush();
    expect(c.done).to.equal(true);
    expect(driver.size).to.equal(0);
  });

  it('rejects bad options with INVALID_ARGUMENT', async function () {
    expect(() => new OperationDriver(lib, { maxConcurrentOperations: 0 })).to.throw(UvmError).with.property('code', 'INVALID_ARGUMENT');
    const p = settled(run({ timeoutMs: Number.NaN }));
    await flush();
    expect(UvmError.is(p.error, 'INVALID_ARGUMENT')).to.equal(true);
    expect(lib.ops).to.have.length(0);
  });
});

describe('ComputeSystem (scripted library)', function () {
  let lib: ScriptedComputeCore;
  let system: ComputeSystem;
  const handle = { system: 7 } as unknown as SystemHandle;

  beforeEach(() => {
    lib = new ScriptedComputeCore();
    system = new ComputeSystem('vm-7', handle, new OperationDriver(lib));
  });

  it('sends JSON.stringify of the modify request and of the property query; parses the result', async function () {
    const m = settled(system.modify({ ResourcePath: 'VirtualMachine/Devices/Plan9/Shares', RequestType: 'Add', Settings: { Name: 'a"b\\c' } }));
    await flush();
    expect(JSON.parse(lib.last().document!)).to.deep.equal({
      ResourcePath: 'VirtualMachine/Devices/Plan9/Shares',
      RequestType: 'Add',
      Settings: { Name: 'a"b\\c' },
    });
    lib.complete(lib.last());
    await flush();
    expect(m.done && m.error === undefined).to.equal(true);

    const q = settled(system.properties({ PropertyTypes: ['SimulatorState'] }));
    await flush();
    expect(lib.last().fn).to.equal('properties');
    expect(lib.last().document).to.equal('{"PropertyTypes":["SimulatorState"]}');
    lib.complete(lib.last(), 0, '{"State":"Running"}');
    await flush();
    expect(q.value).to.deep.equal({ State: 'Running' });
  });

  it('start/shutdown/terminate pass no options document', async function () {
    for (const [call, fn] of [
      [() => system.start(), 'start'],
      [() => system.shutdown(), 'shutdown'],
      [() => system.terminate(), 'terminate'],
    ] as const) {
      const p = settled(call());
      await flush();
      expect(lib.last()).to.include({ fn, document: undefined });
      lib.complete(lib.last());
      await flush();
      expect(p.done).to.equal(true);
    }
  });

  it('after close every call rejects with HANDLE_CLOSED; close is idempotent; the handle is closed once', async function () {
    system.close();
    system.close();
    expect(lib.closedSystems).to.deep.equal([handle]);
    // Each rejection is observed as it is made (no unhandled-then-handled rejection warnings).
    const calls = [system.start(), system.shutdown(), system.terminate(), system.modify({}), system.properties({})].map((p) => settled(p));
    await flush();
    for (const s of calls) {
      expect(UvmError.is(s.error, 'HANDLE_CLOSED')).to.equal(true);
    }
    expect(lib.ops).to.have.length(0);
  });

  it('closes the native handle only when the operations in flight are done', async function () {
    const t = settled(system.terminate());
    await flush();
    system.close();
    expect(lib.closedSystems).to.deep.equal([]);
    expect(system.inFlight).to.equal(1);
    lib.complete(lib.last());
    await flush();
    expect(t.done && t.error === undefined).to.equal(true);
    expect(lib.closedSystems).to.deep.equal([handle]);
  });

  it('a call abandoned at its deadline keeps the handle open until HCS completes it; a queued one withdrawn at its deadline frees it at once', async function () {
    const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const one = new ComputeSystem('vm-9', { system: 9 } as unknown as SystemHandle, new OperationDriver(lib, { maxConcurrentOperations: 1, reservedForTeardown: 0 }));
      const running = settled(one.modify({ ResourcePath: 'a' }, { timeoutMs: 50 }));
      const queued = settled(one.modify({ ResourcePath: 'b' }, { timeoutMs: 50 }));
      await flush();
      expect(lib.ops).to.have.length(1);
      expect(one.inFlight).to.equal(2);
      clock.tick(50);
      await flush();
      expect((running.error as HcsError).code).to.equal('TIMEOUT');
      expect((queued.error as HcsError).code).to.equal('TIMEOUT');
      expect(lateOutcomeOf(running.error)).to.not.equal(undefined);
      expect(lateOutcomeOf(queued.error), 'nothing reached HCS').to.equal(undefined);
      expect(lib.ops, 'the queued call never created an operation').to.have.length(1);
      expect(one.inFlight).to.equal(1);
      one.close();
      expect(lib.closedSystems, 'HCS still runs an operation on the handle').to.deep.equal([]);
      lib.complete(lib.last());
      await flush();
      expect(await lateOutcomeOf(running.error)).to.deep.equal({ applied: true, value: undefined });
      expect(lib.last().closed).to.equal(1);
      expect(one.inFlight).to.equal(0);
      expect(lib.closedSystems).to.have.length(1);
      expect(pendingPromises.byKind()).to.not.have.property('hcs-operation');
    } finally {
      clock.restore();
    }
  });

  /** A system whose binding runs one call at a time, with modifies 'a' (in HCS), 'b' and 'c' (queued). */
  async function threeQueued(n: number): Promise<{ one: ComputeSystem; first: ReturnType<typeof settled>; second: ReturnType<typeof settled>; third: ReturnType<typeof settled> }> {
    const one = new ComputeSystem(`vm-${n}`, { system: n } as unknown as SystemHandle, new OperationDriver(lib, { maxConcurrentOperations: 1, reservedForTeardown: 0 }));
    const first = settled(one.modify({ ResourcePath: 'a' }));
    const second = settled(one.modify({ ResourcePath: 'b' }));
    const third = settled(one.modify({ ResourcePath: 'c' }));
    await flush();
    return { one, first, second, third };
  }

  it('a queued call that fails synchronously when its turn comes starts the next one; every call is counted out', async function () {
    const { one, first, second, third } = await threeQueued(10);
    expect(lib.ops).to.have.length(1);
    lib.syncHr = HResult.E_INVALIDARG;
    lib.complete(lib.last());
    await flush();
    expect(first).to.deep.equal({ done: true, value: undefined });
    expect((second.error as HcsError).hresult).to.equal(HResult.E_INVALIDARG);
    expect((third.error as HcsError).hresult).to.equal(HResult.E_INVALIDARG);
    expect(lib.ops.map((o) => o.closed)).to.deep.equal([1, 1, 1]);
    expect(one.inFlight).to.equal(0);
    expect(pendingOperationCount()).to.equal(0);
    expect(pendingPromises.byKind()).to.not.have.property('hcs-operation');
  });

  /** Completes the running operations one at a time until none is left; the ResourcePaths in the order HCS got them. */
  async function drainInOrder(): Promise<string[]> {
    while (lib.ops.some((o) => !o.done)) {
      lib.complete(lib.ops.find((o) => !o.done)!);
      await flush();
    }
    return lib.ops.map((o) => (JSON.parse(o.document!) as { ResourcePath: string }).ResourcePath);
  }

  it('queued calls of a system start by priority, equal ones in arrival order; the running ones are not touched', async function () {
    const one = new ComputeSystem('vm-11', { system: 11 } as unknown as SystemHandle, new OperationDriver(lib, { maxConcurrentOperations: 8, perSystemOperations: 1, reservedForTeardown: 0 }));
    const calls = [
      one.modify({ ResourcePath: 'running' }, { priority: 0 }),
      one.modify({ ResourcePath: 'a0' }),
      one.modify({ ResourcePath: 'b0' }, { priority: 0 }),
      one.modify({ ResourcePath: 'c2' }, { priority: 2 }),
      one.modify({ ResourcePath: 'd1' }, { priority: 1 }),
      one.modify({ ResourcePath: 'e2' }, { priority: 2 }),
      one.modify({ ResourcePath: 'f7' }, { priority: 7 }),
    ];
    await flush();
    expect(await drainInOrder()).to.deep.equal(['running', 'f7', 'c2', 'e2', 'd1', 'a0', 'b0']);
    await Promise.all(calls);
    expect(one.inFlight).to.equal(0);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('a queued call is overtaken at most 4 × maxConcurrentOperations times (no starvation), then keeps its place', async function () {
    const two = new ComputeSystem('vm-12', { system: 12 } as unknown as SystemHandle, new OperationDriver(lib, { maxConcurrentOperations: 2, reservedForTeardown: 0 }));
    const calls = [two.modify({ ResourcePath: 'r1' }), two.modify({ ResourcePath: 'r2' }), two.modify({ ResourcePath: 'low' })];
    for (let i = 1; i <= 10; i++) calls.push(two.modify({ ResourcePath: `high${i}` }, { priority: 3 }));
    await flush();
    // high1..high8 overtake `low` (8 = 4 × 2 times, the bound); high9 and high10 queue behind it.
    expect(await drainInOrder()).to.deep.equal(['r1', 'r2', ...Array.from({ length: 8 }, (_, i) => `high${i + 1}`), 'low', 'high9', 'high10']);
    await Promise.all(calls);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('a call withdrawn at its deadline leaves the priority order of the others intact', async function () {
    const one = new ComputeSystem('vm-13', { system: 13 } as unknown as SystemHandle, new OperationDriver(lib, { maxConcurrentOperations: 8, perSystemOperations: 1, reservedForTeardown: 0 }));
    const controller = new AbortController();
    const calls = [one.modify({ ResourcePath: 'running' }), one.modify({ ResourcePath: 'low' }), one.modify({ ResourcePath: 'mid' }, { priority: 1 })];
    const gone = settled(one.modify({ ResourcePath: 'withdrawn' }, { priority: 5, signal: controller.signal }));
    calls.push(one.modify({ ResourcePath: 'top' }, { priority: 6 }));
    controller.abort();
    await flush();
    expect(UvmError.is(gone.error, 'ABORTED')).to.equal(true);
    expect(await drainInOrder()).to.deep.equal(['running', 'top', 'mid', 'low']);
    await Promise.all(calls);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('an ill-typed priority → INVALID_ARGUMENT at once; nothing reaches HCS', async function () {
    for (const priority of [-1, 1.5, 8, Number.NaN, Infinity, '1' as unknown as number, null as unknown as number]) {
      const m = settled(system.modify({ ResourcePath: 'x' }, { priority }));
      await flush();
      expect(UvmError.is(m.error, 'INVALID_ARGUMENT'), String(priority)).to.equal(true);
    }
    expect(lib.ops).to.have.length(0);
    expect(system.inFlight).to.equal(0);
    // FakeHcs checks it the same way (and records a valid one).
    const fake = new FakeHcs();
    const fakeSystem = await fake.createComputeSystem('vm-f', {});
    await fakeSystem.start();
    const bad = settled(fakeSystem.modify({ ResourcePath: 'x' }, { priority: 8 }));
    await flush();
    expect(UvmError.is(bad.error, 'INVALID_ARGUMENT')).to.equal(true);
    expect(fake.calls.map((c) => c.fn)).to.deep.equal(['create', 'start']);
  });

  it('a completion delivered on the calling thread by a call that a drain started (a queued call) is drained in a later turn', async function () {
    const { first, second, third } = await threeQueued(14);
    expect(lib.ops).to.have.length(1);
    lib.completeInCall = true;
    lib.complete(lib.last());
    await flush();
    expect([first, second, third]).to.deep.equal([
      { done: true, value: undefined },
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
    expect(lib.ops.map((o) => [o.document, o.closed])).to.deep.equal([
      ['{"ResourcePath":"a"}', 1],
      ['{"ResourcePath":"b"}', 1],
      ['{"ResourcePath":"c"}', 1],
    ]);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('modify, start, shutdown and terminate resolve with undefined whatever result document HCS returns', async function () {
    const p = settled(system.modify({ ResourcePath: 'x' }));
    await flush();
    lib.complete(lib.last(), 0, '{"unexpected":true}');
    await flush();
    expect(p).to.deep.equal({ done: true, value: undefined });
    expect(lib.last().closed).to.equal(1);
    for (const call of [() => system.start(), () => system.shutdown(), () => system.terminate()]) {
      const q = settled(call());
      await flush();
      lib.complete(lib.last(), 0, '{"unexpected":true}');
      await flush();
      expect(q).to.deep.equal({ done: true, value: undefined });
      expect(lib.last().closed).to.equal(1);
    }
  });

  it('a document buffer stays with its operation until HCS completes it, even after a timeout or abort; it is then reused, never by two calls at once', async function () {
    const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const controller = new AbortController();
      const timedOut = settled(system.modify({ ResourcePath: 'timed-out' }, { timeoutMs: 50 }));
      const aborted = settled(system.modify({ ResourcePath: 'aborted' }, { signal: controller.signal }));
      await flush();
      const [first, second] = lib.ops;
      clock.tick(50);
      controller.abort();
      await flush();
      expect((timedOut.error as HcsError).code).to.equal('TIMEOUT');
      expect((aborted.error as HcsError).code).to.equal('ABORTED');
      const later = settled(system.modify({ ResourcePath: 'later' }));
      await flush();
      const third = lib.last();
      expect(third.buffer).to.not.equal(first.buffer, 'the timed-out operation still owns its document');
      expect(third.buffer).to.not.equal(second.buffer, 'the aborted operation still owns its document');
      expect(first.buffer!.toString('utf16le').split('\0')[0]).to.equal(first.document);
      expect(second.buffer!.toString('utf16le').split('\0')[0]).to.equal(second.document);
      lib.complete(first);
      lib.complete(second);
      lib.complete(third);
      await flush();
      expect(later.done).to.equal(true);
      const next = [settled(system.modify({ ResourcePath: 'n1' })), settled(system.modify({ ResourcePath: 'n2' })), settled(system.modify({ ResourcePath: 'n3' }))];
      await flush();
      const buffers = lib.ops.slice(-3).map((o) => o.buffer);
      expect(new Set(buffers).size, 'each buffer handed back once: no two calls share one').to.equal(3);
      expect(lib.ops.slice(-3).map((o) => o.document)).to.deep.equal(['n1', 'n2', 'n3'].map((r) => JSON.stringify({ ResourcePath: r })));
      for (const o of lib.ops.slice(-3)) lib.complete(o);
      await flush();
      expect(next.every((n) => n.done)).to.equal(true);
      expect(system.inFlight).to.equal(0);
      expect(pendingOperationCount()).to.equal(0);
    } finally {
      clock.restore();
    }
  });

  it('asyncDispose waits for the operations in flight', async function () {
    const t = settled(system.start());
    await flush();
    const disposed = settled(system[Symbol.asyncDispose]());
    await flush();
    expect(disposed.done).to.equal(false);
    lib.complete(lib.last());
    await flush();
    expect(t.done && disposed.done).to.equal(true);
    expect(lib.closedSystems).to.have.length(1);
  });

  it('concurrent asyncDispose calls all settle once the operations in flight are done (issue 16)', async function () {
    const t = settled(system.modify({}));
    await flush();
    const disposes = [settled(system[Symbol.asyncDispose]()), settled(system[Symbol.asyncDispose]()), settled(system[Symbol.asyncDispose]())];
    await flush();
    expect(disposes.map((d) => d.done)).to.deep.equal([false, false, false]);
    lib.complete(lib.last());
    await flush();
    expect(t.done).to.equal(true);
    expect(disposes.map((d) => d.done && d.error === undefined)).to.deep.equal([true, true, true]);
    expect(lib.closedSystems).to.deep.equal([handle]);
    // A dispose after the handle is gone resolves at once.
    const late = settled(system[Symbol.asyncDispose]());
    await flush();
    expect(late.done).to.equal(true);
  });

  it('an unparseable properties document → HCS_ERROR', async function () {
    const q = settled(system.properties({}));
    await flush();
    lib.complete(lib.last(), 0, '{oops');
    await flush();
    expect(UvmError.is(q.error, 'HCS_ERROR')).to.equal(true);
  });
});

/** Characters of a 2 KiB UTF-16 buffer (NUL included). */
const WIDE_CHARS = 1024;

describe('computecore helpers', function () {
  it('toWide encodes NUL-terminated UTF-16LE, surrogate pairs included', function () {
    const w = toWide('a€😀');
    expect([...w]).to.deep.equal([0x61, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde, 0, 0]);
  });

  it('wideDocument: a NUL-terminated UTF-16LE document in a buffer reused once recycled; a large one gets its own buffer', function () {
    const a = wideDocument('a€😀');
    expect([...a.subarray(0, 10)]).to.deep.equal([0x61, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde, 0, 0]);
    const b = wideDocument('{"x":1}');
    expect(b).to.not.equal(a, 'a buffer in use is never handed out twice');
    recycleWide(a);
    const c = wideDocument('xy');
    expect(c).to.equal(a, 'reused once recycled');
    expect(c.toString('utf16le').split('\0')[0]).to.equal('xy');
    const large = 'z'.repeat(5000);
    const d = wideDocument(large);
    expect(d.length).to.equal(10002);
    recycleWide(d);
    expect(wideDocument('q')).to.not.equal(d, 'a large document buffer is not kept');
    recycleWide(b);
    recycleWide(c);
    const pooled = toWide('p'.repeat(WIDE_CHARS - 1));
    expect(pooled.length).to.equal(2048);
    recycleWide(pooled);
    const e = wideDocument('r');
    expect(e).to.not.equal(pooled, 'a toWide buffer of the same length (a slice of the shared pool) is never adopted');
    recycleWide(e);
  });

  it('formatGuid renders lower-case GUID text', function () {
    expect(formatGuid({ Data1: 0x9342d47a, Data2: 0x1bab, Data3: 0x5709, Data4: [0x98, 0x69, 0xc8, 0x40, 0xb2, 0xea, 0xc5, 0x01] })).to.equal(
      '9342d47a-1bab-5709-9869-c840b2eac501',
    );
    expect(formatGuid({ Data1: 1, Data2: 2, Data3: 3, Data4: [0, 0, 0, 0, 0, 0, 0, 4] })).to.equal('00000001-0002-0003-0000-000000000004');
  });
});

describe('library path resolution', function () {
  let saved: string | undefined;
  beforeEach(() => (saved = process.env.UVM_HCS_LIBRARY));
  afterEach(() => {
    if (saved === undefined) delete process.env.UVM_HCS_LIBRARY;
    else process.env.UVM_HCS_LIBRARY = saved;
  });

  it('explicit option > env UVM_HCS_LIBRARY > platform default', function () {
    process.env.UVM_HCS_LIBRARY = '/opt/hcs/libcustom.so';
    expect(resolveLibraryPath({ libraryPath: '/explicit.so' })).to.equal('/explicit.so');
    expect(resolveLibraryPath()).to.equal('/opt/hcs/libcustom.so');
    delete process.env.UVM_HCS_LIBRARY;
    const expected = process.platform === 'win32' ? 'computecore.dll' : join(packageRoot(), 'build', 'native', 'libhcssim.so');
    expect(resolveLibraryPath()).to.equal(expected);
  });
});

describe('ComputeSystem start timeout (scripted library)', function () {
  it('startTimeoutMs bounds start() when the caller gives no timeoutMs, and only start()', async function () {
    const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const lib = new ScriptedComputeCore();
      lib.onCancel = (op) => lib.complete(op, HResult.E_ABORT);
      const system = new ComputeSystem('vm-8', { system: 8 } as unknown as SystemHandle, new OperationDriver(lib), { startTimeoutMs: 50 });
      const start = settled(system.start({ signal: new AbortController().signal }));
      const modify = settled(system.modify({ ResourcePath: 'x' }));
      await flush();
      clock.tick(50);
      await flush();
      expect((start.error as HcsError).code).to.equal('TIMEOUT');
      expect(modify.done).to.equal(false);
      expect(lib.ops.find((o) => o.fn === 'modify')!.cancels).to.equal(0);
      lib.complete(lib.ops.find((o) => o.fn === 'modify')!);
      await flush();
      expect(modify.done && modify.error === undefined).to.equal(true);
    } finally {
      clock.restore();
    }
  });
});
