import { expect } from 'chai';
import fc from 'fast-check';
import { UvmError } from '../../../src/core/errors.js';
import {
  formatHresult,
  HcsError,
  hcsErrorFromResult,
  HResult,
  hresultName,
  isAccessDenied,
  isAlreadyStopped,
  isInvalidState,
  isNotExist,
  isNotSupported,
  isPending,
  isTimeout,
  isVmUnavailable,
  normalizeHresult,
  parseResultError,
  renderEvent,
} from '../../../src/hcs/hcs-error.js';

/** The same condition in the documented (0x8037) and the vmcompute (0xC037) spelling, signed and unsigned. */
function spellings(low: number): number[] {
  return [0x80370000 + low, 0xc0370000 + low, (0x80370000 + low) | 0, (0xc0370000 + low) | 0];
}

describe('hcs-error: HRESULT classification', function () {
  describe('normalizeHresult', function () {
    it('maps both HCS spellings to facility 0x37 + low word', function () {
      for (const hr of spellings(0x010e)) expect(normalizeHresult(hr)).to.deep.equal({ kind: 'hcs', code: 0x010e });
    });

    it('maps facility-WIN32 HRESULTs and bare Win32 codes to the Win32 code', function () {
      expect(normalizeHresult(0x80070490)).to.deep.equal({ kind: 'win32', code: 0x490 });
      expect(normalizeHresult(0x80070005 | 0)).to.deep.equal({ kind: 'win32', code: 5 });
      expect(normalizeHresult(0x490)).to.deep.equal({ kind: 'win32', code: 0x490 });
      expect(normalizeHresult(0x32)).to.deep.equal({ kind: 'win32', code: 0x32 });
    });

    it('keeps other HRESULTs whole and treats 0 as success', function () {
      expect(normalizeHresult(0)).to.deep.equal({ kind: 'success' });
      expect(normalizeHresult(HResult.E_ABORT)).to.deep.equal({ kind: 'other', hresult: HResult.E_ABORT });
      expect(normalizeHresult(0x80004005)).to.deep.equal({ kind: 'other', hresult: 0x80004005 | 0 });
      expect(normalizeHresult(0x12345678)).to.deep.equal({ kind: 'other', hresult: 0x12345678 });
    });

    it('is the same for the signed and the unsigned form of any HRESULT (property)', function () {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 0xffffffff }), (u) => {
          expect(normalizeHresult(u)).to.deep.equal(normalizeHresult(u | 0));
        }),
      );
    });

    it('never confuses facility 0x37 with facility 7 (property)', function () {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 0xffff }), (low) => {
          expect(normalizeHresult(0x80370000 + low).kind).to.equal('hcs');
          expect(normalizeHresult(0x80070000 + low).kind).to.equal('win32');
        }),
      );
    });
  });

  describe('predicates (spec §7.3), both spellings', function () {
    const table: [string, (e: unknown) => boolean, number[], number[]][] = [
      ['isNotExist', isNotExist, [...spellings(0x010e), 0x80070490, 0x490], [0x8037010d, 0x80370110, 0x80070002]],
      [
        'isAlreadyStopped',
        isAlreadyStopped,
        [...spellings(0x0110), ...spellings(0x011f), 0x80070490, 0x490],
        [0x8037010e, 0x80370105],
      ],
      ['isInvalidState', isInvalidState, spellings(0x0105), [0x80370110, 0x80070005]],
      ['isTimeout', isTimeout, [...spellings(0x0118), ...spellings(0x0109), 0x800705b4, 0x5b4], [0x80370117, 0x80004004]],
      ['isAccessDenied', isAccessDenied, [...spellings(0x011b), 0x80070005, 0x5], [0x80070006, 0x8037010e]],
      [
        'isNotSupported',
        isNotSupported,
        [...spellings(0x010d), ...spellings(0x010b), 0x8007000d, 0xd, 0x80070032, 0x32],
        [0x80370105, 0x80070057],
      ],
      ['isPending', isPending, [...spellings(0x0117), ...spellings(0x0103)], [0x80370118]],
    ];
    for (const [name, predicate, yes, no] of table) {
      it(`${name}: true for ${yes.map(formatHresult).join(', ')}; false otherwise`, function () {
        for (const hr of yes) {
          expect(predicate(hr), formatHresult(hr)).to.equal(true);
          expect(predicate(new HcsError({ op: 'Op', hresult: hr })), `HcsError ${formatHresult(hr)}`).to.equal(true);
        }
        for (const hr of no) expect(predicate(hr), formatHresult(hr)).to.equal(false);
        expect(predicate(0)).to.equal(false);
        expect(predicate(new Error('x'))).to.equal(false);
        expect(predicate(undefined)).to.equal(false);
      });
    }

    it('isTimeout is true for the binding’s own TIMEOUT whatever HRESULT the cancelled operation ended with', function () {
      const e = new HcsError({ op: 'HcsModifyComputeSystem', hresult: HResult.E_ABORT, code: 'TIMEOUT' });
      expect(isTimeout(e)).to.equal(true);
      expect(isTimeout(new HcsError({ op: 'x', hresult: HResult.E_ABORT, code: 'ABORTED' }))).to.equal(false);
    });

    it('isVmUnavailable: not-exist, already-stopped, invalid-state or a closed handle', function () {
      expect(isVmUnavailable(new HcsError({ op: 'x', hresult: 0xc037010e }))).to.equal(true);
      expect(isVmUnavailable(new HcsError({ op: 'x', hresult: HResult.HCS_E_SYSTEM_ALREADY_STOPPED }))).to.equal(true);
      expect(isVmUnavailable(new HcsError({ op: 'x', hresult: 0xc0370105 }))).to.equal(true);
      expect(isVmUnavailable(new UvmError('HANDLE_CLOSED', 'closed'))).to.equal(true);
      expect(isVmUnavailable(new HcsError({ op: 'x', hresult: HResult.HCS_E_INVALID_JSON }))).to.equal(false);
      expect(isVmUnavailable(new UvmError('TIMEOUT', 't'))).to.equal(false);
    });
  });

  describe('names and formatting', function () {
    it('formats HRESULTs as unsigned 8-digit hex', function () {
      expect(formatHresult(-2143878898)).to.equal('0x8037010E');
      expect(formatHresult(0x490)).to.equal('0x00000490');
    });

    it('names known HRESULTs in either spelling', function () {
      expect(hresultName(0x8037010e)).to.equal('HCS_E_SYSTEM_NOT_FOUND');
      expect(hresultName(0xc037010e)).to.equal('HCS_E_SYSTEM_NOT_FOUND');
      expect(hresultName(HResult.E_ABORT)).to.equal('E_ABORT');
      expect(hresultName(0x80370120)).to.equal('HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION');
      expect(hresultName(0x8037ffff)).to.equal(undefined);
    });
  });
});

