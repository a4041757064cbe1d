/**
 * Durable file writes for the journal and its lock: a crash at any point leaves either the old
 * file or the complete new one (never a torn or empty one).
 */
import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Writes `text` to a new unique temporary file next to `path`, fsync'd; returns its path. */
async function writeTemp(path: string, text: string): Promise<string> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return tmp;
}

/**
 * Writes `text` to `path` atomically and durably: temp file + fsync + rename + directory fsync.
 * On failure the previous file is untouched and the temp file is removed.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = await writeTemp(path, text);
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(path);
}

/**
 * Writes `text` to a new file `path` durably, never replacing an existing one (rejects with
 * EEXIST): temp file + fsync + hard link (which fails when `path` exists) + directory fsync.
 */
export async function writeFileExclusive(path: string, text: string): Promise<void> {
  const tmp = await writeTemp(path, text);
  try {
    await link(tmp, path);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await syncDirectory(path);
}

/** fsyncs the directory of `path` (makes a rename, link or unlink in it durable). */
export async function syncDirectory(path: string): Promise<void> {
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
