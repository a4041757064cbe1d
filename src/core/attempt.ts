/**
 * `fn()`, with a synchronous throw turned into a rejection: what an `async` wrapper does, without
 * its extra promise (hot paths run this hundreds of times per pod).
 */
export function attempt<T>(fn: () => Promise<T>): Promise<T>;
/** `fn(arg)`, the same way: a module function and its argument instead of a closure made per call. */
export function attempt<T, A>(fn: (arg: A) => Promise<T>, arg: A): Promise<T>;
export function attempt<T, A>(fn: (arg?: A) => Promise<T>, arg?: A): Promise<T> {
  try {
    return Promise.resolve(fn(arg));
  } catch (err) {
    return Promise.reject(err as Error);
  }
}
