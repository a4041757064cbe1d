import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { JournalLock, lockPathOf } from '../../../src/recovery/journal-lock.js';
import { RecoveryJournal } from '../../../src/recovery/journal.js';
import { expectCode } from '../../fakes/expect-code.js';

/** The pid of a process that has exited (its pid is not reused within the test). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('journal ownership (lock file)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-lock-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const path = () => join(dir, 'vm.journal');
  const writeLock = (owner: Record<string, unknown>) => writeFileSync(lockPathOf(path()), JSON.stringify(owner));

  it('one owner at a time: a second claim → JOURNAL_IN_USE naming the owner; release frees it', async () => {
    const lock = await JournalLock.acquire(path());
    const err = await expectCode(JournalLock.acquire(path()), 'JOURNAL_IN_USE');
    expect(err.details).to.deep.include({ reason: 'locked', path: path() });
    expect((err.details.owner as { pid: number }).pid).to.equal(process.pid);
    await lock.release();
    await lock.release();
    expect(readdirSync(dir)).to.deep.equal([]);
    await (await JournalLock.acquire(path())).release();
  });

  it('concurrent claims: exactly one wins', async () => {
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => JournalLock.acquire(path())));
    const won = results.filter((r): r is PromiseFulfilledResult<JournalLock> => r.status === 'fulfilled');
    expect(won).to.have.length(1);
    await won[0]!.value.release();
  });

  it('takes over a lock whose process is gone, or whose pid is ours with a token we do not hold', async () => {
    writeLock({ pid: deadPid(), host: hostname(), token: 'dead', since: 'then' });
    const a = await JournalLock.acquire(path());
    expect(JSON.parse(readFileSync(lockPathOf(path()), 'utf8')).token).to.equal(a.owner.token);
    await a.release();
    writeLock({ pid: process.pid, host: hostname(), token: 'previous-process', since: 'then' });
    const b = await JournalLock.acquire(path());
    await b.release();
    expect(readdirSync(dir)).to.deep.equal([]);
  });

  it('never takes over a live process, another host, or a file that is not a lock record', async () => {
    writeLock({ pid: process.ppid, host: hostname(), token: 'parent', since: 'now' });
    await expectCode(JournalLock.acquire(path()), 'JOURNAL_IN_USE');
    writeLock({ pid: deadPid(), host: `${hostname()}-other`, token: 'remote', since: 'now' });
    await expectCode(JournalLock.acquire(path()), 'JOURNAL_IN_USE');
    writeLock({ garbage: true });
    await expectCode(JournalLock.acquire(path()), 'JOURNAL_IN_USE');
    expect(existsSync(lockPathOf(path()))).to.equal(true);
  });

  it('RecoveryJournal: create and open take the lock; close gives it up and keeps the file; create never replaces a journal', async () => {
    const j = await RecoveryJournal.create(path(), 'vm-1', {});
    await expectCode(RecoveryJournal.open(path()), 'JOURNAL_IN_USE');
    await j.close();
    await expectCode(j.addLease({ kind: 'pipe', request: { hostPath: '\\\\.\\pipe\\p' }, value: { hostPath: '\\\\.\\pipe\\p' } }), 'HANDLE_CLOSED');
    const bytes = readFileSync(path());
    const exists = await expectCode(RecoveryJournal.create(path(), 'vm-1', {}), 'JOURNAL_IN_USE');
    expect(exists.details.reason).to.equal('exists');
    expect(readFileSync(path()).equals(bytes)).to.equal(true);
    const reopened = await RecoveryJournal.open(path());
    expect(reopened.uvmId).to.equal('vm-1');
    await reopened.discard();
    expect(readdirSync(dir)).to.deep.equal([]);
  });
});
