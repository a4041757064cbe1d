import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectCode } from '../../fakes/expect-code.js';
import { JOURNAL_VERSION, newJournalDocument, parseJournal, type JournalDocument } from '../../../src/recovery/journal-format.js';
import { readJournalFile, RecoveryJournal, resolveJournalOptions, writeFileAtomic } from '../../../src/recovery/journal.js';

describe('recovery journal', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-journal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const scsiLease = (owner?: string) => ({
    kind: 'scsi' as const,
    ...(owner ? { owner } : {}),
    request: { hostPath: '/l/a.vhdx', readOnly: true },
    value: { controller: 0, lun: 1, hostPath: '/l/a.vhdx', readOnly: true, type: 'VirtualDisk', guestPath: '/run/mounts/scsi/m0' },
  });

  describe('writeFileAtomic', () => {
    it('replaces the file and leaves no temporary file', async () => {
      const path = join(dir, 'j.json');
      await writeFileAtomic(path, 'one');
      await writeFileAtomic(path, 'two');
      expect(readFileSync(path, 'utf8')).to.equal('two');
      expect(readdirSync(dir)).to.deep.equal(['j.json']);
    });

    it('leaves the previous file intact when the rename fails, and removes its temporary file', async () => {
      const path = join(dir, 'j.json');
      mkdirSync(path); // renaming a file over a directory fails
      writeFileSync(join(path, 'keep'), 'x');
      let failed = false;
      await writeFileAtomic(path, 'new').catch(() => (failed = true));
      expect(failed).to.equal(true);
      expect(readdirSync(dir)).to.deep.equal(['j.json']);
      expect(readFileSync(join(path, 'keep'), 'utf8')).to.equal('x');
    });
  });

  describe('RecoveryJournal', () => {
    it('creates a versioned journal and reads it back', async () => {
      const path = join(dir, 'j.json');
      await RecoveryJournal.create(path, 'vm-1', { os: 'linux' });
      const doc = (await readJournalFile(path))!;
      expect(doc).to.deep.equal({ ...newJournalDocument('vm-1', { os: 'linux' }), version: JOURNAL_VERSION });
    });

    it('makes each change durable before resolving, with increasing record ids', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      const a = await journal.addLease(scsiLease('c1'));
      const b = await journal.addLease(scsiLease());
      expect([a, b]).to.deep.equal([1, 2]);
      let onDisk = (await readJournalFile(path))!;
      expect(onDisk.records.map((r) => [r.id, r.owner ?? null])).to.deep.equal([
        [1, 'c1'],
        [2, null],
      ]);
      await journal.removeLease(a);
      onDisk = (await readJournalFile(path))!;
      expect(onDisk.records.map((r) => r.id)).to.deep.equal([2]);
      expect(onDisk.nextRecordId).to.equal(3);
    });

    it('coalesces concurrent changes into fewer writes, each change durable when it resolves', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      const before = journal.writes;
      const ids = await Promise.all(Array.from({ length: 20 }, () => journal.addLease(scsiLease())));
      expect(ids).to.deep.equal(Array.from({ length: 20 }, (_, i) => i + 1));
      expect((await readJournalFile(path))!.records).to.have.length(20);
      expect(journal.writes - before).to.be.lessThan(20);
    });

    it('removing an absent record is a no-op that writes nothing', async () => {
      const journal = await RecoveryJournal.create(join(dir, 'j.json'), 'vm-1', {});
      const writes = journal.writes;
      await journal.removeLease(42);
      await journal.removeContainer('nope');
      expect(journal.writes).to.equal(writes);
    });

    it('raises the name counters past every share name it journals, never lowering them', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      const plan9 = (name: string, hostPath: string) => ({
        kind: 'plan9' as const,
        request: { hostPath, readOnly: true },
        value: { name, hostPath, readOnly: true, mountPath: `/run/mounts/plan9/${name}`, guestPath: `/run/mounts/plan9/${name}` },
      });
      await journal.addLease(plan9('7', '/d'));
      await journal.addLease({ kind: 'vsmb', request: { hostPath: 'C:\\l', readOnly: true }, value: { name: 'sa', hostPath: 'C:\\l', readOnly: true, guestPath: 'x', sharePath: 'x' } });
      await journal.addLease(plan9('2', '/e'));
      expect((await readJournalFile(path))!.nameCounters).to.deep.equal({ vsmb: 11, plan9: 8 });
      await journal.rewrite([], [], [], { plan9: 3, vsmb: 20 });
      expect((await readJournalFile(path))!.nameCounters).to.deep.equal({ vsmb: 20, plan9: 8 });
    });

    it('open() rejects a missing or corrupt journal with RECOVERY_FAILED, an unknown version with JOURNAL_VERSION (file untouched)', async () => {
      const path = join(dir, 'j.json');
      const missing = await expectCode(RecoveryJournal.open(path), 'RECOVERY_FAILED');
      expect(missing.details.reason).to.equal('missing');
      writeFileSync(path, '{"version": 1, "uvmId": "vm-1", "records": [');
      expect((await expectCode(RecoveryJournal.open(path), 'RECOVERY_FAILED')).details.reason).to.equal('corrupt');
      const future = JSON.stringify({ ...newJournalDocument('vm-1', {}), version: JOURNAL_VERSION + 1 });
      writeFileSync(path, future);
      const err = await expectCode(RecoveryJournal.open(path), 'JOURNAL_VERSION');
      expect(err.details).to.deep.include({ version: JOURNAL_VERSION + 1, supported: [1, 2, 3] });
      expect(readFileSync(path, 'utf8')).to.equal(future);
      expect(readdirSync(dir)).to.deep.equal(['j.json']);
    });

    it('fails a change with RECOVERY_FAILED when the file cannot be written, and persists it with the next write', async () => {
      const sub = join(dir, 'sub');
      mkdirSync(sub);
      const path = join(sub, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      rmSync(sub, { recursive: true });
      await expectCode(journal.addLease(scsiLease()), 'RECOVERY_FAILED');
      mkdirSync(sub);
      await journal.addLease(scsiLease());
      expect((await readJournalFile(path))!.records.map((r) => r.id)).to.deep.equal([1, 2]);
    });

    it('appends one fsync\'d line per write and compacts atomically once idle: the file reads back as the document', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      const lines = () => readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0);
      for (let i = 0; i < 300; i++) {
        const id = await journal.addLease(scsiLease());
        await journal.removeLease(id);
      }
      await journal.addLease(scsiLease('c1'));
      // A burst of changes never waits for a compaction (below 4 × the bound): it runs once idle.
      expect(journal.compactions).to.equal(0);
      expect(lines()).to.have.length(1 + 601);
      expect(await readJournalFile(path)).to.deep.equal(journal.snapshot());
      await journal.idle();
      expect(journal.compactions).to.equal(1);
      expect(lines()).to.have.length(1);
      expect(JSON.parse(lines()[0]!).version).to.equal(JOURNAL_VERSION);
      expect(await readJournalFile(path)).to.deep.equal(journal.snapshot());
      // Appends go on after the compaction.
      await journal.addLease(scsiLease('c2'));
      expect(lines()).to.have.length(2);
      expect(await readJournalFile(path)).to.deep.equal(journal.snapshot());
      await journal.close();
    });

    it('compacts on the spot when the log reaches 4 × its bound: the file stays bounded during a long burst', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {}, { compactAfterLines: 8 });
      let longest = 0;
      for (let i = 0; i < 100; i++) {
        const id = await journal.addLease(scsiLease());
        await journal.removeLease(id);
        longest = Math.max(longest, readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0).length);
      }
      expect(journal.compactions).to.be.greaterThan(0);
      expect(longest, 'snapshot + appended lines').to.be.at.most(1 + 4 * 8);
      expect(await readJournalFile(path)).to.deep.equal(journal.snapshot());
      await journal.close();
    });

    it('a burst of releases is not compacted in its tail: the on-the-spot bound follows the largest document since the last snapshot', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {}, { compactAfterLines: 8 });
      const ids = await Promise.all(Array.from({ length: 20 }, () => journal.addLease(scsiLease())));
      for (const id of ids) await journal.removeLease(id);
      // 40 lines appended, the document back to empty: 4 × max(8, 2 × 20) is the bound, not 4 × 8.
      expect(journal.compactions).to.equal(0);
      expect(await readJournalFile(path)).to.deep.equal(journal.snapshot());
      await journal.idle();
      expect(journal.compactions).to.equal(1);
      await journal.close();
    });

    it('ignores a torn last line (an append that never completed); a bad line before it is corrupt', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      await journal.addLease(scsiLease());
      const good = readFileSync(path, 'utf8');
      writeFileSync(path, `${good}{"op":"unlease","i`);
      expect((await readJournalFile(path))!.records.map((r) => r.id)).to.deep.equal([1]);
      writeFileSync(path, `${good}{"op":"unlease"\n{"op":"unlease","id":1}\n`);
      expect((await expectCode(readJournalFile(path), 'RECOVERY_FAILED')).details.reason).to.equal('corrupt');
    });

    it('write-ahead parts: an add is durable as `adding` before intend resolves; settle and removals are appended as small state ops', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', { os: 'linux' });
      const part = { key: 'scsi:0:1', kind: 'scsi-attachment' as const, half: 'host' as const, settings: { Type: 'VirtualDisk', Path: '/l/a.vhdx', Controller: 0, Lun: 1 } };
      await journal.intend([{ op: 'add', part }]);
      expect((await readJournalFile(path))!.parts).to.deep.equal([{ ...part, state: 'adding' }]);
      journal.settle([{ op: 'add', part }]);
      await journal.addLease(scsiLease());
      expect((await readJournalFile(path))!.parts.map((p) => p.state)).to.deep.equal(['attached']);
      await journal.intend([{ op: 'remove', key: part.key, kind: part.kind, half: part.half }]);
      await journal.removeLease(1);
      expect((await readJournalFile(path))!.parts.map((p) => p.state)).to.deep.equal(['removing']);
      const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as { op?: string });
      expect(lines.filter((l) => l.op === 'state')).to.deep.equal([
        { op: 'state', key: 'scsi:0:1', state: 'attached' },
        { op: 'state', key: 'scsi:0:1', state: 'removing' },
      ]);
      journal.settle([{ op: 'remove', key: part.key, kind: part.kind, half: part.half }]);
      await journal.close();
      expect((await readJournalFile(path))!.parts).to.deep.equal([]);
      expect(await readJournalFile(path)).to.deep.equal(journal.snapshot());
    });

    it('announcements: one write ahead of a batch of calls; an intent of an announced part needs no write of its own; withdraw drops what no call claimed', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', { os: 'linux' });
      const part = (lun: number) => ({ key: `scsi:0:${lun}`, kind: 'scsi-attachment' as const, half: 'host' as const, settings: { Controller: 0, Lun: lun } });
      const [a, b] = journal.announce([[part(1), part(2)], [part(3)]]);
      expect(a!.keys).to.deep.equal(['scsi:0:1', 'scsi:0:2']);
      // A key journaled or announced already is not announced again.
      expect(journal.announce([[part(1)]])[0]!.keys).to.deep.equal([]);
      await journal.idle();
      const writes = journal.writes;
      expect((await readJournalFile(path))!.parts.map((p) => [p.key, p.state])).to.deep.equal([
        ['scsi:0:1', 'adding'],
        ['scsi:0:2', 'adding'],
        ['scsi:0:3', 'adding'],
      ]);
      // Claimed: durable already, so no write; the document's settings replace the derived ones.
      const exact = { ...part(1), settings: { ...part(1).settings, Path: '/l/a.vhdx' } };
      await journal.intend([{ op: 'add', part: exact }]);
      expect(journal.writes).to.equal(writes);
      journal.settle([{ op: 'add', part: exact }]);
      a!.withdraw();
      b!.withdraw();
      expect(journal.unclaimed).to.equal(2);
      // A part that was not announced still waits for a write of its own.
      await journal.intend([{ op: 'add', part: part(4) }]);
      expect(journal.writes).to.equal(writes + 1);
      expect((await readJournalFile(path))!.parts.map((p) => [p.key, p.state, p.settings.Path])).to.deep.equal([
        ['scsi:0:1', 'attached', '/l/a.vhdx'],
        ['scsi:0:4', 'adding', undefined],
      ]);
      await journal.close();
    });

    it('an intent of a part announced in a write still in flight waits for that write', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', { os: 'linux' });
      const part = { key: 'plan9:0', kind: 'plan9-share' as const, half: 'host' as const, settings: { Name: '0' } };
      journal.announce([[part]]);
      await journal.intend([{ op: 'add', part }]);
      expect((await readJournalFile(path))!.parts.map((p) => p.key)).to.deep.equal(['plan9:0']);
      await journal.close();
    });

    it('a container lease journaled with durable: false resolves at once and is carried by the next write', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      const id = await journal.addLease(scsiLease('c1'), { durable: false });
      await journal.putContainer({ id: 'c1', rootfsPath: '/r', held: [{ record: id, fields: { kind: 'layer', source: 'scsi' } }], mounts: [], nextMountIndex: 0 });
      const onDisk = (await readJournalFile(path))!;
      expect(onDisk.records.map((r) => r.id)).to.deep.equal([id]);
      expect(onDisk.containers.map((c) => c.id)).to.deep.equal(['c1']);
      await journal.close();
    });

    it('discard() deletes the file; later changes stay in memory', async () => {
      const path = join(dir, 'j.json');
      const journal = await RecoveryJournal.create(path, 'vm-1', {});
      await journal.discard();
      await journal.addLease(scsiLease());
      expect(readdirSync(dir)).to.deep.equal([]);
      expect(journal.records()).to.have.length(1);
    });
  });

  describe('parseJournal', () => {
    const valid = (): JournalDocument => ({
      ...newJournalDocument('vm-1', { os: 'linux' }),
      nextRecordId: 3,
      records: [
        { id: 1, kind: 'vpmem', owner: 'c1', request: { hostPath: '/l/b' }, value: { device: 0, hostPath: '/l/b', guestPath: '/run/layers/p0' } },
        { id: 2, kind: 'combined-layers', owner: 'c1', request: { ContainerRootPath: '/run/gcs/c/c1/rootfs' }, value: { ContainerRootPath: '/run/gcs/c/c1/rootfs' } },
      ],
      containers: [{ id: 'c1', rootfsPath: '/run/gcs/c/c1/rootfs', held: [{ record: 1, fields: { kind: 'layer', source: 'vpmem' } }], mounts: [], nextMountIndex: 0 }],
    });

    it('accepts a well-formed journal unchanged', () => {
      const doc = valid();
      expect(parseJournal(JSON.stringify(doc))).to.deep.equal(doc);
    });

    const corruptions: [string, (d: Record<string, any>) => void][] = [
      ['not an object', (d) => Object.keys(d).forEach((k) => delete d[k])],
      ['an unknown top-level field', (d) => (d.extra = 1)],
      ['a missing uvmId', (d) => delete d.uvmId],
      ['records not an array', (d) => (d.records = {})],
      ['an unknown record kind', (d) => (d.records[0].kind = 'floppy')],
      ['a record without id', (d) => delete d.records[0].id],
      ['a duplicate record id', (d) => (d.records[1].id = 1)],
      ['a record id at or above nextRecordId', (d) => (d.nextRecordId = 2)],
      ['a VPMEM record without a device', (d) => delete d.records[0].value.device],
      ['a negative device', (d) => (d.records[0].value.device = -1)],
      ['a fractional offset', (d) => (d.records[0].value.offset = 1.5)],
      ['an empty owner', (d) => (d.records[0].owner = '')],
      ['a combined-layers record without ContainerRootPath', (d) => delete d.records[1].value.ContainerRootPath],
      ['a container without held', (d) => delete d.containers[0].held],
      ['a duplicate container', (d) => d.containers.push(structuredClone(d.containers[0]))],
      ['a mount without destination', (d) => d.containers[0].mounts.push({ index: 0, planned: {}, mount: {} })],
      ['name counters of the wrong type', (d) => (d.nameCounters.plan9 = '3')],
      ['a part state of an unknown kind', (d) => d.parts.push({ key: 'vpmem:0', kind: 'vpmem-device', half: 'host', settings: {}, state: 'gone' })],
    ];
    for (const [what, corrupt] of corruptions) {
      it(`rejects ${what} with RECOVERY_FAILED (corrupt)`, () => {
        const doc = valid() as unknown as Record<string, any>;
        corrupt(doc);
        let code: unknown;
        let reason: unknown;
        try {
          parseJournal(JSON.stringify(doc));
        } catch (err) {
          code = (err as { code?: string }).code;
          reason = (err as { details?: { reason?: string } }).details?.reason;
        }
        expect([code, reason]).to.deep.equal(what === 'not an object' ? ['JOURNAL_VERSION', 'version'] : ['RECOVERY_FAILED', 'corrupt']);
      });
    }

    it('reads every readable version and names the others: 2 and 3 are the same log, read in the current form', () => {
      expect(JOURNAL_VERSION).to.equal(3);
      const doc = { ...valid(), parts: [{ key: 'vpmem:0', kind: 'vpmem-device' as const, half: 'host' as const, settings: { DeviceNumber: 0 }, state: 'adding' as const }] };
      const log = (version: number) => `${JSON.stringify({ ...doc, version })}\n${JSON.stringify({ op: 'state', key: 'vpmem:0', state: 'attached' })}\n`;
      for (const version of [2, 3]) {
        const read = parseJournal(log(version));
        expect(read.version).to.equal(JOURNAL_VERSION);
        expect(read.parts.map((p) => p.state)).to.deep.equal(['attached']);
      }
      for (const version of [0, 4, 99, '3', null]) {
        let details: unknown;
        try {
          parseJournal(log(version as number));
        } catch (err) {
          expect((err as { code?: string }).code).to.equal('JOURNAL_VERSION');
          details = (err as { details?: unknown }).details;
        }
        expect(details).to.deep.include({ reason: 'version', version, supported: [1, 2, 3] });
      }
    });

    it('replays state ops; a state op for a part that is not there is corrupt', () => {
      const doc = { ...valid(), parts: [{ key: 'vpmem:0', kind: 'vpmem-device' as const, half: 'host' as const, settings: { DeviceNumber: 0 }, state: 'adding' as const }] };
      const text = `${JSON.stringify(doc)}\n${JSON.stringify({ op: 'state', key: 'vpmem:0', state: 'attached' })}\n`;
      expect(parseJournal(text).parts.map((p) => p.state)).to.deep.equal(['attached']);
      const bad = `${JSON.stringify(doc)}\n${JSON.stringify({ op: 'state', key: 'vpmem:9', state: 'attached' })}\n`;
      expect(() => parseJournal(bad)).to.throw().with.property('code', 'RECOVERY_FAILED');
    });

    it('rejects text that is not JSON (a torn file)', () => {
      const text = JSON.stringify(valid());
      for (const cut of [0, 1, Math.floor(text.length / 2), text.length - 1]) {
        let code: unknown;
        try {
          parseJournal(text.slice(0, cut));
        } catch (err) {
          code = (err as { code?: string }).code;
        }
        expect(code, `cut at ${cut}`).to.equal('RECOVERY_FAILED');
      }
    });
  });

  describe('resolveJournalOptions', () => {
    it('accepts an absolute path and rejects anything else with INVALID_ARGUMENT', () => {
      expect(resolveJournalOptions(undefined)).to.equal(undefined);
      expect(resolveJournalOptions({ path: '/var/lib/shim/vm-1.journal' })).to.deep.equal({ path: '/var/lib/shim/vm-1.journal' });
      for (const bad of [null, 'x', {}, { path: '' }, { path: 'rel/j.json' }, { path: '/a\0b' }, { path: 3 }]) {
        let code: unknown;
        try {
          resolveJournalOptions(bad);
        } catch (err) {
          code = (err as { code?: string }).code;
        }
        expect(code, JSON.stringify(bad)).to.equal('INVALID_ARGUMENT');
      }
    });
  });
});
