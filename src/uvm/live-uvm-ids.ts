/**
 * The UVM ids live in this process (UVM_EXISTS): an id is claimed by `createUtilityVm` or
 * `UtilityVm.open` before HCS or the journal is touched, and given back by `close()` (or when the
 * create/open fails). Ids are scoped by the `HcsApi` instance they are created through (one per
 * orchestrator): two fakes are two machines.
 */
import type { ServiceIdentifier } from 'inversify';
import { UvmError } from '../core/errors.js';

/** Gives a claimed id back; bound in a UVM scope so that `close()` can call it. */
export type UvmIdRelease = () => void;
export const UvmIdRelease: ServiceIdentifier<UvmIdRelease> = Symbol.for('uvm-orchestrator.UvmIdRelease');

const live = new WeakMap<object, Set<string>>();

/** Claims `id` in `scope`; returns the function that gives it back (idempotent). */
export function claimUvmId(scope: object, id: string): UvmIdRelease {
  let ids = live.get(scope);
  if (!ids) live.set(scope, (ids = new Set()));
  if (ids.has(id)) {
    throw new UvmError('UVM_EXISTS', `a UtilityVm with id ${id} is live in this process (close() it first)`, { details: { uvmId: id } });
  }
  ids.add(id);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    ids.delete(id);
  };
}
