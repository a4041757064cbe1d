/**
 * uvm-orchestrator: refcounted SCSI, VSMB, VPMEM and Plan9 resources of a Utility VM, layer
 * composition and OCI mount conversion, over HCS through FFI.
 */
export * from './core/index.js';
export * from './hcs/schema.js';
export * from './hcs/hcs-api.js';
