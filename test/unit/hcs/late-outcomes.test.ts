// LateOutcomeSystem over a scripted HcsSystem: what happens to modifies given up at their deadline.
import { expect } from 'chai';
import { HcsError, HResult } from '../../../src/hcs/hcs-error.js';
import type { HcsCallOptions, HcsSystem } from '../../../src/hcs/hcs-api.js';
import type { SystemExit } from '../../../src/hcs/system-events.js';
import { LateOutcomeSystem, resourceKeyOf, undoOf } from '../../../src/hcs/late-outcomes.js';
import { withLateOutcome, type LateOutcome } from '../../../src/hcs/operation-driver.js';
import type { ModifySettingRequest } from '../../../src/hcs/schema.js';

interface Call {
  request: ModifySettingRequest;
  options?: HcsCallOptions;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Every modify waits until the test settles it; `timeOut` rejects it the way the driver does. */
class ScriptedSystem implements HcsSystem {
  readonly id = 'vm';
  readonly calls: Call[] = [];
  modifyTimeoutMs = 1000;
  start = async (): Promise<void> => undefined;
  shutdown = async (): Promise<void> => undefined;
  terminate = async (): Promise<void> => undefined;
  properties = async (): Promise<unknown> => ({});
  closed = false;
  close(): void {
    this.closed = true;
  }
  modify(request: ModifySettingRequest, options?: HcsCallOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => this.calls.push({ request, options, resolve, reject }));
  }
  /** The call gives up at its deadline; returns the function that completes it late. */
  timeOut(call: Call): (applied: boolean) => void {
    let settle!: (o: LateOutcome) => void;
    const late = new Promise<LateOutcome>((r) => (settle = r));
    call.reject(withLateOutcome(new HcsError({ op: 'HcsModifyComputeSystem', hresult: HResult.HCS_E_OPERATION_TIMEOUT, code: 'TIMEOUT' }), late));
    return (applied) => settle(applied ? { applied: true, value: undefined } : { applied: false, error: new HcsError({ op: 'x', hresult: HResult.E_FAIL }) });
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 30; i++) await Promise.resolve();
};

const addVpmem: ModifySettingRequest = {
  ResourcePath: 'VirtualMachine/Devices/VirtualPMem/Devices/0',
  RequestType: 'Add',
  Settings: { HostPath: 'C:\\l.vhd' },
  GuestRequest: { RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: { DeviceNumber: 0, MountPath: '/run/layers/p0' } },
};
const removeVpmem = undoOf(addVpmem);

