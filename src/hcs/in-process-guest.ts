/**
 * An in-process stand-in for a guest's hvsocket connections, for `FakeHcs`: every accept resolves
 * at once with one end of an in-memory stream pair whose other end (the "guest") drains what the
 * host writes. FakeHcs applies `GuestRequest`s itself (HCS-owned delivery), so this only answers
 * the LCOW entropy and log connections a UVM accepts in `start()`.
 */
import { Duplex } from 'node:stream';
import type { HvSocketListener, HvSocketTransport } from './hvsocket.js';

type Peered = Duplex & { peer?: Duplex };

/** Two connected in-memory Duplex ends. */
export function duplexPair(): [Duplex, Duplex] {
  const make = (): Peered =>
    new Duplex({
      read() {},
      write(this: Peered, chunk: Buffer, _encoding, callback) {
        this.peer?.push(chunk);
        callback();
      },
      final(this: Peered, callback) {
        this.peer?.push(null);
        callback();
      },
      destroy(this: Peered, err, callback) {
        if (this.peer && !this.peer.destroyed) this.peer.destroy();
        callback(err);
      },
    });
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** `HvSocketTransport` whose guest dials at once and drains (see the module comment). */
export class DrainingGuestTransport implements HvSocketTransport {
  listen(): Promise<HvSocketListener> {
    return Promise.resolve({
      accept: () => {
        const [host, guest] = duplexPair();
        guest.on('error', () => undefined);
        guest.resume();
        return Promise.resolve(host);
      },
      close: () => Promise.resolve(),
    });
  }
}
