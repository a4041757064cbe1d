// Issue 12: createUtilityVm options and the scenario file fail closed. Random JSON, and valid
// options with one member replaced by random JSON, either pass or are rejected with a UvmError
// (never a TypeError); a rejected member is named in details.field.
import { expect } from 'chai';
import fc from 'fast-check';
import path from 'node:path';
import { UvmError } from '../../../src/core/errors.js';
import { parseScenario } from '../../../src/cli/scenario.js';
import { ScenarioError } from '../../../src/cli/scenario-error.js';
import { resolveUvmOptions, type UtilityVmOptions } from '../../../src/uvm/uvm-options.js';

const VALID: Record<string, unknown>[] = [
  { id: 'p', os: 'linux', scsiControllers: 2, vpmem: { count: 4, multiMapping: true }, boot: { bootFilesPath: '/boot', mode: 'uefi' } },
  { id: 'w', os: 'windows', boot: { osLayerPath: 'C:\\l', scratchPath: 'C:\\s.vhdx' }, console: { pipe: '\\\\.\\pipe\\c' }, processor: { limit: 5000 } },
];
const MEMBERS = ['id', 'os', 'scsiControllers', 'reservedScsiSlots', 'vpmem', 'fullyPhysicallyBacked', 'memoryMb', 'boot', 'owner', 'console', 'memory', 'processor', 'hvSocketServices', 'journal', 'assignedDevices', 'createDocumentPatch'];

/** resolveUvmOptions either returns or throws a UvmError (INVALID_ARGUMENT / NOT_SUPPORTED) naming a field. */
function outcome(options: unknown): 'ok' | string {
  try {
    resolveUvmOptions(options as UtilityVmOptions);
    return 'ok';
  } catch (err) {
    expect(UvmError.is(err), `not a UvmError: ${String(err)}`).to.equal(true);
    const e = err as UvmError;
    expect(['INVALID_ARGUMENT', 'NOT_SUPPORTED', 'INVALID_SPEC'], e.message).to.include(e.code);
    expect(e.details.field, e.message).to.be.a('string');
    return e.details.field as string;
  }
}

describe('createUtilityVm options and the scenario file: random input fails closed', () => {
  it('the valid examples pass', () => {
    for (const o of VALID) expect(outcome(o)).to.equal('ok');
  });

  it('random JSON is accepted or rejected with a UvmError, never a TypeError', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        outcome(value);
      }),
      { numRuns: 300 },
    );
  });

  it('one member replaced by random JSON: rejected naming that member (or a member inside it), or accepted', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VALID), fc.constantFrom(...MEMBERS), fc.jsonValue(), (base, member, value) => {
        const field = outcome({ ...base, [member]: value });
        if (field !== 'ok' && member !== 'os') expect(field === member || field.startsWith(`${member}.`) || field.startsWith(`${member}[`), `${member} → ${field}`).to.equal(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('a scenario with random JSON in place of any section is accepted or a ScenarioError', () => {
    const file = path.resolve('/scenarios/s/scenario.json');
    const base = { uvm: { id: 'p', os: 'linux' }, containers: [{ id: 'a', bundle: 'b' }] };
    fc.assert(
      fc.property(fc.constantFrom('uvm', 'containers', 'teardown', 'fixtures', 'description', 'x'), fc.jsonValue(), (key, value) => {
        try {
          parseScenario({ ...base, [key]: value }, file);
        } catch (err) {
          expect(err, String(err)).to.be.instanceOf(ScenarioError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