describe('LateOutcomeSystem', function () {
  let inner: ScriptedSystem;
  let system: LateOutcomeSystem;
  beforeEach(() => {
    inner = new ScriptedSystem();
    system = new LateOutcomeSystem(inner, { retry: { firstDelayMs: 1, maxDelayMs: 2 } });
  });

  it('keys: ResourcePath, share name for collections, guest path for guest-only requests', function () {
    expect(resourceKeyOf(addVpmem)).to.equal('VirtualMachine/Devices/VirtualPMem/Devices/0');
    expect(resourceKeyOf({ ResourcePath: 'VirtualMachine/Devices/Plan9/Shares', RequestType: 'Add', Settings: { Name: '3' } })).to.equal('VirtualMachine/Devices/Plan9/Shares/3');
    expect(resourceKeyOf({ GuestRequest: { RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/m' } } })).to.equal('guest:MappedVirtualDisk:/m');
    expect(undoOf(addVpmem).RequestType).to.equal('Remove');
    expect(undoOf(addVpmem).GuestRequest?.RequestType).to.equal('Remove');
  });

  it('a late success of an Add is undone; describe() lists it until then; a Remove meanwhile is taken over', async function () {
    const p = system.modify(addVpmem).catch((e: unknown) => e);
    await flush();
    const complete = inner.timeOut(inner.calls[0]);
    expect(((await p) as HcsError).code).to.equal('TIMEOUT');
    expect(system.describe()).to.deep.equal([{ kind: 'vpmem-device', key: 'VirtualMachine/Devices/VirtualPMem/Devices/0', state: 'creating', refCount: 0, leftover: true, attempts: 0 }]);
    await system.modify(removeVpmem); // the manager's compensation: taken over, no HCS call
    expect(inner.calls).to.have.length(1);
    const settled = system.settled();
    complete(true);
    await flush();
    expect(inner.calls).to.have.length(2);
    expect(inner.calls[1].request).to.deep.equal(removeVpmem);
    expect(system.describe()[0]?.state).to.equal('destroying');
    inner.calls[1].reject(new HcsError({ op: 'x', hresult: HResult.E_FAIL }));
    // The retry follows after its (1–2 ms) delay: wait for it, however loaded the machine is.
    while (inner.calls.length < 3) await new Promise((r) => setTimeout(r, 1));
    expect(inner.calls, 'retried after a failure').to.have.length(3);
    inner.calls[2].resolve();
    await settled;
    expect(system.describe()).to.deep.equal([]);
  });

  it('a late failure frees the resource; an Add waiting for it then goes ahead', async function () {
    const first = system.modify(addVpmem).catch((e: unknown) => e);
    await flush();
    const complete = inner.timeOut(inner.calls[0]);
    await first;
    const second = system.modify(addVpmem);
    await flush();
    expect(inner.calls, 'the second Add waits for the outcome').to.have.length(1);
    complete(false);
    await flush();
    expect(inner.calls).to.have.length(2);
    inner.calls[1].resolve();
    await second;
    expect(system.describe()).to.deep.equal([]);
  });

  it('an Add waiting for an outcome is bounded by the default modify timeout: TIMEOUT, not started', async function () {
    system = new LateOutcomeSystem(inner, { defaultModifyTimeoutMs: 5 });
    const first = system.modify(addVpmem).catch((e: unknown) => e);
    await flush();
    const complete = inner.timeOut(inner.calls[0]);
    await first;
    const err = (await system.modify(addVpmem).catch((e: unknown) => e)) as HcsError;
    expect(err.code).to.equal('TIMEOUT');
    expect(err.message).to.match(/not started/);
    expect(inner.calls).to.have.length(1);
    complete(false);
    await system.settled();
  });

  it('a removal applied late answers the retried removal without an HCS call', async function () {
    const first = system.modify(removeVpmem).catch((e: unknown) => e);
    await flush();
    const complete = inner.timeOut(inner.calls[0]);
    await first;
    complete(true);
    await system.settled();
    await system.modify(removeVpmem);
    expect(inner.calls).to.have.length(1);
    // Only once: a later removal goes to HCS again.
    const again = system.modify(removeVpmem);
    await flush();
    expect(inner.calls).to.have.length(2);
    inner.calls[1].resolve();
    await again;
  });

  it('after stop() (VM gone) nothing is undone and describe() is empty', async function () {
    const first = system.modify(addVpmem).catch((e: unknown) => e);
    await flush();
    const complete = inner.timeOut(inner.calls[0]);
    await first;
    system.close();
    expect(inner.closed).to.equal(true);
    expect(system.describe()).to.deep.equal([]);
    await system.settled();
    complete(true);
    await flush();
    expect(inner.calls).to.have.length(1);
  });
});

/**
 * Every member of `HcsSystem`. `satisfies Record<keyof HcsSystem, …>` makes this list fail to
 * compile when a member is added to the interface and not listed here, so the test below checks
 * that `LateOutcomeSystem` forwards it.
 */
const HCS_SYSTEM_MEMBERS = {
  id: 'value',
  start: 'method',
  shutdown: 'method',
  terminate: 'method',
  modify: 'method',
  properties: 'method',
  close: 'method',
  exited: 'value',
} as const satisfies Record<keyof HcsSystem, 'value' | 'method'>;

describe('LateOutcomeSystem forwards every HcsSystem member', function () {
  it('each method reaches the wrapped system with its arguments and result; each value is the wrapped one', async function () {
    const seen: { name: string; args: unknown[] }[] = [];
    const exit = Promise.resolve({ type: 'SystemExited' } as unknown as SystemExit);
    const record =
      (name: string, result: unknown) =>
      (...args: unknown[]): unknown => {
        seen.push({ name, args });
        return result;
      };
    const inner: HcsSystem = {
      id: 'vm-forward',
      start: record('start', Promise.resolve()) as HcsSystem['start'],
      shutdown: record('shutdown', Promise.resolve()) as HcsSystem['shutdown'],
      terminate: record('terminate', Promise.resolve()) as HcsSystem['terminate'],
      modify: record('modify', Promise.resolve()) as HcsSystem['modify'],
      properties: record('properties', Promise.resolve({ answer: 42 })) as HcsSystem['properties'],
      close: record('close', undefined) as HcsSystem['close'],
      exited: exit,
    };
    const wrapper = new LateOutcomeSystem(inner);
    const options = { timeoutMs: 1234 };
    for (const [name, kind] of Object.entries(HCS_SYSTEM_MEMBERS)) {
      const key = name as keyof HcsSystem;
      if (kind === 'value') {
        expect(wrapper[key], name).to.equal(inner[key]);
        continue;
      }
      seen.length = 0;
      // A request with no resource key goes straight through (no late-outcome bookkeeping).
      const args: unknown[] = name === 'modify' ? [{ GuestRequest: null }, options] : name === 'properties' ? [{ PropertyTypes: [] }, options] : name === 'close' ? [] : [options];
      const result = await (wrapper[key] as (...a: unknown[]) => unknown)(...args);
      expect(seen.map((s) => s.name), name).to.deep.equal([name]);
      expect(seen[0]!.args, name).to.deep.equal(args);
      if (name === 'properties') expect(result).to.deep.equal({ answer: 42 });
    }
  });
});
