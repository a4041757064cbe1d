/**
 * The guest delivery every integration suite runs its UVMs in: `UVM_TEST_GUEST_DELIVERY=hcs` runs
 * them in HCS-owned mode, anything else in the default bridge mode (docs/hcs.md "Guest delivery").
 * One switch for the whole harness: `UVM_TEST_GUEST_DELIVERY=hcs npx mocha` reruns every suite.
 */
export const testGuestDelivery: 'bridge' | 'hcs' = process.env.UVM_TEST_GUEST_DELIVERY === 'hcs' ? 'hcs' : 'bridge';
