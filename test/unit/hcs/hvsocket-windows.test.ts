// WindowsHvSocketTransport end to end on this host: real worker threads, the real Duplex, the
// real worker loop, and a fake Winsock loaded inside each worker (test/fakes/fake-winsock.ts).
// Only ws2_32.dll itself is replaced; what that leaves untested is listed in docs/hcs.md.
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { expect } from 'chai';
import sinon from 'sinon';
import { UvmError } from '../../../src/core/errors.js';
import {
  WindowsHvSocketTransport,
  liveHvSocketWorkers,
  ws2WinsockProvider,
  type WinsockProvider,
} from '../../../src/hcs/hvsocket-windows.js';
import { createWinsock } from '../../../src/hcs/hvsocket-windows-ws2.js';
import { expectCode, expectCodeSync } from '../../fakes/expect-code.js';
import { WSAEACCES, WSAECONNRESET, fakeWinsockProvider, type FakeGuest, type FakeWinsockOptions } from '../../fakes/fake-winsock.js';
import { checkAfterTest } from '../../support/leak-checks.js';

const VM = '5f0d0e2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f';
const GCS = '40000000-facb-11e6-bd58-64006a7986d3';
/** The accept deadline of tests that expect the guest to dial: a safety net only. */
const GENEROUS_MS = 60_000;

/** Collects everything the readable side yields until its end (the writable side stays as it is). */
async function readAll(stream: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream.iterator({ destroyOnReturn: false })) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Resolves when the stream has emitted 'close' (the worker has exited by then). */
async function closed(stream: Duplex): Promise<void> {
  if (!stream.closed) await once(stream, 'close');
}

/** A listener on a fake Winsock whose guest has dialled, and the accepted stream. */
async function connected(options: FakeWinsockOptions = {}): Promise<{ guest: FakeGuest; stream: Duplex }> {
  const winsock = fakeWinsockProvider(options);
  const listener = await new WindowsHvSocketTransport({ winsock }).listen(VM, GCS);
  const accepting = listener.accept({ timeoutMs: GENEROUS_MS });
  winsock.guests[0]!.dial();
  return { guest: winsock.guests[0]!, stream: await accepting };
}

/**
 * The fake reports its disposal over a MessagePort, which may deliver after the worker's exit was
 * seen (the stream's 'close'): wait for that report (or for the port to close without it).
 */
async function noSocketLeft(guest: FakeGuest): Promise<void> {
  await guest.until((g) => g.disposedWithOpen !== undefined || g.portClosed);
  expect(guest.disposedWithOpen, 'the fake Winsock was disposed').to.not.equal(undefined);
  expect(guest.disposedWithOpen).to.deep.equal([]);
}

