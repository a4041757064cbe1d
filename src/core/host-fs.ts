import { promises as fs } from 'node:fs';
import type { ServiceIdentifier } from 'inversify';
import { UvmError } from './errors.js';

/** What the managers and planners need to know about a host path. */
export interface HostStat {
  isFile: boolean;
  isDirectory: boolean;
  /** Size in bytes (files). */
  size: number;
}

/**
 * The host file system, as a port: the only I/O the planners and managers do besides HCS.
 * Rejects with NOT_FOUND when the path does not exist.
 */
export interface HostFs {
  stat(path: string): Promise<HostStat>;
  /** The path with every symlink resolved. */
  realpath(path: string): Promise<string>;
}
/** DI token of the `HostFs` port. */
export const HostFs: ServiceIdentifier<HostFs> = Symbol.for('uvm-orchestrator.HostFs');

/** HostFs over node:fs. */
export class NodeHostFs implements HostFs {
  async stat(path: string): Promise<HostStat> {
    try {
      const s = await fs.stat(path);
      return { isFile: s.isFile(), isDirectory: s.isDirectory(), size: s.size };
    } catch (err) {
      throw new UvmError('NOT_FOUND', `cannot stat ${path}`, { cause: err, details: { hostPath: path } });
    }
  }

  async realpath(path: string): Promise<string> {
    try {
      return await fs.realpath(path);
    } catch (err) {
      throw new UvmError('NOT_FOUND', `cannot resolve ${path}`, { cause: err, details: { hostPath: path } });
    }
  }
}
