import { expect } from 'chai';
import { FakeHcs } from '../../../src/hcs/fake-hcs.js';
import type { HcsCallOptions } from '../../../src/hcs/hcs-api.js';
import { rejectsWithCode } from '../devices/device-test-kit.js';

describe('FakeHcs call priority (as the binding)', () => {
  const bad: unknown[] = [8, -1, 1.5, '1', null];

  it('every call checks HcsCallOptions.priority: INVALID_ARGUMENT before anything is recorded; a valid one is recorded', async () => {
    const hcs = new FakeHcs();
    for (const priority of bad) {
      await rejectsWithCode(hcs.createComputeSystem('vm', {}, { priority } as unknown as HcsCallOptions), 'INVALID_ARGUMENT');
    }
    expect(hcs.calls).to.deep.equal([]);
    const system = await hcs.createComputeSystem('vm', {}, { priority: 3 });
    const calls: ((options: HcsCallOptions) => Promise<unknown>)[] = [
      (o) => system.start(o),
      (o) => system.properties({}, o),
      (o) => system.modify({ ResourcePath: 'VirtualMachine/Devices/Plan9/Shares', RequestType: 'Add', Settings: { Name: '1' } }, o),
    ];
    for (const call of calls) {
      for (const priority of bad) await rejectsWithCode(call({ priority } as unknown as HcsCallOptions), 'INVALID_ARGUMENT');
      await call({ priority: 7 });
    }
    await system.modify({ ResourcePath: 'VirtualMachine/Devices/Plan9/Shares', RequestType: 'Remove', Settings: { Name: '1' } });
    expect(hcs.systems.get('vm')!.attached()).to.deep.equal([]);
    for (const priority of bad) await rejectsWithCode(system.shutdown({ priority } as unknown as HcsCallOptions), 'INVALID_ARGUMENT');
    await system.shutdown({ priority: 7 });
    for (const priority of bad) await rejectsWithCode(system.terminate({ priority } as unknown as HcsCallOptions), 'INVALID_ARGUMENT');
    await system.terminate({});
    expect(hcs.calls.map((c) => [c.fn, c.priority])).to.deep.equal([
      ['create', 3],
      ['start', 7],
      ['properties', 7],
      ['modify', 7],
      ['modify', undefined],
      ['shutdown', 7],
      ['terminate', undefined],
    ]);
    expect('priority' in hcs.calls[6]!).to.equal(false);
    system.close();
  });
});
