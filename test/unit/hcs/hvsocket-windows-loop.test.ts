// The Windows hvsocket transport's byte layouts and its worker loop (the whole Winsock call
// sequence), run synchronously against a scripted fake Winsock on a virtual clock.
import { expect } from 'chai';
import { IDLE_WAKE_MS, runHvSocketLoop, type HostMessage, type LoopMessage } from '../../../src/hcs/hvsocket-windows-loop.js';
import {
  decodeFdSet,
  decodeSockaddrHv,
  encodeFdSet,
  encodeLoopbackSockaddrIn,
  encodeSockaddrHv,
  encodeTimeval,
  decodeTimeval,
  invalidSocket,
  readGuid,
  writeGuid,
} from '../../../src/hcs/hvsocket-windows-winsock.js';
import { expectCodeSync } from '../../fakes/expect-code.js';
import { WSAEACCES, WSAECONNRESET, scriptedWinsock, type FakeWinsock, type Step } from '../../fakes/fake-winsock.js';

const VM = '5f0d0e2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f';
const GCS = '40000000-facb-11e6-bd58-64006a7986d3';

describe('hvsocket (Windows): SOCKADDR_HV, GUID and Winsock struct layouts', () => {
  it('SOCKADDR_HV is 36 bytes: family 34, reserved 0, VmId, ServiceId (the reference example, byte for byte)', () => {
    const expected = Buffer.from(
      '22 00 00 00  2c 0e 0d 5f 2b 1a 3d 4c 8e 9f 0a 1b 2c 3d 4e 5f  00 00 00 40 cb fa e6 11 bd 58 64 00 6a 79 86 d3'.replace(/\s+/g, ''),
      'hex',
    );
    const addr = encodeSockaddrHv(VM, GCS);
    expect(addr.length).to.equal(36);
    expect(addr.toString('hex')).to.equal(expected.toString('hex'));
    expect(encodeSockaddrHv(VM.toUpperCase(), GCS.toUpperCase()).equals(expected)).to.equal(true);
    expect(decodeSockaddrHv(addr)).to.deep.equal({ family: 34, reserved: 0, vmId: VM, serviceId: GCS });
  });

  it('GUIDs: Data1/2/3 little-endian, Data4 as written; round trip; anything but canonical form is INVALID_ARGUMENT', () => {
    const buf = Buffer.alloc(16);
    writeGuid('00112233-4455-6677-8899-aabbccddeeff', buf, 0);
    expect(buf.toString('hex')).to.equal('33221100554477668899aabbccddeeff');
    expect(readGuid(buf, 0)).to.equal('00112233-4455-6677-8899-aabbccddeeff');
    for (const bad of ['', '{00112233-4455-6677-8899-aabbccddeeff}', '00112233445566778899aabbccddeeff', '0011223-4455-6677-8899-aabbccddeeff0', 'g0112233-4455-6677-8899-aabbccddeeff']) {
      expectCodeSync(() => writeGuid(bad, Buffer.alloc(16), 0), 'INVALID_ARGUMENT');
    }
  });

  it('fd_set: u_int count then SOCKET[64] (8-byte sockets after 4 bytes of padding on 64-bit, 4-byte on 32-bit)', () => {
    const x64 = encodeFdSet([0x101n, 0x2345n], 8);
    expect(x64.length).to.equal(8 + 64 * 8);
    expect(x64.subarray(0, 24).toString('hex')).to.equal('02000000' + '00000000' + '0101000000000000' + '4523000000000000');
    expect(decodeFdSet(x64, 8)).to.deep.equal([0x101n, 0x2345n]);
    const x86 = encodeFdSet([0x101n], 4);
    expect(x86.length).to.equal(4 + 64 * 4);
    expect(x86.subarray(0, 8).toString('hex')).to.equal('01000000' + '01010000');
    expect(decodeFdSet(x86, 4)).to.deep.equal([0x101n]);
    expectCodeSync(() => encodeFdSet(Array.from({ length: 65 }, (_, i) => BigInt(i)), 8), 'INVALID_ARGUMENT');
  });

  it('timeval (two 32-bit longs), sockaddr_in 127.0.0.1:port, INVALID_SOCKET per pointer size', () => {
    expect(encodeTimeval(120_000).toString('hex')).to.equal('78000000' + '00000000');
    expect(encodeTimeval(1500.2).toString('hex')).to.equal('01000000' + '08a50700'); // 1 s + 501 000 µs (rounded up to whole ms)
    expect(decodeTimeval(encodeTimeval(250))).to.equal(250);
    expect(encodeLoopbackSockaddrIn(0x1f90).toString('hex')).to.equal('0200' + '1f90' + '7f000001' + '0000000000000000');
    expect(invalidSocket(8)).to.equal(0xffffffffffffffffn);
    expect(invalidSocket(4)).to.equal(0xffffffffn);
  });
});

