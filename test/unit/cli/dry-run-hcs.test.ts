import { expect } from 'chai';
import { DryRunHcs, uuidV5 } from '../../../src/cli/dry-run-hcs.js';

describe('cli/dry-run-hcs', () => {
  it('computes RFC 4122 version-5 UUIDs (known vector)', () => {
    expect(uuidV5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'www.example.com')).to.equal('2ed6657d-e927-568b-95e1-2665a8aea6a2');
  });

  it('nameToGuid is the v5 UUID of the name in the NameToGuid namespace', () => {
    const hcs = new DryRunHcs();
    expect(hcs.nameToGuid('www.example.com')).to.equal('2ed6657d-e927-568b-95e1-2665a8aea6a2');
    expect(hcs.nameToGuid('layer-a')).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('accepts the lifecycle and device calls, records them, and refuses use after close', async () => {
    const hcs = new DryRunHcs();
    const system = await hcs.createComputeSystem('vm', {});
    await system.start();
    await system.modify({ ResourcePath: 'x', RequestType: 'Add' });
    await hcs.grantVmAccess('vm', '/s.vhdx');
    expect(await hcs.openComputeSystem('vm')).to.equal(system);
    await system.terminate();
    expect(hcs.calls.map((c) => c.fn)).to.deep.equal(['create', 'start', 'modify', 'grant', 'terminate']);
    system.close();
    let err: unknown;
    await system.modify({}).catch((e: unknown) => (err = e));
    expect((err as { code?: string }).code).to.equal('HANDLE_CLOSED');
    // A terminated system is forgotten: its id can be created again.
    await hcs.createComputeSystem('vm', {});
  });
});
