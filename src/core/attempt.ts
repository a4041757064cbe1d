/**
 * `fn()`, with a synchronous throw turned into a rejection: what an `async` wrapper does, without
 * its extra promise (hot paths run this hundreds of times per pod).
 */
export function attempt<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err as Error);
  }
}
