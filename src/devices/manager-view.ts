/**
 * A manager seen through other `acquire` / `reserve` calls (the UVM's lifecycle gate, a journal's
 * owner port), as a plain object with exactly the manager contract's members: `acquire`,
 * `reserve` and `heldFile` (when the manager has them), `describe` and `retryFailedTeardowns`. No Proxy: nothing
 * else of the implementation (e.g. its restore path) is reachable through a view.
 */
import type { DescribableManager } from './device-types.js';

type ContractKey = 'acquire' | 'reserve' | 'describe' | 'retryFailedTeardowns' | 'heldFile';
/** The members of a manager contract a view has. */
export type ManagerView<M> = Pick<M, Extract<keyof M, ContractKey>>;

/** The calls a view replaces (the manager's own arguments and results). */
export interface ViewCalls {
  acquire: (...args: never[]) => unknown;
  /** Absent: the manager's own `reserve` (when it has one). */
  reserve?: (...args: never[]) => unknown;
}

export function managerView<M extends DescribableManager>(inner: M, calls: ViewCalls): ManagerView<M> {
  const view: Record<string, unknown> = {
    acquire: calls.acquire,
    describe: () => inner.describe(),
    retryFailedTeardowns: () => inner.retryFailedTeardowns(),
  };
  const own = (inner as { reserve?: (...args: unknown[]) => unknown }).reserve;
  if (typeof own === 'function') view.reserve = calls.reserve ?? ((...args: unknown[]) => own.apply(inner, args));
  // A query, no call: passed through as it is.
  const heldFile = (inner as { heldFile?: (hostPath: string) => unknown }).heldFile;
  if (typeof heldFile === 'function') view.heldFile = (hostPath: string) => heldFile.call(inner, hostPath);
  return view as ManagerView<M>;
}
