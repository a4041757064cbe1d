/**
 * Like `Promise.all`, but waits for EVERY promise to settle before rejecting, then rejects with
 * the first failure in input order. Use it when each promise may acquire something: rolling back
 * while a sibling is still acquiring would leak what the sibling gets after the rollback.
 */
export async function settleAll<T extends readonly unknown[]>(promises: { readonly [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(promises as readonly Promise<unknown>[]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
