import type { VsmbShareOptions } from './device-types.js';

/**
 * hcsshim `DefaultVSMBOptions(readOnly)` (spec §2.2): NoDirectmap when the UVM is fully
 * physically backed or direct mapping is disabled; read-only shares add ShareRead, CacheIo,
 * ReadOnly and PseudoOplocks. Layers add TakeBackupPrivilege; single files add
 * RestrictFileAccess and SingleFileMapping.
 */
export function vsmbShareOptions(input: {
  readOnly: boolean;
  noDirectMap: boolean;
  layer?: boolean;
  singleFile?: boolean;
}): VsmbShareOptions {
  const options: VsmbShareOptions = {};
  if (input.noDirectMap) options.NoDirectmap = true;
  if (input.readOnly || input.layer) {
    options.ReadOnly = true;
    options.ShareRead = true;
    options.CacheIo = true;
    options.PseudoOplocks = true;
  }
  if (input.layer) options.TakeBackupPrivilege = true;
  if (input.singleFile) {
    options.RestrictFileAccess = true;
    options.SingleFileMapping = true;
  }
  return options;
}
