import type { HostFs, HostStat } from './host-fs.js';
import { UvmError } from './errors.js';

/**
 * An in-memory HostFs for tests: declare files (with sizes), directories and symlinks.
 * Paths are compared exactly as given (no normalisation), Windows or POSIX alike. Declaring a
 * file or directory also declares its parent folders (`/a/b/f` makes `/a/b` and `/a`).
 */
export class FakeHostFs implements HostFs {
  readonly #entries = new Map<string, HostStat>();
  readonly #links = new Map<string, string>();
  /** Every path passed to stat/realpath, in order. */
  readonly lookups: string[] = [];

  file(path: string, size = 4096): this {
    this.#entries.set(path, { isFile: true, isDirectory: false, size });
    this.#parents(path);
    return this;
  }

  dir(path: string): this {
    this.#entries.set(path, { isFile: false, isDirectory: true, size: 0 });
    this.#parents(path);
    return this;
  }

  /** Declares the folders above `path` (up to, not including, `/` or a drive root `C:\`) unless declared. */
  #parents(path: string): void {
    for (let p = path; ; ) {
      const cut = Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\'));
      if (cut <= 0) return;
      p = p.slice(0, cut);
      if (/^[A-Za-z]:$/.test(p) || p.endsWith('\\') || p.endsWith('/')) return;
      if (!this.#entries.has(p)) this.#entries.set(p, { isFile: false, isDirectory: true, size: 0 });
    }
  }

  /** `path` resolves to `target` (which is then stat'ed). */
  symlink(path: string, target: string): this {
    this.#links.set(path, target);
    return this;
  }

  async stat(path: string): Promise<HostStat> {
    this.lookups.push(path);
    const resolved = this.#resolve(path);
    const e = this.#entries.get(resolved);
    if (!e) throw new UvmError('NOT_FOUND', `cannot stat ${path}`, { details: { hostPath: path } });
    return { ...e };
  }

  async realpath(path: string): Promise<string> {
    this.lookups.push(path);
    const resolved = this.#resolve(path);
    if (!this.#entries.has(resolved)) throw new UvmError('NOT_FOUND', `cannot resolve ${path}`, { details: { hostPath: path } });
    return resolved;
  }

  #resolve(path: string): string {
    let p = path;
    for (let i = 0; i < 40 && this.#links.has(p); i++) p = this.#links.get(p)!;
    return p;
  }
}
