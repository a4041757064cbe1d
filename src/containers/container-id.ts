import { invalidArgument } from '../core/errors.js';

/** Longest container id accepted (containerd's own limit is 76). */
export const MAX_CONTAINER_ID_LENGTH = 128;

/**
 * Throws INVALID_ARGUMENT unless `id` can name a container inside guest paths
 * (`/run/gcs/c/<id>`, `…/scratch/<id>`): a non-empty string of at most 128 characters with no path
 * separator, no `..`, no `:`, and no whitespace or control character.
 */
export function validateContainerId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0) throw invalidArgument('container id must be a non-empty string');
  if (id.length > MAX_CONTAINER_ID_LENGTH) {
    throw invalidArgument(`container id must be at most ${MAX_CONTAINER_ID_LENGTH} characters`, { containerId: id.slice(0, 32) });
  }
  // eslint-disable-next-line no-control-regex
  if (/[\\/:\s\x00-\x1f\x7f]/.test(id) || id.includes('..') || id === '.') {
    throw invalidArgument(`container id must be a plain name (no separators, "..", ":" or whitespace): ${JSON.stringify(id)}`, {
      containerId: id,
    });
  }
  return id;
}
