import { expect } from 'chai';
import sinon from 'sinon';
import { UvmError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { createResourceDelivery, fullyRemoved, newRemovalProgress } from '../../../src/devices/guest-delivery.js';
import { UvmLifecycle } from '../../../src/devices/uvm-lifecycle.js';
import { guestRequest, hostRequest } from '../../../src/devices/wire-requests.js';
import type { HcsSystem } from '../../../src/hcs/hcs-api.js';
import { HcsError, HResult } from '../../../src/hcs/hcs-error.js';
import { rejectsWithCode } from './device-test-kit.js';

const hcsErr = (hr: number): HcsError => new HcsError({ op: 'HcsModifyComputeSystem', hresult: hr });

function stubSystem(): HcsSystem & { modify: sinon.SinonStub } {
  return {
    id: 'uvm1',
    start: sinon.stub().resolves(),
    shutdown: sinon.stub().resolves(),
    terminate: sinon.stub().resolves(),
    modify: sinon.stub().resolves(),
    properties: sinon.stub().resolves({}),
    close: sinon.stub(),
  };
}

const host = hostRequest('VirtualMachine/Devices/Plan9/Shares', 'Add', { Name: '0', AccessName: '0', Path: '/x', Port: 564, Flags: 4 });
const guest = guestRequest('Add', 'MappedDirectory', { MountPath: '/run/mounts/plan9/0', ShareName: '0', Port: 564 });
const hostRemove = hostRequest('VirtualMachine/Devices/Plan9/Shares', 'Remove', { Name: '0', AccessName: '0', Port: 564 });
const guestRemove = guestRequest('Remove', 'MappedDirectory', { MountPath: '/run/mounts/plan9/0', ShareName: '0', Port: 564 });

describe('ResourceDelivery', () => {
  let logger: ReturnType<typeof createLogger>;
  beforeEach(() => {
    logger = createLogger({ level: 'silent' });
  });

  describe('through HcsModifyComputeSystem (default)', () => {
    it('a combined Add is one document', async () => {
      const system = stubSystem();
      await createResourceDelivery(system, new UvmLifecycle(), logger).addCombined(host, guest, newRemovalProgress(), guestRemove);
      expect(system.modify.args.map((a) => a[0])).to.deep.equal([{ ...host, GuestRequest: guest }]);
    });

    it('a failed combined Add (host applied, guest failed) sends a host-only Remove of the same path and settings', async () => {
      const system = stubSystem();
      system.modify.onFirstCall().rejects(hcsErr(HResult.E_FAIL));
      await rejectsWithCode(createResourceDelivery(system, new UvmLifecycle(), logger).addCombined(host, guest, newRemovalProgress(), guestRemove), 'HCS_ERROR');
      expect(system.modify.args[1][0]).to.deep.equal({ ...host, RequestType: 'Remove' });
    });

    it('a not-found compensation is success (not logged); any other compensation failure is logged', async () => {
      for (const [hr, warnings] of [
        [HResult.E_NOT_FOUND, 0],
        [HResult.E_ACCESSDENIED, 1],
      ] as const) {
        const system = stubSystem();
        const warn = sinon.spy(logger, 'warn');
        system.modify.onFirstCall().rejects(hcsErr(HResult.E_FAIL));
        system.modify.onSecondCall().rejects(hcsErr(hr));
        const progress = newRemovalProgress();
        const err = await rejectsWithCode(createResourceDelivery(system, new UvmLifecycle(), logger).addCombined(host, guest, progress, guestRemove), 'HCS_ERROR');
        expect((err as unknown as HcsError).hresult).to.equal(HResult.E_FAIL);
        // Not found: nothing left. Access denied: the host half stays for a retried teardown.
        expect(progress).to.deep.equal({ split: true, guestDone: true, hostDone: warnings === 0 });
        expect(warn.callCount).to.equal(warnings);
        warn.restore();
      }
    });

    it('a guest-only request is a document with only GuestRequest', async () => {
      const system = stubSystem();
      await createResourceDelivery(system, new UvmLifecycle(), logger).guest(guest);
      expect(system.modify.args[0][0]).to.deep.equal({ GuestRequest: guest });
    });

    it('a failed combined Remove is retried half by half; a half already gone (not found) counts as removed', async () => {
      const system = stubSystem();
      const d = createResourceDelivery(system, new UvmLifecycle(), logger);
      const progress = newRemovalProgress();
      system.modify.onFirstCall().rejects(hcsErr(HResult.E_FAIL)); // HCS removed the host half, then failed
      system.modify.onSecondCall().rejects(hcsErr(HResult.E_FAIL)); // guest half: transient failure
      system.modify.onThirdCall().resolves(); // guest half
      system.modify.onCall(3).rejects(hcsErr(HResult.E_NOT_FOUND)); // host half is already gone
      await rejectsWithCode(d.removeCombined(hostRemove, guestRemove, progress), 'HCS_ERROR');
      await rejectsWithCode(d.removeCombined(hostRemove, guestRemove, progress), 'HCS_ERROR');
      await d.removeCombined(hostRemove, guestRemove, progress);
      expect(progress).to.deep.equal({ guestDone: true, hostDone: true, split: true });
      expect(system.modify.args.map((a) => a[0])).to.deep.equal([
        { ...hostRemove, GuestRequest: guestRemove },
        { GuestRequest: guestRemove },
        { GuestRequest: guestRemove },
        hostRemove,
      ]);
    });
  });

  describe('through a GuestConnection', () => {
    it('Add: host then guest; a guest failure rolls the host back; Remove: guest then host, resumable', async () => {
      const system = stubSystem();
      const connection = { modifySettings: sinon.stub().resolves() };
      const d = createResourceDelivery(system, new UvmLifecycle(), logger, connection);
      await d.addCombined(host, guest, newRemovalProgress(), guestRemove);
      sinon.assert.callOrder(system.modify, connection.modifySettings);
      expect(system.modify.args[0][0]).to.deep.equal(host);
      expect(connection.modifySettings.args[0][0]).to.deep.equal(guest);

      // The guest half may have applied before it reported the failure: its Remove goes first
      // ("not found" = it was not applied), then the host half is rolled back.
      connection.modifySettings.onCall(1).rejects(new UvmError('HCS_ERROR', 'guest failed'));
      connection.modifySettings.onCall(2).rejects(hcsErr(HResult.E_NOT_FOUND));
      await rejectsWithCode(d.addCombined(host, guest, newRemovalProgress(), guestRemove), 'HCS_ERROR');
      expect(connection.modifySettings.args[2][0]).to.deep.equal(guestRemove);
      expect(system.modify.args[2][0]).to.deep.equal({ ...host, RequestType: 'Remove' });

      connection.modifySettings.resetBehavior();
      connection.modifySettings.resolves();
      system.modify.resetHistory();
      connection.modifySettings.resetHistory();
      const progress = newRemovalProgress();
      system.modify.onFirstCall().rejects(hcsErr(HResult.E_FAIL));
      await rejectsWithCode(d.removeCombined(hostRemove, guestRemove, progress), 'HCS_ERROR');
      await d.removeCombined(hostRemove, guestRemove, progress);
      expect(connection.modifySettings.callCount).to.equal(1);
      expect(system.modify.callCount).to.equal(2);
      sinon.assert.callOrder(connection.modifySettings, system.modify);
    });

    it('a failed guest add whose undo fails too leaves both halves to a retried teardown (in its progress)', async () => {
      const system = stubSystem();
      const connection = { modifySettings: sinon.stub().rejects(new UvmError('HCS_ERROR', 'guest failed')) };
      const d = createResourceDelivery(system, new UvmLifecycle(), logger, connection);
      const progress = newRemovalProgress();
      await rejectsWithCode(d.addCombined(host, guest, progress, guestRemove), 'HCS_ERROR');
      expect(progress).to.deep.equal({ split: true, guestDone: false, hostDone: false });
      expect(fullyRemoved(progress)).to.equal(false);
      expect(system.modify.callCount).to.equal(1); // no host Remove under a guest half that may be there
    });

    it('a guest Remove that finds nothing counts as done (it applied before reporting a failure)', async () => {
      const system = stubSystem();
      const connection = { modifySettings: sinon.stub().rejects(hcsErr(HResult.E_NOT_FOUND)) };
      const d = createResourceDelivery(system, new UvmLifecycle(), logger, connection);
      await d.guest(guestRemove);
      const progress = newRemovalProgress();
      await d.removeCombined(hostRemove, guestRemove, progress);
      expect(progress).to.deep.include({ guestDone: true, hostDone: true });
    });
  });

  describe('removals and the UVM lifecycle', () => {
    const gone = [hcsErr(HResult.HCS_E_SYSTEM_NOT_FOUND), hcsErr(0xc037010e), hcsErr(HResult.HCS_E_INVALID_STATE), new UvmError('HANDLE_CLOSED', 'closed')];

    it('while running, "VM gone" errors are failures', async () => {
      for (const err of gone) {
        const system = stubSystem();
        system.modify.rejects(err);
        let caught: unknown;
        await createResourceDelivery(system, new UvmLifecycle(), logger).host(hostRemove).catch((e: unknown) => (caught = e));
        expect(caught).to.equal(err);
      }
    });

    it('while terminating they count as removed; other errors still fail', async () => {
      const lifecycle = new UvmLifecycle();
      lifecycle.markTerminating();
      for (const err of gone) {
        const system = stubSystem();
        system.modify.rejects(err);
        await createResourceDelivery(system, lifecycle, logger).host(hostRemove);
      }
      const system = stubSystem();
      system.modify.rejects(hcsErr(HResult.E_ACCESSDENIED));
      await rejectsWithCode(createResourceDelivery(system, lifecycle, logger).removeCombined(hostRemove, guestRemove, newRemovalProgress()), 'HCS_ERROR');
    });

    it('an Add while terminating is not excused', async () => {
      const lifecycle = new UvmLifecycle();
      lifecycle.markTerminating();
      const system = stubSystem();
      system.modify.rejects(hcsErr(HResult.HCS_E_SYSTEM_NOT_FOUND));
      await rejectsWithCode(createResourceDelivery(system, lifecycle, logger).host(host), 'HCS_ERROR');
    });

    it('once terminated, removals make no call; listeners run once', async () => {
      const lifecycle = new UvmLifecycle();
      const listener = sinon.spy();
      lifecycle.onTerminated(listener);
      lifecycle.markTerminating();
      lifecycle.markTerminated();
      lifecycle.markTerminated();
      expect(listener.callCount).to.equal(1);
      const system = stubSystem();
      const connection = { modifySettings: sinon.stub().resolves() };
      const d = createResourceDelivery(system, lifecycle, logger, connection);
      await d.host(hostRemove);
      await d.guest(guestRemove);
      await d.removeCombined(hostRemove, guestRemove, newRemovalProgress());
      expect(system.modify.callCount + connection.modifySettings.callCount).to.equal(0);
    });
  });
});
