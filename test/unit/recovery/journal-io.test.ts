import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { journalIo } from '../../../src/recovery/journal-io.js';
import { readJournalFile, RecoveryJournal } from '../../../src/recovery/journal.js';

/** Open descriptors of this process (Linux), or undefined elsewhere. */
function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

describe('recovery journal: the I/O thread', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-journal-io-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const lease = (i: number) => ({
    kind: 'scsi' as const,
    request: { hostPath: `/l/${i}.vhdx`, readOnly: true },
    value: { controller: 0, lun: i, hostPath: `/l/${i}.vhdx`, readOnly: true, type: 'VirtualDisk', guestPath: `/run/mounts/scsi/m${i}` },
  });

  it('appends through the thread once it is online, each change in the file when it resolves', async () => {
    const journal = await RecoveryJournal.create(join(dir, 'j'), 'vm-1', {});
    expect(await journalIo.ready()).to.equal(true);
    const before = journalIo.threadAppends;
    for (let i = 0; i < 5; i++) {
      const id = await journal.addLease(lease(i));
      expect((await readJournalFile(join(dir, 'j')))!.records.map((r) => r.id)).to.include(id);
    }
    // Concurrent changes share writes (group commit), each resolving once its write is durable.
    const ids = await Promise.all([5, 6, 7, 8].map((i) => journal.addLease(lease(i))));
    expect((await readJournalFile(join(dir, 'j')))!.records.map((r) => r.id)).to.include.members(ids);
    expect(journalIo.threadAppends - before).to.be.within(6, 9);
    await journal.close();
  });

  it('more requests in flight than the completion board has slots: every one settles, in its own file', async () => {
    const journals = await Promise.all(Array.from({ length: 100 }, (_, i) => RecoveryJournal.create(join(dir, `j${i}`), `vm-${i}`, {})));
    expect(await journalIo.ready()).to.equal(true);
    for (let round = 0; round < 2; round++) {
      const ids = await Promise.all(journals.map((j, i) => j.addLease(lease(i))));
      for (const [i, j] of journals.entries()) {
        expect((await readJournalFile(j.path))!.records.map((r) => r.id)).to.deep.equal(round === 0 ? [ids[i]] : [ids[i]! - 1, ids[i]]);
      }
    }
    await Promise.all(journals.map((j) => j.close()));
  });

  it('a thread that goes away: a write in flight is written again as a snapshot, nobody sees a failure; its descriptors are not reused', async () => {
    const path = join(dir, 'j');
    const journal = await RecoveryJournal.create(path, 'vm-1', {});
    expect(await journalIo.ready()).to.equal(true);
    await journal.addLease(lease(0));
    const fds = openFds();
    // Gone between writes: the next append opens the file again.
    await journalIo.stopThread();
    await journal.addLease(lease(1));
    // Gone with a write in flight: that write's outcome is unknown, so the file is rewritten whole
    // (as after a failed append), and the change resolves.
    const other = await RecoveryJournal.create(join(dir, 'k'), 'vm-2', {});
    expect(await journalIo.ready()).to.equal(true);
    await other.addLease(lease(0));
    const compactions = other.compactions;
    const inFlight = other.addLease(lease(1));
    await Promise.all([inFlight, journalIo.stopThread()]);
    expect(other.compactions, "rewritten as a snapshot").to.equal(compactions + 1);
    await other.addLease(lease(2));
    expect((await readJournalFile(join(dir, 'k')))!.records.map((r) => r.id)).to.deep.equal([1, 2, 3]);
    expect((await readJournalFile(path))!.records.map((r) => r.id)).to.deep.equal([1, 2]);
    await journal.close();
    await other.close();
    if (fds !== undefined) expect(openFds()).to.be.at.most(fds);
    // A new journal starts a thread again.
    const third = await RecoveryJournal.create(join(dir, 'l'), 'vm-3', {});
    expect(await journalIo.ready()).to.equal(true);
    await third.addLease(lease(0));
    await third.discard();
  });

  it('does not keep the process alive: a child that never closes its journal exits on its own, its changes on disk', async function () {
    this.timeout(60_000);
    const path = join(dir, 'child');
    const module = (name: string): string => JSON.stringify(pathToFileURL(fileURLToPath(new URL(`../../../src/recovery/${name}`, import.meta.url))).href);
    const script = `
      const { RecoveryJournal } = await import(${module('journal.js')});
      const { journalIo } = await import(${module('journal-io.js')});
      const journal = await RecoveryJournal.create(${JSON.stringify(path)}, 'vm-1', {});
      if (!(await journalIo.ready())) process.exit(3);
      const lease = ${JSON.stringify(lease(0))};
      await journal.addLease(lease);
      journal.addLease(lease);
      if (journalIo.threadAppends !== 2) process.exit(4);
    `;
    const file = join(dir, 'child.mjs');
    writeFileSync(file, script);
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, [file], { stdio: ['ignore', 'ignore', 'inherit'] });
      child.on('error', reject);
      child.on('exit', resolve);
    });
    expect(code).to.equal(0);
    // The second change was in flight when the script ended: the process waited for it.
    expect((await readJournalFile(path))!.records.map((r) => r.id)).to.deep.equal([1, 2]);
  });
});
