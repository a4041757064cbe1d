import type { ServiceIdentifier } from 'inversify';
import type { UvmFacts } from './device-types.js';

/**
 * What the device managers of one UVM are configured with: the public facts plus the settings
 * only the managers use. Built (and validated) by the UtilityVm from its options.
 */
export interface UvmDeviceConfig extends UvmFacts {
  /** SCSI slots pre-attached at boot, as `controller * 64 + lun`; never handed out. */
  reservedScsiSlots: readonly number[];
  /** VSMB shares get NoDirectmap (also implied by `fullyPhysicallyBacked`). */
  vsmbNoDirectMap: boolean;
}
export const UvmDeviceConfig: ServiceIdentifier<UvmDeviceConfig> = Symbol.for('uvm-orchestrator.UvmDeviceConfig');
