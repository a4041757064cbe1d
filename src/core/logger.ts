import winston from 'winston';
import type { ServiceIdentifier } from 'inversify';
import { retainShape } from './retained-shapes.js';

/** Structured fields of a log line (`uvmId`, `hostPath`, `lun`, … see `LogField`). */
export type LogFields = Record<string, unknown>;

/** The levels the library logs at, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * The logger the library writes to: a message and structured fields per level. A winston logger,
 * `console`, or a pino logger satisfies it as is (pino takes the fields as an interpolation
 * argument; wrap it as `{ info: (m, f) => pino.info(f, m), … }` to keep them structured).
 * Default: winston, silent unless configured (`createLogger`, env `UVM_LOG_LEVEL`).
 */
export interface Logger {
  error(message: string, fields?: LogFields): unknown;
  warn(message: string, fields?: LogFields): unknown;
  info(message: string, fields?: LogFields): unknown;
  debug(message: string, fields?: LogFields): unknown;
  /**
   * Whether lines of `level` are written (winston and pino have it). When present, the library
   * builds no fields for a level that is off; without it every level counts as on.
   */
  isLevelEnabled?(level: LogLevel): boolean;
}
/** DI token of the `Logger`. */
export const Logger: ServiceIdentifier<Logger> = Symbol.for('uvm-orchestrator.Logger');

/** Whether `logger` writes lines of `level`: its `isLevelEnabled` if it has one, else true. */
export function logLevelEnabled(logger: Logger, level: LogLevel): boolean {
  return typeof logger.isLevelEnabled !== 'function' || logger.isLevelEnabled(level);
}

/**
 * `logger` with `fields` added to every line (what winston's `child` does, for any Logger). A line
 * of a level `logger` does not write is dropped here, before its fields are merged.
 */
export function withFields(logger: Logger, fields: LogFields): Logger {
  return new FieldsLogger(logger, fields);
}

/**
 * `withFields`'s logger: a class, not an object of closures made per UVM or container (V8 keeps
 * optimized code only while a function object using it is alive; see docs/performance.md,
 * "Session 11").
 */
class FieldsLogger implements Logger {
  constructor(
    private readonly logger: Logger,
    private readonly fields: LogFields,
  ) {}

  #write(level: LogLevel, message: string, more: LogFields | undefined): unknown {
    const logger = this.logger;
    if (!logLevelEnabled(logger, level)) return undefined;
    return logger[level](message, more === undefined ? { ...this.fields } : { ...this.fields, ...more });
  }

  error(message: string, fields?: LogFields): unknown {
    return this.#write('error', message, fields);
  }

  warn(message: string, fields?: LogFields): unknown {
    return this.#write('warn', message, fields);
  }

  info(message: string, fields?: LogFields): unknown {
    return this.#write('info', message, fields);
  }

  debug(message: string, fields?: LogFields): unknown {
    return this.#write('debug', message, fields);
  }

  isLevelEnabled(level: LogLevel): boolean {
    return logLevelEnabled(this.logger, level);
  }
}

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
  /** Where a device sits: `c:l`, a VPMEM device (`n` or `n@offset`), a share name, a VMBus GUID. */
  slot: 'slot',
  containerId: 'containerId',
  state: 'state',
  refCount: 'refCount',
  operation: 'op',
} as const;

/** Options of the default (winston) logger. */
export interface LoggerOptions {
  /** winston level (`error`, `warn`, `info`, `debug`), or `silent`. Default: env `UVM_LOG_LEVEL`, else `silent`. */
  level?: string;
}

/** The default logger: winston, JSON lines on stderr, silent unless a level is given (or `UVM_LOG_LEVEL` set). */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.UVM_LOG_LEVEL ?? 'silent';
  const logger = winston.createLogger({
    level: level === 'silent' ? 'error' : level,
    silent: level === 'silent',
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] })],
  });
  // winston filters by level only in its transports, after building and streaming the line: a
  // line it would drop (silent, or below the level, read at each call) returns at once instead.
  // `isLevelEnabled` says false for every level while silent (winston's own ignores `silent`), so
  // callers skip building lines nobody writes.
  const levelEnabled = logger.isLevelEnabled.bind(logger);
  logger.isLevelEnabled = (name: string): boolean => !logger.silent && levelEnabled(name);
  for (const name of ['error', 'warn', 'info', 'debug'] as const) {
    const write = logger[name].bind(logger) as (...args: unknown[]) => winston.Logger;
    const gated = (...args: unknown[]): winston.Logger => (logger.isLevelEnabled(name) ? write(...args) : logger);
    logger[name] = gated as winston.LeveledLogMethod;
  }
  return logger;
}

/** The default loggers made so far, by level. */
const defaults = new Map<string, Logger>();

/**
 * The default logger for the level `UVM_LOG_LEVEL` names now (else silent): one per level for the
 * process, shared by every orchestrator made without a logger. (winston makes a class per logger:
 * a logger per orchestrator would give V8 new hidden classes each time, and the code that checked
 * the last ones is thrown away with them.)
 */
export function defaultLogger(): Logger {
  const level = process.env.UVM_LOG_LEVEL ?? 'silent';
  let logger = defaults.get(level);
  if (logger === undefined) {
    logger = createLogger({ level });
    defaults.set(level, logger);
  }
  return logger;
}

retainShape(new FieldsLogger(console, {}));
