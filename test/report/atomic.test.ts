/** The report's files are rewritten through a temporary name and a rename, never in place. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeReport } from '../../src/report/index.ts';
import { tmp, writeBatchSweep } from './fixtures.ts';

test('a report rewritten goes through a temporary name and a rename: a reader of the old files keeps them whole', async () => {
  const dir = writeBatchSweep(tmp(), 'batch-size', [0]);
  await writeReport(dir);
  const files = ['report.md', 'report.csv', 'runs.csv', 'plots/knn.svg', 'plots/knn.png'];
  const before = files.map((f) => ({ f, ino: statSync(join(dir, f)).ino, text: readFileSync(join(dir, f)) }));
  const fds = files.map((f) => openSync(join(dir, f), 'r'));
  writeFileSync(join(dir, 'report.md'), readFileSync(join(dir, 'report.md'))); // same content, same inode
  await writeReport(dir);
  for (const [i, b] of before.entries()) {
    assert.notEqual(statSync(join(dir, b.f)).ino, b.ino, `${b.f} was replaced, not written in place`);
    const old = readFileSync(fds[i]!);
    closeSync(fds[i]!);
    assert.ok(old.equals(b.text), `${b.f}: the open old file is intact`);
  }
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
});
