import { expect } from 'chai';
import winston from 'winston';
import { createLogger, withFields, type Logger, type LogFields } from '../../../src/core/logger.js';

describe('Logger: a minimal interface that winston, console and pino-shaped loggers satisfy', () => {
  it('winston and console are Loggers as they are (checked by the compiler); withFields adds fields to every line', () => {
    const lines: [string, string, LogFields | undefined][] = [];
    const winstonLogger: Logger = winston.createLogger({ silent: true });
    const consoleLogger: Logger = console;
    const recording: Logger = {
      error: (m, f) => lines.push(['error', m, f]),
      warn: (m, f) => lines.push(['warn', m, f]),
      info: (m, f) => lines.push(['info', m, f]),
      debug: (m, f) => lines.push(['debug', m, f]),
    };
    expect(typeof winstonLogger.warn).to.equal('function');
    expect(typeof consoleLogger.debug).to.equal('function');
    const child = withFields(recording, { uvmId: 'u1', kind: 'scsi' });
    child.warn('detach failed', { lun: 3 });
    child.debug('attached');
    expect(lines).to.deep.equal([
      ['warn', 'detach failed', { uvmId: 'u1', kind: 'scsi', lun: 3 }],
      ['debug', 'attached', { uvmId: 'u1', kind: 'scsi' }],
    ]);
  });

  it('the default (winston) is silent unless a level is configured', () => {
    const saved = process.env.UVM_LOG_LEVEL;
    delete process.env.UVM_LOG_LEVEL;
    try {
      expect((createLogger() as winston.Logger).silent).to.equal(true);
      expect((createLogger({ level: 'warn' }) as winston.Logger).silent).to.equal(false);
      process.env.UVM_LOG_LEVEL = 'debug';
      expect((createLogger() as winston.Logger).level).to.equal('debug');
    } finally {
      if (saved === undefined) delete process.env.UVM_LOG_LEVEL;
      else process.env.UVM_LOG_LEVEL = saved;
    }
  });
});
