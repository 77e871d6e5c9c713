import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { appendMetric, readMetrics, truncateMetrics } from '../../src/runfolder/metrics.ts';
import { RunFolderError } from '../../src/runfolder/paths.ts';
import { tempDir } from '../helpers/tmp.ts';

test('metrics: a torn last line is skipped, non-finite strings come back as numbers, a gzipped copy is read when the plain file is absent', () => {
  const dir = tempDir('moco3-metrics-');
  const text = '{"step":1,"loss":4.5}\n{"step":2,"loss":"NaN","grad_inf/block0":"Infinity"}\n{"step":3,"lo';
  writeFileSync(join(dir, 'a.jsonl'), text);
  const rows = readMetrics(join(dir, 'a.jsonl'));
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[0], { step: 1, loss: 4.5 });
  assert.ok(Number.isNaN(rows[1]!.loss));
  assert.equal(rows[1]!['grad_inf/block0'], Infinity);
  writeFileSync(join(dir, 'b.jsonl.gz'), gzipSync(text));
  assert.deepEqual(readMetrics(join(dir, 'b.jsonl')), rows);
  assert.deepEqual(readMetrics(join(dir, 'none.jsonl')), []);
});

test('truncateMetrics (a resume): keeps the rows up to the step, drops a torn last line, refuses a damaged row before it', () => {
  const dir = tempDir('moco3-metrics-');
  const path = join(dir, 'metrics.jsonl');
  writeFileSync(path, '{"step":1,"loss":4.5}\n{"step":2,"loss":4.4}\n{"step":3,"loss":4.3}\n{"step":4,"lo');
  truncateMetrics(dir, 2);
  assert.equal(readFileSync(path, 'utf8'), '{"step":1,"loss":4.5}\n{"step":2,"loss":4.4}\n');
  const damaged = '{"step":1,"loss":4.5}\n{"step":2,"lo\n{"step":3,"loss":4.3}\n';
  writeFileSync(path, damaged);
  assert.throws(() => truncateMetrics(dir, 3), (e: Error) => e instanceof RunFolderError && /metrics\.jsonl: line 2 is not a JSON object/.test(e.message));
  assert.equal(readFileSync(path, 'utf8'), damaged, 'nothing dropped');
});

test('appendMetric: a write that fails (a full disk) names the metrics file', () => {
  const dir = tempDir('moco3-metrics-');
  symlinkSync('/dev/full', join(dir, 'metrics.jsonl')); // every write to it fails with ENOSPC
  assert.throws(
    () => appendMetric(dir, { step: 1, loss: 4 }),
    (e: NodeJS.ErrnoException) => e.code === 'ENOSPC' && e.path === join(dir, 'metrics.jsonl'),
  );
});
