import { expect } from 'chai';
import { managerView } from '../../../src/devices/manager-view.js';
import type { ScsiDiskRequest } from '../../../src/devices/device-types.js';
import { deviceKit } from './device-test-kit.js';

describe('managerView (the UVM gate and the journal owner ports)', () => {
  it('has exactly the contract members: the replaced acquire, reserve (own or replaced), describe, retryFailedTeardowns', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const acquired: string[] = [];
    const view = managerView(kit.scsi, {
      acquire: (request: ScsiDiskRequest) => {
        acquired.push(request.hostPath);
        return kit.scsi.acquire(request);
      },
    });
    expect(Object.keys(view).sort()).to.deep.equal(['acquire', 'describe', 'reserve', 'retryFailedTeardowns']);
    expect(view, 'no recovery path through a view').to.not.have.property('adopt');
    const a = await view.acquire({ hostPath: '/d/a.vhdx', readOnly: true });
    expect(acquired).to.deep.equal(['/d/a.vhdx']);
    // reserve is the manager's own (bound to it) when not replaced.
    const r = view.reserve({ hostPath: '/d/b.vhdx', readOnly: true });
    expect(r.value).to.deep.include({ controller: 0, lun: 1 });
    const b = await r.commit();
    expect(view.describe()).to.deep.equal(kit.scsi.describe());
    await a.release();
    await b.release();
    await view.retryFailedTeardowns();
    expect(view.describe()).to.deep.equal([]);
  });

  it('gives a manager without reservations (vPCI-like) no reserve', () => {
    const inner = { acquire: () => Promise.reject(new Error('x')), describe: () => [], retryFailedTeardowns: () => Promise.resolve() };
    const view = managerView(inner, { acquire: inner.acquire });
    expect(Object.keys(view).sort()).to.deep.equal(['acquire', 'describe', 'retryFailedTeardowns']);
  });
});
