import winston from 'winston';
import type { ServiceIdentifier } from 'inversify';

/** The structured logger every component receives through DI. */
export type Logger = winston.Logger;
export const Logger: ServiceIdentifier<Logger> = Symbol.for('uvm-orchestrator.Logger');

/** Structured field names, so every log line names things the same way. */
export const LogField = {
  uvmId: 'uvmId',
  kind: 'kind',
  hostPath: 'hostPath',
  guestPath: 'guestPath',
  controller: 'controller',
  lun: 'lun',
  device: 'device',
  offset: 'offset',
  share: 'share',
  containerId: 'containerId',
  state: 'state',
  refCount: 'refCount',
  operation: 'op',
} as const;

export interface LoggerOptions {
  /** winston level, or `silent`. Default: env `UVM_LOG_LEVEL`, else `warn`. */
  level?: string;
}

/** A JSON logger on stderr. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.UVM_LOG_LEVEL ?? 'warn';
  return winston.createLogger({
    level: level === 'silent' ? 'error' : level,
    silent: level === 'silent',
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] })],
  });
}
