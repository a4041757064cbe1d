export * from './errors.js';
export * from './lease.js';
export * from './refcounted-table.js';
export * from './slot-allocator.js';
export * from './release-stack.js';
export * from './logger.js';
export { leakTracker } from './leak-tracker.js';
