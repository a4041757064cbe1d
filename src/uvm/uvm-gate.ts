/**
 * What a UtilityVm refuses once it is closed or terminated (docs/errors.md): after `close()` every
 * call rejects with HANDLE_CLOSED; after `terminate()` was requested, everything that would add to
 * the VM rejects with UVM_TERMINATED before anything is recorded (releases go on: bookkeeping).
 */
import { UvmError } from '../core/errors.js';
import type { DescribableManager, DeviceAcquireOptions } from '../devices/device-types.js';
import type { UvmLifecycle } from '../devices/uvm-lifecycle.js';
import type { GuestRequest } from '../hcs/schema.js';
import { forwardTermination, type UvmDeviceSet } from '../recovery/journaled-devices.js';
import { managerView, type ManagerView } from '../devices/manager-view.js';

export class UvmGate {
  #closed = false;
  /** The UVM_EXITED error for `op` once the VM exited unexpectedly (see uvm-exit.ts). */
  #exited: ((op: string) => UvmError | undefined) | undefined;
  constructor(
    private readonly uvmId: string,
    private readonly lifecycle: UvmLifecycle,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  markClosed(): void {
    this.#closed = true;
  }

  /** HANDLE_CLOSED after `close()`. */
  assertOpen(op: string): void {
    if (this.#closed) throw new UvmError('HANDLE_CLOSED', `${op} on UVM ${this.uvmId}: it was closed`, { details: { uvmId: this.uvmId, op } });
  }

  /** Where the gate learns of an unexpected exit (its calls then reject with UVM_EXITED). */
  watchExit(exited: (op: string) => UvmError | undefined): void {
    this.#exited = exited;
  }

  /** HANDLE_CLOSED after `close()`, UVM_EXITED after an unexpected exit, UVM_TERMINATED once `terminate()` was requested. */
  assertRunning(op: string): void {
    this.assertOpen(op);
    const exited = this.#exited?.(op);
    if (exited) throw exited;
    if (this.lifecycle.phase !== 'running') {
      throw new UvmError('UVM_TERMINATED', `${op} on UVM ${this.uvmId}: it is ${this.lifecycle.phase}`, {
        details: { uvmId: this.uvmId, op, phase: this.lifecycle.phase },
      });
    }
  }

  /** `manager` whose `acquire` and `reserve` pass this gate first (`describe` and `retryFailedTeardowns` are its own). */
  manager<M extends DescribableManager & { acquire(request: never, options?: DeviceAcquireOptions): Promise<unknown> }>(manager: M, name: string): ManagerView<M> {
    const own = manager as unknown as { acquire(...args: unknown[]): Promise<unknown>; reserve?: (...args: unknown[]) => unknown };
    const reserve = own.reserve;
    // The op names are built once per view, not per call (a pod reserves hundreds of resources).
    const acquireOp = `${name}.acquire`;
    const reserveOp = `${name}.reserve`;
    return managerView(manager, {
      acquire: (...args: unknown[]) => {
        try {
          this.assertRunning(acquireOp);
        } catch (err) {
          return Promise.reject(err);
        }
        return own.acquire(...args);
      },
      ...(reserve === undefined
        ? {}
        : {
            reserve: (...args: unknown[]) => {
              this.assertRunning(reserveOp);
              return reserve.apply(manager, args);
            },
          }),
    });
  }

  /** `devices` whose acquires and guest requests pass this gate first. */
  devices(devices: UvmDeviceSet): UvmDeviceSet {
    const view: UvmDeviceSet = {
      facts: devices.facts,
      hostFs: devices.hostFs,
      scsi: this.manager(devices.scsi, 'scsi'),
      vsmb: this.manager(devices.vsmb, 'vsmb'),
      vpmem: this.manager(devices.vpmem, 'vpmem'),
      plan9: this.manager(devices.plan9, 'plan9'),
      pipes: this.manager(devices.pipes, 'pipes'),
      ...(devices.vpci ? { vpci: this.manager(devices.vpci, 'vpci') } : {}),
      nameToGuid: (name) => devices.nameToGuid(name),
      retryLater: (leftover) => devices.retryLater(leftover),
      sendGuestRequest: (request: GuestRequest, options?: DeviceAcquireOptions) => {
        try {
          if (request?.RequestType === 'Remove') this.assertOpen('sendGuestRequest');
          else this.assertRunning('sendGuestRequest');
        } catch (err) {
          return Promise.reject(err);
        }
        return devices.sendGuestRequest(request, options);
      },
    };
    return forwardTermination(view, devices);
  }
}
