import { expect } from 'chai';
import winston from 'winston';
import { Writable } from 'node:stream';
import sinon from 'sinon';
import { createLogger, logLevelEnabled, withFields, type Logger, type LogFields } from '../../../src/core/logger.js';

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

  it('withFields builds no line for a level its logger does not write, and forwards isLevelEnabled', () => {
    const lines: [string, LogFields | undefined][] = [];
    const warnOnly: Logger = {
      error: (m, f) => lines.push([m, f]),
      warn: (m, f) => lines.push([m, f]),
      info: (m, f) => lines.push([m, f]),
      debug: (m, f) => lines.push([m, f]),
      isLevelEnabled: (level) => level === 'error' || level === 'warn',
    };
    const child = withFields(warnOnly, { uvmId: 'u1' });
    child.debug('dropped', { lun: 1 });
    child.info('dropped');
    child.warn('kept', { lun: 2 });
    expect(lines).to.deep.equal([['kept', { uvmId: 'u1', lun: 2 }]]);
    expect([logLevelEnabled(child, 'debug'), logLevelEnabled(child, 'warn'), logLevelEnabled(console, 'debug')]).to.deep.equal([false, true, true]);
  });

  it('the default (winston) drops a line below its level before building it, and follows a later level change', () => {
    const written: string[] = [];
    const logger = createLogger({ level: 'info' }) as winston.Logger;
    logger.clear();
    logger.add(new winston.transports.Stream({ stream: new Writable({ write: (chunk: Buffer, _enc, done) => (written.push(String(chunk)), done()) }) }));
    const write = sinon.spy(logger, 'write');
    logger.debug('below the level', { n: 1 });
    expect(write.called, 'nothing streamed').to.equal(false);
    logger.info('at the level', { n: 2 });
    logger.level = 'debug';
    logger.debug('now on', { n: 3 });
    expect(write.callCount).to.equal(2);
    expect(written.map((l) => (JSON.parse(l) as { message: string }).message)).to.deep.equal(['at the level', 'now on']);
    expect(createLogger({ level: 'silent' }).isLevelEnabled?.('debug')).to.equal(false);
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
