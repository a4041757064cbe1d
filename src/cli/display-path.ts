import path from 'node:path';

/** `p` relative to `baseDir` when it is inside it (`host/layers/base/layer.vhd`), else unchanged. */
export function displayPath(p: string | undefined, baseDir: string | undefined): string {
  if (p === undefined || p === '') return '';
  if (baseDir === undefined || !path.isAbsolute(p)) return p;
  const rel = path.relative(baseDir, p);
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return p;
  return rel;
}
