/**
 * `uvm-orchestrator/testing`: fakes and simulator controls for testing code that embeds this library.
 */
export { leakTracker } from './core/leak-tracker.js';
