import type { RefCountedTable } from '../core/refcounted-table.js';
import type { ResourceInfo } from './device-types.js';

/** What a manager adds to one table entry's ResourceInfo (slot, paths), from its value. */
export type DescribeValue<K, V> = (value: V | undefined, key: K) => Omit<ResourceInfo, 'kind' | 'key' | 'state' | 'refCount'>;

/** Lists a refcount table's entries as ResourceInfo (shared by every manager's `describe()`). */
export function describeEntries<K, V>(
  table: RefCountedTable<K, V>,
  kind: ResourceInfo['kind'],
  render: DescribeValue<K, V>,
): ResourceInfo[] {
  return table.entries().map((e) => ({
    kind,
    key: typeof e.key === 'string' ? e.key : JSON.stringify(e.key),
    state: e.state,
    refCount: e.refCount,
    ...render(e.value, e.key),
  }));
}
