import { randomBytes } from 'node:crypto';
import { link, mkdir, open, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ScenarioFixture } from './scenario.js';

/**
 * Creates the fixtures of a scenario that do not exist yet: sparse files (a VHD's size without
 * its blocks: `ftruncate` of an empty file), small text files and folders, with their parent
 * folders. Never overwrites or resizes anything that exists. Files are written under a temporary
 * name and hard-linked into place, so a concurrent run sees either no file or the whole file.
 * Resolves with the paths it created. Used by `uvmctl run`/`plan` before reading bundles, and by
 * examples/make-fixtures.mjs.
 */
export async function ensureFixtures(fixtures: readonly ScenarioFixture[]): Promise<string[]> {
  const created: string[] = [];
  for (const fixture of fixtures) {
    if (await exists(fixture.path)) continue;
    if (fixture.type === 'directory') {
      await mkdir(fixture.path, { recursive: true });
      created.push(fixture.path);
      continue;
    }
    await mkdir(path.dirname(fixture.path), { recursive: true });
    const temp = `${fixture.path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
    try {
      if (fixture.type === 'file') {
        await writeFile(temp, fixture.content, { flag: 'wx' });
      } else {
        const handle = await open(temp, 'wx');
        try {
          await handle.truncate(fixture.sizeBytes);
        } finally {
          await handle.close();
        }
      }
      try {
        await link(temp, fixture.path);
        created.push(fixture.path);
      } catch (err) {
        // Created meanwhile by a concurrent run: keep theirs.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }
  return created;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
