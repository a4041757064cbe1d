/**
 * Journal codec of CombinedLayers overlays (a guest-only resource the layer composer creates with
 * `sendGuestRequest`): request = the Add settings, value = the Remove settings.
 */
import * as v from 'valibot';
import type { JsonObject } from '../journal-format.js';
import { plain, text, type LeaseCodec } from './codec.js';

export interface CombinedLayersRemove {
  ContainerRootPath: string;
}

const addSettings = v.pipe(
  v.looseObject({ ContainerRootPath: text }),
  v.transform((o): JsonObject => plain(o)),
);

export const combinedLayersCodec: LeaseCodec<JsonObject, CombinedLayersRemove> = {
  schema: v.object({ request: addSettings, value: v.object({ ContainerRootPath: text }) }),
  encode: (settings, remove) => ({ request: plain(settings), value: plain({ ContainerRootPath: remove.ContainerRootPath }) }),
};
