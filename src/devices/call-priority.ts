/**
 * Call priorities (`HcsCallOptions.priority`) of the steps that other calls follow: the number of
 * calls still to come in the chain. The binding starts a UVM's queued calls by priority, so
 * chains go first and a start or teardown of many resources ends with its single calls, not with
 * the last steps of chains that waited behind them (for 50 containers at 64 HCS calls at once,
 * about 2 of 7–8 rounds of calls). Only an ordering hint: nothing depends on it.
 */
import type { HcsCallOptions } from '../hcs/hcs-api.js';

/** One call follows (SCSI mount → the overlay; unplug → detach; a VPMEM layer → the overlay). */
export const THEN_ONE_MORE: HcsCallOptions = Object.freeze({ priority: 1 });
/** Two calls follow (SCSI attach → mount → the overlay; unmount → unplug → detach). */
export const THEN_TWO_MORE: HcsCallOptions = Object.freeze({ priority: 2 });
