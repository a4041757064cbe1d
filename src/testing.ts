/**
 * `uvm-orchestrator/testing`: fakes and simulator controls for testing code that embeds this library.
 */
export { leakTracker } from './core/leak-tracker.js';
export { FakeHcs, FakeComputeSystem, type FakeHcsCall, type FakeFault } from './hcs/fake-hcs.js';
export { FakeHostFs } from './core/fake-host-fs.js';