describe('hvsocket (Windows): WindowsHvSocketTransport over worker threads and a fake Winsock', function () {
  this.timeout(60_000); // worker start-up on a loaded 2-core machine; nothing waits on time otherwise

  beforeEach(() => {
    checkAfterTest(() => (liveHvSocketWorkers() === 0 ? [] : [`${liveHvSocketWorkers()} hvsocket worker(s) still running`]));
  });

  it('listen → accept the first connection → bytes both ways → half-close both sides → every socket closed', async () => {
    const winsock = fakeWinsockProvider();
    const transport = new WindowsHvSocketTransport({ platform: 'linux', winsock });
    const listener = await transport.listen(VM.toUpperCase(), GCS);
    const guest = winsock.guests[0]!;
    const accepting = listener.accept({ timeoutMs: GENEROUS_MS });
    guest.dial();
    const stream = await accepting;
    await listener.close(); // after accept: a no-op (the listener closed at accept)

    const reading = readAll(stream);
    guest.send(Buffer.from('from the guest, '));
    guest.send(Buffer.from('in two chunks'));
    await new Promise<void>((resolve, reject) => stream.write(Buffer.from('from the host'), (e) => (e ? reject(e) : resolve())));
    await guest.until((g) => g.receivedBytes().toString() === 'from the host');
    stream.end();
    await guest.until((g) => g.calls().includes('shutdown'));
    guest.do({ a: 'eof' });
    expect((await reading).toString()).to.equal('from the guest, in two chunks');
    await closed(stream);

    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(guest);
    expect(guest.trace).to.include(`bind(0x101,hv:${VM}/${GCS})=0`);
    expect(guest.trace).to.include('listen(0x101,16)=0');
    expect(guest.trace).to.include('shutdown(0x102,1)=0');
    expect(guest.calls().filter((c) => c === 'closesocket')).to.have.length(3);
    expect(guest.wakes).to.be.greaterThan(0);
  });

  it('the accept deadline: a guest that never dials → GUEST_CONNECT_TIMEOUT, listener closed, worker gone', async () => {
    const winsock = fakeWinsockProvider();
    const listener = await new WindowsHvSocketTransport({ winsock }).listen(VM, GCS);
    const err = await expectCode(listener.accept({ timeoutMs: 30 }), 'GUEST_CONNECT_TIMEOUT');
    expect(err.details).to.include({ vmId: VM, serviceId: GCS, timeoutMs: 30 });
    expect(liveHvSocketWorkers()).to.equal(0);
    const guest = winsock.guests[0]!;
    await noSocketLeft(guest);
    expect(guest.calls()).to.not.include('accept');
    await listener.close(); // idempotent after the outcome
    await expectCode(listener.accept({ timeoutMs: 30 }), 'INVALID_STATE');
  });

  it('abort while accepting → ABORTED (cause = the signal reason), listener closed, worker gone', async () => {
    const winsock = fakeWinsockProvider();
    const listener = await new WindowsHvSocketTransport({ winsock }).listen(VM, GCS);
    const ac = new AbortController();
    const accepting = listener.accept({ timeoutMs: GENEROUS_MS, signal: ac.signal });
    const reason = new Error('VM exited');
    ac.abort(reason);
    const err = await expectCode(accepting, 'ABORTED');
    expect(err.cause).to.equal(reason);
    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(winsock.guests[0]!);
  });

  it('a signal already aborted → ABORTED without accepting; the listener is closed', async () => {
    const winsock = fakeWinsockProvider();
    const listener = await new WindowsHvSocketTransport({ winsock }).listen(VM, GCS);
    winsock.guests[0]!.dial();
    await expectCode(listener.accept({ timeoutMs: GENEROUS_MS, signal: AbortSignal.abort() }), 'ABORTED');
    expect(liveHvSocketWorkers()).to.equal(0);
    expect(winsock.guests[0]!.calls()).to.not.include('accept');
    await noSocketLeft(winsock.guests[0]!);
  });

  it('close() while accepting → the accept rejects ABORTED (reason closed); close resolves once the worker is gone', async () => {
    const winsock = fakeWinsockProvider();
    const listener = await new WindowsHvSocketTransport({ winsock }).listen(VM, GCS);
    const accepting = listener.accept({ timeoutMs: GENEROUS_MS });
    const rejected = expectCode(accepting, 'ABORTED');
    await listener.close();
    expect(liveHvSocketWorkers()).to.equal(0);
    expect((await rejected).details.reason).to.equal('closed');
    await noSocketLeft(winsock.guests[0]!);
  });

  it('close() before accept: worker gone, nothing open; a second close is a no-op', async () => {
    const winsock = fakeWinsockProvider();
    const listener = await new WindowsHvSocketTransport({ winsock }).listen(VM, GCS);
    await listener.close();
    await listener.close();
    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(winsock.guests[0]!);
  });

  it('bind refused (WSAEACCES) → listen rejects HVSOCKET_ERROR {call: bind, wsaError: 10013}; nothing left', async () => {
    const winsock = fakeWinsockProvider({ failures: [{ call: 'bind', nth: 2, wsaError: WSAEACCES }] });
    const err = await expectCode(new WindowsHvSocketTransport({ winsock }).listen(VM, GCS), 'HVSOCKET_ERROR');
    expect(err.details).to.include({ call: 'bind', wsaError: WSAEACCES, vmId: VM, serviceId: GCS });
    expect(err.message).to.include('10013');
    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(winsock.guests[0]!);
  });

  it('accept failing → HVSOCKET_ERROR {call: accept}; the listener is closed', async () => {
    const winsock = fakeWinsockProvider({ failures: [{ call: 'accept', wsaError: 10055 }] });
    const listener = await new WindowsHvSocketTransport({ winsock }).listen(VM, GCS);
    const accepting = listener.accept({ timeoutMs: GENEROUS_MS });
    winsock.guests[0]!.dial();
    const err = await expectCode(accepting, 'HVSOCKET_ERROR');
    expect(err.details).to.include({ call: 'accept', wsaError: 10055 });
    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(winsock.guests[0]!);
  });

  it('a connection reset mid-stream → the stream errors HVSOCKET_ERROR {call: recv, wsaError: 10054}, then closes', async () => {
    const { guest, stream } = await connected();
    const errored = once(stream, 'error');
    guest.do({ a: 'reset', wsaError: WSAECONNRESET });
    const [err] = (await errored) as [UvmError];
    expect(UvmError.is(err, 'HVSOCKET_ERROR')).to.equal(true);
    expect(err.details).to.include({ call: 'recv', wsaError: WSAECONNRESET });
    await closed(stream);
    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(guest);
  });

  it('write backpressure: a write completes only once the guest has taken every byte', async () => {
    const { guest, stream } = await connected({ sendCapacity: 4 });
    let done = false;
    const written = new Promise<void>((resolve, reject) =>
      stream.write(Buffer.from('12345678'), (e) => {
        done = true;
        return e ? reject(e) : resolve();
      }),
    );
    await guest.until((g) => g.receivedBytes().length === 4 && /^send\(.*SOCKET_ERROR\/10035$/.test(g.trace.at(-1)!));
    expect(done).to.equal(false);
    guest.do({ a: 'drain' });
    await written;
    expect(guest.receivedBytes().toString()).to.equal('12345678');
    stream.destroy();
    await closed(stream);
    await noSocketLeft(guest);
  });

  it('a slow reader: the worker pauses reading when the readable side is full and resumes; bytes arrive in order', async () => {
    const { guest, stream } = await connected();
    const chunk = Buffer.alloc(64 * 1024);
    const sent: Buffer[] = [];
    for (let i = 0; i < 6; i++) {
      const c = Buffer.from(chunk.fill(i + 1));
      sent.push(c);
      guest.send(c);
    }
    guest.do({ a: 'eof' });
    // Nobody reads yet: the first 64 KiB chunk fills the readable side past its highWaterMark,
    // so the stream asks the worker to pause, and to resume once the reader drains it.
    await once(stream, 'readable');
    expect(stream.readableLength).to.be.greaterThan(stream.readableHighWaterMark);
    const got = await readAll(stream);
    expect(got.equals(Buffer.concat(sent))).to.equal(true);
    stream.destroy();
    await closed(stream);
    await noSocketLeft(guest);
  });

  it('destroy() of an open connection closes its socket and ends the worker', async () => {
    const { guest, stream } = await connected();
    stream.destroy();
    await closed(stream);
    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(guest);
  });

  it('destroy() with a write still in the worker: the write fails (HANDLE_CLOSED), the socket is closed', async () => {
    const { guest, stream } = await connected({ sendCapacity: 0 }); // the guest never reads
    const written = new Promise<unknown>((resolve) => stream.write(Buffer.from('stuck'), (e) => resolve(e)));
    await guest.until((g) => /^send\(.*SOCKET_ERROR\/10035$/.test(g.trace.at(-1) ?? ''));
    stream.destroy();
    const err = await written;
    expect(UvmError.is(err, 'HANDLE_CLOSED'), String(err)).to.equal(true);
    await closed(stream);
    expect(liveHvSocketWorkers()).to.equal(0);
    await noSocketLeft(guest);
  });

  it('a Winsock module that cannot be loaded → listen rejects LIBRARY_LOAD_FAILED; the worker exits', async () => {
    const provider: WinsockProvider = {
      module: new URL('./no-such-winsock-module.js', import.meta.url),
      open: () => ({ wake: () => {}, close: () => {} }),
    };
    await expectCode(new WindowsHvSocketTransport({ winsock: provider }).listen(VM, GCS), 'LIBRARY_LOAD_FAILED');
    expect(liveHvSocketWorkers()).to.equal(0);
  });

  it('bad input: ids that are not GUIDs and a bad timeout are INVALID_ARGUMENT; a second accept is INVALID_STATE', async () => {
    const winsock = fakeWinsockProvider();
    const transport = new WindowsHvSocketTransport({ winsock });
    await expectCode(transport.listen('not-a-guid', GCS), 'INVALID_ARGUMENT');
    await expectCode(transport.listen(VM, `{${GCS}}`), 'INVALID_ARGUMENT');
    expect(winsock.guests).to.have.length(0); // refused before any worker started
    const listener = await transport.listen(VM, GCS);
    for (const timeoutMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, '5' as unknown as number]) {
      await expectCode(listener.accept({ timeoutMs }), 'INVALID_ARGUMENT');
    }
    const accepting = listener.accept({ timeoutMs: GENEROUS_MS });
    await expectCode(listener.accept({ timeoutMs: GENEROUS_MS }), 'INVALID_STATE');
    const rejected = expectCode(accepting, 'ABORTED');
    await listener.close();
    await rejected;
  });
});

describe('hvsocket (Windows): never loads ws2_32 off Windows', () => {
  beforeEach(() => {
    checkAfterTest(() => (liveHvSocketWorkers() === 0 ? [] : [`${liveHvSocketWorkers()} hvsocket worker(s) still running`]));
  });

  it('the default transport on a non-Windows platform refuses with NOT_SUPPORTED before starting a worker', async () => {
    const err = await expectCode(new WindowsHvSocketTransport({ platform: 'linux' }).listen(VM, GCS), 'NOT_SUPPORTED');
    expect(err.details.platform).to.equal('linux');
    expect(liveHvSocketWorkers()).to.equal(0);
  });

  it('createWinsock checks the platform before it loads koffi', () => {
    const loadKoffi = sinon.spy(() => {
      throw new Error('must not be called');
    });
    for (const platform of ['linux', 'darwin', 'freebsd'] as const) {
      expectCodeSync(() => createWinsock(undefined, { platform, arch: 'x64', loadKoffi }), 'NOT_SUPPORTED');
    }
    expect(loadKoffi.callCount).to.equal(0);
  });

  it('the real ws2_32 module inside a worker on this host: listen rejects NOT_SUPPORTED and the worker exits', async () => {
    if (process.platform === 'win32') return; // on Windows it would really bind
    const provider: WinsockProvider = { module: ws2WinsockProvider.module, open: () => ({ wake: () => {}, close: () => {} }) };
    await expectCode(new WindowsHvSocketTransport({ winsock: provider }).listen(VM, GCS), 'NOT_SUPPORTED');
    expect(liveHvSocketWorkers()).to.equal(0);
  });
});
