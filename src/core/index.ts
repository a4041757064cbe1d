export * from './errors.js';
export * from './lease.js';
export * from './refcounted-table.js';
export * from './slot-allocator.js';
export * from './release-stack.js';
export * from './settle-all.js';
export * from './logger.js';
export * from './host-fs.js';
export { leakTracker } from './leak-tracker.js';
