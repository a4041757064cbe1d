import { expect } from 'chai';
import { UvmError, type UvmErrorCode } from '../../src/core/errors.js';

/** Awaits `promise`, expects it to reject with a UvmError of `code`, and returns the error. */
export async function expectCode(promise: Promise<unknown>, code: UvmErrorCode): Promise<UvmError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected a rejection with ${code}`).to.not.equal(undefined);
  expect(UvmError.is(caught), `expected a UvmError, got ${String(caught)}`).to.equal(true);
  expect((caught as UvmError).code, String(caught)).to.equal(code);
  return caught as UvmError;
}

/** Calls `fn`, expects it to throw a UvmError of `code`, and returns the error. */
export function expectCodeSync(fn: () => unknown, code: UvmErrorCode): UvmError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(UvmError.is(caught), `expected a UvmError, got ${String(caught)}`).to.equal(true);
  expect((caught as UvmError).code, String(caught)).to.equal(code);
  return caught as UvmError;
}