/** Runs the loop to its end against `fake`; `host` are messages already waiting when it starts. */
function run(fake: FakeWinsock, host: HostMessage[], options: { inbox?: HostMessage[] } = {}): LoopMessage[] {
  const inbox = options.inbox ?? host;
  const out: LoopMessage[] = [];
  runHvSocketLoop(fake, { receive: () => inbox.shift(), post: (m) => out.push(m) }, { vmId: VM, serviceId: GCS });
  return out;
}

/** A step that delivers host messages to the loop the way the main thread does: message, then wake. */
const hostSays =
  (inbox: HostMessage[], ...messages: HostMessage[]): Step =>
  (fake) => {
    inbox.push(...messages);
    fake.apply({ a: 'wake' });
  };
const guest =
  (...actions: Parameters<FakeWinsock['apply']>[0][]): Step =>
  (fake) => {
    for (const a of actions) fake.apply(a);
  };
const bytes = (s: string): ArrayBuffer => {
  const b = Buffer.from(s);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
};
const text = (m: LoopMessage): string => (m.t === 'data' ? Buffer.from(m.buf).toString() : '');
const kinds = (out: LoopMessage[]): string[] => out.map((m) => m.t);
const calls = (fake: FakeWinsock): string[] => fake.trace.map((l) => l.replace(/\(.*$/, ''));

describe('hvsocket (Windows): the worker loop against a fake Winsock', () => {
  it('listens, accepts the first connection, relays both ways, half-closes, and closes every socket', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
    const fake = scriptedWinsock({}, [
      guest({ a: 'dial' }),
      guest({ a: 'send', buf: bytes('hello') }),
      hostSays(inbox, { t: 'write', id: 1, buf: bytes('world') }, { t: 'end' }),
      guest({ a: 'eof' }),
      hostSays(inbox, { t: 'close' }),
    ]);
    const out = run(fake, [], { inbox });

    expect(kinds(out)).to.deep.equal(['listening', 'accepted', 'data', 'written', 'ended', 'eof', 'closed']);
    expect(out[0]).to.deep.equal({ t: 'listening', wakePort: 50000 });
    expect(text(out[2]!)).to.equal('hello');
    expect(Buffer.concat(fake.sentChunks).toString()).to.equal('world');
    expect(fake.openSockets()).to.deep.equal([]);
    // The exact call sequence: wake socket, listener, accept, nonblocking connection, relay, shutdown, close.
    const trace = fake.trace.filter((l) => !l.startsWith('select(') && !l.includes('wake'));
    expect(trace).to.deep.equal([
      'socket(2,2,17)=0x100',
      'bind(0x100,in:127.0.0.1:0)=0',
      'getsockname(0x100)=0',
      'ioctlsocket(0x100,FIONBIO,1)=0',
      'socket(34,1,1)=0x101',
      `bind(0x101,hv:${VM}/${GCS})=0`,
      'listen(0x101,16)=0',
      'accept(0x101)=0x102',
      'closesocket(0x101)=0',
      'ioctlsocket(0x102,FIONBIO,1)=0',
      'recv(0x102,65536,0)=5',
      'send(0x102,5,0)=5',
      'shutdown(0x102,1)=0',
      'recv(0x102,65536,0)=0',
      'closesocket(0x102)=0',
      'closesocket(0x100)=0',
    ]);
    // Accepting selects on the wake socket and the listener with the deadline as the timeout (capped).
    expect(fake.trace).to.include(`select(r[0x100 0x101],w[],${IDLE_WAKE_MS}ms)=1`);
  });

  it('accept deadline: the guest never dials → timeout at the deadline, listener closed, nothing open', () => {
    const fake = scriptedWinsock({}, []);
    const out = run(fake, [{ t: 'accept', timeoutMs: 120_000 }]);
    expect(kinds(out)).to.deep.equal(['listening', 'timeout', 'closed']);
    expect(fake.clockMs).to.equal(120_000);
    expect(calls(fake)).to.not.include('accept');
    expect(fake.trace).to.include('closesocket(0x101)=0');
    expect(fake.openSockets()).to.deep.equal([]);
  });

  it('a deadline that is not a multiple of the idle wake: the last select waits exactly the rest', () => {
    const fake = scriptedWinsock({}, []);
    run(fake, [{ t: 'accept', timeoutMs: 2_500 }]);
    expect(fake.trace.filter((l) => l.startsWith('select('))).to.deep.equal([
      'select(r[0x100 0x101],w[],1000ms)=0',
      'select(r[0x100 0x101],w[],1000ms)=0',
      'select(r[0x100 0x101],w[],500ms)=0',
    ]);
    expect(fake.clockMs).to.equal(2_500);
  });

  it('abort while accepting → aborted, listener closed, nothing open; a guest dialling later finds no listener', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
    const fake = scriptedWinsock({}, [hostSays(inbox, { t: 'abort' }), guest({ a: 'dial' })]);
    const out = run(fake, [], { inbox });
    expect(kinds(out)).to.deep.equal(['listening', 'aborted', 'closed']);
    expect(calls(fake)).to.not.include('accept');
    expect(fake.openSockets()).to.deep.equal([]);
  });

  it('close before accept → closed; the listener never accepted anything', () => {
    const inbox: HostMessage[] = [];
    const fake = scriptedWinsock({}, [guest({ a: 'dial' }), hostSays(inbox, { t: 'close' })]);
    const out = run(fake, [], { inbox });
    expect(kinds(out)).to.deep.equal(['listening', 'closed']);
    expect(calls(fake)).to.not.include('accept');
    // Before accept() is called, select watches only the wake socket.
    expect(fake.trace.filter((l) => l.startsWith('select('))[0]).to.equal(`select(r[0x100],w[],${IDLE_WAKE_MS}ms)=1`);
    expect(fake.openSockets()).to.deep.equal([]);
  });

  // Every Winsock call that can fail: the loop reports it with its name and WSA error, then closes all.
  const failing: { call: string; nth?: number; name: string; accepted: boolean }[] = [
    { call: 'socket', nth: 1, name: 'socket(AF_INET)', accepted: false },
    { call: 'bind', nth: 1, name: 'bind(AF_INET)', accepted: false },
    { call: 'getsockname', name: 'getsockname', accepted: false },
    { call: 'ioctlsocket', nth: 1, name: 'ioctlsocket(wake)', accepted: false },
    { call: 'socket', nth: 2, name: 'socket', accepted: false },
    { call: 'bind', nth: 2, name: 'bind', accepted: false },
    { call: 'listen', name: 'listen', accepted: false },
    { call: 'select', name: 'select', accepted: false },
    { call: 'accept', name: 'accept', accepted: false },
    { call: 'ioctlsocket', nth: 2, name: 'ioctlsocket', accepted: false },
    { call: 'recv', nth: 1, name: 'recv', accepted: true },
    { call: 'send', name: 'send', accepted: true },
    { call: 'shutdown', name: 'shutdown', accepted: true },
  ];
  for (const f of failing) {
    it(`${f.name} failing → error {call: '${f.name}', wsaError}, every socket closed, 'closed' last`, () => {
      const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
      const fake = scriptedWinsock({ failures: [{ call: f.call, nth: f.nth, wsaError: WSAEACCES }] }, [
        guest({ a: 'dial' }),
        guest({ a: 'send', buf: bytes('x') }),
        hostSays(inbox, { t: 'write', id: 1, buf: bytes('y') }, { t: 'end' }),
        hostSays(inbox, { t: 'close' }),
      ]);
      const out = run(fake, [], { inbox });
      const error = out.find((m) => m.t === 'error');
      expect(error, JSON.stringify(out)).to.deep.equal({ t: 'error', call: f.name, wsaError: WSAEACCES });
      expect(out.at(-1)).to.deep.equal({ t: 'closed' });
      expect(out.some((m) => m.t === 'accepted')).to.equal(f.accepted);
      expect(fake.openSockets()).to.deep.equal([]);
      expect(calls(fake).filter((c) => c === 'closesocket').length).to.equal(
        fake.trace.filter((l) => /^(socket|accept)\(.*\)=0x/.test(l)).length,
        'each socket opened is closed exactly once',
      );
    });
  }

  it('an exception from the Winsock port is reported as call "worker" with its message; every socket is closed', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
    const fake = scriptedWinsock({}, [guest({ a: 'dial' })]);
    const real = fake.accept.bind(fake);
    fake.accept = (s) => {
      real(s);
      throw new Error('koffi: bad argument');
    };
    const out = run(fake, [], { inbox });
    expect(out.slice(-2)).to.deep.equal([
      { t: 'error', call: 'worker', wsaError: 0, message: 'koffi: bad argument' },
      { t: 'closed' },
    ]);
    // The connection accepted just before the exception was never handed to the loop: the fake
    // still counts it; everything the loop itself opened is closed.
    expect(fake.openSockets()).to.deep.equal(['0x102:conn']);
  });

  it('send backpressure: partial sends, WOULDBLOCK, select for writability; written only when all bytes are out', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
    const payload = 'abcdefghijklmnopqrstuvwxy'; // 25 bytes through a 10-byte send buffer
    const fake = scriptedWinsock({ sendCapacity: 10 }, [
      guest({ a: 'dial' }),
      hostSays(inbox, { t: 'write', id: 7, buf: bytes(payload) }),
      guest({ a: 'drain' }),
      guest({ a: 'drain' }),
      hostSays(inbox, { t: 'close' }),
    ]);
    const out = run(fake, [], { inbox });
    expect(kinds(out)).to.deep.equal(['listening', 'accepted', 'written', 'closed']);
    expect(Buffer.concat(fake.sentChunks).toString()).to.equal(payload);
    expect(fake.trace.filter((l) => l.startsWith('send('))).to.deep.equal([
      'send(0x102,25,0)=10',
      'send(0x102,15,0)=SOCKET_ERROR/10035',
      'send(0x102,15,0)=10',
      'send(0x102,5,0)=SOCKET_ERROR/10035',
      'send(0x102,5,0)=5',
    ]);
    expect(fake.trace).to.include(`select(r[0x100 0x102],w[0x102],${IDLE_WAKE_MS}ms)=1`);
    expect(fake.openSockets()).to.deep.equal([]);
  });

  it('end waits for queued writes before shutdown(SD_SEND); zero-length writes complete at once', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
    const fake = scriptedWinsock({ sendCapacity: 3 }, [
      guest({ a: 'dial' }),
      hostSays(inbox, { t: 'write', id: 1, buf: new ArrayBuffer(0) }, { t: 'write', id: 2, buf: bytes('12345') }, { t: 'end' }),
      guest({ a: 'drain' }),
      hostSays(inbox, { t: 'close' }),
    ]);
    const out = run(fake, [], { inbox });
    expect(out.filter((m) => m.t === 'written' || m.t === 'ended')).to.deep.equal([
      { t: 'written', id: 1 },
      { t: 'written', id: 2 },
      { t: 'ended' },
    ]);
    const sendsAndShutdown = calls(fake).filter((c) => c === 'send' || c === 'shutdown');
    expect(sendsAndShutdown.at(-1)).to.equal('shutdown');
  });

  it('pause stops reading (the connection leaves the read set) until resume; data arrives in order', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
    const fake = scriptedWinsock({}, [
      guest({ a: 'dial' }),
      hostSays(inbox, { t: 'pause' }),
      guest({ a: 'send', buf: bytes('one') }),
      (f) => {
        // Still paused: the loop waited without reading the connection.
        expect(f.trace.filter((l) => l.startsWith('recv(0x102'))).to.deep.equal([]);
        hostSays(inbox, { t: 'resume' })(f);
      },
      guest({ a: 'send', buf: bytes('two') }),
      hostSays(inbox, { t: 'close' }),
    ]);
    const out = run(fake, [], { inbox });
    expect(out.filter((m) => m.t === 'data').map(text).join('')).to.equal('onetwo');
    expect(fake.trace).to.include(`select(r[0x100],w[],${IDLE_WAKE_MS}ms)=1`);
  });

  it('a reset connection fails recv with its WSA error (WSAECONNRESET) and closes everything', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 120_000 }];
    const fake = scriptedWinsock({}, [guest({ a: 'dial' }), guest({ a: 'reset', wsaError: WSAECONNRESET })]);
    const out = run(fake, [], { inbox });
    expect(out.slice(-2)).to.deep.equal([{ t: 'error', call: 'recv', wsaError: WSAECONNRESET }, { t: 'closed' }]);
    expect(fake.openSockets()).to.deep.equal([]);
  });

  it('a 32-bit Winsock (4-byte SOCKETs) runs the same sequence', () => {
    const inbox: HostMessage[] = [{ t: 'accept', timeoutMs: 1000 }];
    const fake = scriptedWinsock({ pointerSize: 4 }, [guest({ a: 'dial' }), guest({ a: 'send', buf: bytes('hi') }), hostSays(inbox, { t: 'close' })]);
    const out = run(fake, [], { inbox });
    expect(kinds(out)).to.deep.equal(['listening', 'accepted', 'data', 'closed']);
    expect(fake.openSockets()).to.deep.equal([]);
  });
});