describe('hcs-error: HcsError and result documents', function () {
  const doc = JSON.stringify({
    Error: -2143878898,
    ErrorMessage: 'A virtual machine or container with the specified identifier does not exist.',
    ErrorEvents: [
      { Message: 'not found', StackTrace: 'at x', Provider: 'p1', EventId: 270, Flags: 2, Source: 'vmcompute', Data: [{ a: 1 }] },
      { Message: 'second' },
    ],
  });

  it('builds an HcsError from a result document with message, events and code', function () {
    const e = hcsErrorFromResult('HcsModifyComputeSystem', -2143878898, doc, 'vm-1');
    expect(e).to.be.instanceOf(UvmError);
    expect(e.code).to.equal('HCS_ERROR');
    expect(UvmError.is(e, 'HCS_ERROR')).to.equal(true);
    expect(e.op).to.equal('HcsModifyComputeSystem');
    expect(e.systemId).to.equal('vm-1');
    expect(e.hresult).to.equal(HResult.HCS_E_SYSTEM_NOT_FOUND);
    expect(e.errorMessage).to.equal('A virtual machine or container with the specified identifier does not exist.');
    expect(e.events).to.have.length(2);
    expect(e.events[0]).to.deep.include({ Provider: 'p1', EventId: 270, Data: [{ a: 1 }] });
    const lines = e.message.split('\n');
    expect(lines[0]).to.equal(
      'HcsModifyComputeSystem vm-1: A virtual machine or container with the specified identifier does not exist. (HRESULT 0x8037010E (HCS_E_SYSTEM_NOT_FOUND))',
    );
    expect(lines[1]).to.equal('[Event Detail: not found Stack Trace: at x Provider: p1 EventID: 270 flags: 2 Source: vmcompute]');
    expect(lines[2]).to.equal('[Event Detail: second]');
    expect(isNotExist(e)).to.equal(true);
  });

  it('keeps the raw HRESULT when the document is missing, empty or unparseable', function () {
    for (const bad of [undefined, '', '   ', '{not json', '[1,2]', 'null', '"text"', '42']) {
      const e = hcsErrorFromResult('HcsStartComputeSystem', 0x80370105, bad, 'vm-2');
      expect(e.hresult, String(bad)).to.equal(HResult.HCS_E_INVALID_STATE);
      expect(e.errorMessage).to.equal(undefined);
      expect(e.events).to.deep.equal([]);
      expect(e.message).to.equal('HcsStartComputeSystem vm-2: HRESULT 0x80370105 (HCS_E_INVALID_STATE)');
      expect(isInvalidState(e)).to.equal(true);
    }
  });

  it('drops fields of the wrong type and non-object events', function () {
    const parsed = parseResultError(
      JSON.stringify({ Error: 'x', ErrorMessage: 7, ErrorEvents: [null, 3, { Message: 5, EventId: '1', Source: 's' }] }),
    );
    expect(parsed).to.deep.equal({ ErrorEvents: [{ Source: 's' }] });
  });

  it('parses any well-formed document without throwing (property)', function () {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const e = hcsErrorFromResult('Op', HResult.E_FAIL, JSON.stringify(v));
        expect(e.hresult).to.equal(HResult.E_FAIL);
        expect(e.message.startsWith('Op: ')).to.equal(true);
      }),
    );
  });

  it('carries TIMEOUT / ABORTED codes and a cause', function () {
    const cause = new HcsError({ op: 'HcsModifyComputeSystem', hresult: HResult.E_ABORT });
    const e = new HcsError({ op: 'HcsModifyComputeSystem', hresult: HResult.E_ABORT, code: 'TIMEOUT', cause, text: 'timed out' });
    expect(e.code).to.equal('TIMEOUT');
    expect(e.cause).to.equal(cause);
    expect(e.message).to.equal('HcsModifyComputeSystem: timed out');
    expect(e.details).to.deep.include({ op: 'HcsModifyComputeSystem', hresult: '0x80004004' });
  });

  it('renders an event with only the parts present', function () {
    expect(renderEvent({})).to.equal('[Event Detail: ]');
    expect(renderEvent({ Provider: 'x', EventId: 0 })).to.equal('[Event Detail: Provider: x]');
  });
});
