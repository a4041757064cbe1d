import { expect } from 'chai';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UvmError } from '../../../src/core/errors.js';
import { LCOW_GCS_SERVICE_ID, localHvSocketPath } from '../../../src/hcs/hvsocket.js';
import { UnixHvSocketTransport } from '../../../src/hcs/hvsocket-unix.js';

const VM = '5f0d0e2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f';

function dial(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path, () => resolve(s));
    s.once('error', reject);
  });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'resolved',
    (e: unknown) => (e as UvmError).code,
  );
}

describe('Unix hvsocket transport', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hvsock-test-'));
    env = { UVM_HVSOCK_DIR: join(dir, 'hv') };
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('listens at <dir>/<vmid>-<serviceid>.sock (dir mode 0700); accept hands out the first connection and closes the listener', async () => {
    const t = new UnixHvSocketTransport({ env });
    const listener = await t.listen(VM.toUpperCase(), LCOW_GCS_SERVICE_ID);
    const path = localHvSocketPath(VM, LCOW_GCS_SERVICE_ID, env);
    expect((await stat(join(dir, 'hv'))).mode & 0o777).to.equal(0o700);
    // The guest may dial before the host accepts (listen comes before start).
    const guest = await dial(path);
    const host = await listener.accept({ timeoutMs: 30_000 });
    guest.write('ping');
    const got = await new Promise<string>((resolve) => host.once('data', (b: Buffer) => resolve(b.toString())));
    expect(got).to.equal('ping');
    expect(await stat(path).catch(() => undefined)).to.equal(undefined);
    guest.destroy();
    host.destroy();
  });

  it('GUEST_CONNECT_TIMEOUT at the deadline, ABORTED on the signal; the listener is closed either way', async () => {
    const t = new UnixHvSocketTransport({ env });
    const late = await t.listen(VM, LCOW_GCS_SERVICE_ID);
    const err = await late.accept({ timeoutMs: 20 }).catch((e: unknown) => e as UvmError);
    expect(err).to.have.property('code', 'GUEST_CONNECT_TIMEOUT');
    expect((err as UvmError).details).to.include({ vmId: VM, serviceId: LCOW_GCS_SERVICE_ID, timeoutMs: 20 });
    await dial(localHvSocketPath(VM, LCOW_GCS_SERVICE_ID, env)).then(
      () => expect.fail('listener still open'),
      () => undefined,
    );
    const aborted = await t.listen(VM, LCOW_GCS_SERVICE_ID);
    const ac = new AbortController();
    const p = aborted.accept({ timeoutMs: 30_000, signal: ac.signal });
    ac.abort();
    expect(await codeOf(p)).to.equal('ABORTED');
    await aborted.close();
  });

  it('refuses ids that are not GUIDs (they name a path)', async () => {
    expect(await codeOf(new UnixHvSocketTransport({ env }).listen('../etc', LCOW_GCS_SERVICE_ID))).to.equal('INVALID_ARGUMENT');
  });
});
