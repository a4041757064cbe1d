/**
 * One instance of each class the library makes per call or per resource, kept for the life of
 * the process, so that V8 keeps the instances' hidden class (and the optimized code that checks
 * it) across full garbage collections.
 *
 * Why: V8 reaches the hidden class ("map") of a class's instances from the class's initial map
 * through transitions it holds weakly. When no instance is alive at a full collection — the
 * usual state of a shim between bursts, and V8's memory reducer runs a full collection soon after
 * a burst — that map is collected, every optimized function that checked it is deoptimized
 * ("weak objects"), and the next burst pays for compiling them again on V8's background threads,
 * which compete with the HCS threads on a small host. Measured on the pod bench (C = 64, pods
 * right after a full collection): retaining these classes (and node's `fs.Stats`, kept by
 * NodeHostFs's direct node:fs path, core/host-fs-worker.ts) cut the functions compiled again from 131–154 to 77–83 per 8 pods
 * (docs/performance.md, "Session 9" under `pod:`).
 *
 * Only for classes whose constructor has no effect beyond setting fields (nothing registered,
 * counted or scheduled): the retained instance is never used.
 */
const retained: object[] = [];

/** Keeps `instance` (a never-used instance of a per-call class) alive; returns it. */
export function retainShape<T extends object>(instance: T): T {
  retained.push(instance);
  return instance;
}
