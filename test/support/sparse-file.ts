import { closeSync, ftruncateSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';

/** Creates (or truncates) `file` as a sparse file of `size` bytes, with its parent folders. */
export function sparseFile(file: string, size: number): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const fd = openSync(file, 'w');
  try {
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
}
