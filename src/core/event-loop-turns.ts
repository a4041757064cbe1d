/**
 * Turns on the event loop for work that many callers start at once (a pod's fifty allocations,
 * its fifty releases): `nextTurn()` resolves in a later turn of the event loop, one caller per
 * turn, first come first served. Between two callers' turns the loop polls, so the completions
 * that arrived meanwhile (HCS operations, file-system calls, VM access grants) are handled before
 * the next caller issues its calls: the calls already in HCS free their slots and their
 * successors (a scratch's mount after its attach) are issued, instead of waiting until every
 * caller has placed and issued everything (tens of milliseconds of one synchronous stretch for a
 * pod, during which HCS's callback threads wait on this thread and its slots stay idle).
 *
 * A turn costs one pass of the event loop (microseconds when nothing else is pending); the first
 * caller of a turn goes at once.
 */
/** Captured at load so that fake timers installed later (a consumer's tests) never hold a caller back. */
const realSetImmediate = globalThis.setImmediate;
const waiting: (() => void)[] = [];
let head = 0;
/** True while the current turn is taken (a caller went in it, and the next turn is scheduled). */
let taken = false;

/**
 * Resolves at once when nobody has gone in this turn of the event loop (a lone caller pays
 * nothing), else in a later turn, after the callers that asked before.
 */
export function nextTurn(): Promise<void> {
  if (!taken) {
    taken = true;
    realSetImmediate(grant);
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => waiting.push(resolve));
}

/** A new turn: the oldest waiting caller goes (its continuation runs in this turn's microtasks). */
function grant(): void {
  if (head === waiting.length) {
    waiting.length = 0;
    head = 0;
    taken = false;
    return;
  }
  const next = waiting[head]!;
  waiting[head++] = undefined as unknown as () => void;
  realSetImmediate(grant);
  next();
}
