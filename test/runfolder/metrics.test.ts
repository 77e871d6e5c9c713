import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { appendMetric, jsonLine, readMetrics, resetMetrics, syncMetrics, truncateMetrics } from '../../src/runfolder/metrics.ts';
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
  const notes: string[] = [];
  const kept = truncateMetrics(dir, 2, (n) => notes.push(n));
  assert.equal(readFileSync(path, 'utf8'), '{"step":1,"loss":4.5}\n{"step":2,"loss":4.4}\n');
  // and returns those rows (the resume takes its last kNN from them), not the ones it dropped
  assert.deepEqual(kept, [
    { step: 1, loss: 4.5 },
    { step: 2, loss: 4.4 },
  ]);
  assert.deepEqual(notes, [`${path}: its last line is torn (a run killed while writing it); dropped`], 'the torn line is said');
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

test('syncMetrics fsyncs metrics.jsonl: a file that cannot be flushed fails the call, named; with no file there is nothing to flush', () => {
  const dir = tempDir('moco3-metrics-');
  syncMetrics(dir); // no file yet: nothing to flush
  symlinkSync('/dev/full', join(dir, 'metrics.jsonl')); // a file that cannot be flushed (EINVAL)
  assert.throws(
    () => syncMetrics(dir),
    (e: NodeJS.ErrnoException) => e.code === 'EINVAL' && e.path === join(dir, 'metrics.jsonl'),
  );
});

test('metrics: a row of a step again, out of order, or without a step is refused with its line (read as a second point it would draw a dip that never happened)', () => {
  const dir = tempDir('moco3-metrics-');
  for (const [text, message] of [
    ['{"step":0,"knn_top1":50}\n{"step":40,"knn_top1":60}\n{"step":40,"knn_top1":50}\n{"step":41,"loss":4}\n', /c\.jsonl: line 3 is of step 40, after a row of step 40: a run's rows are one per step, in order; remove the line/],
    ['{"step":5,"loss":4}\n{"step":3,"loss":4}\n', /line 2 is of step 3, after a row of step 5/],
    ['{"step":1,"loss":4}\n{"loss":4}\n', /line 2 has no step \(a whole number\), got undefined/],
    ['{"step":"1.5","loss":4}\n', /line 1 has no step \(a whole number\), got "1\.5"/],
  ] as const) {
    writeFileSync(join(dir, 'c.jsonl'), text);
    assert.throws(() => readMetrics(join(dir, 'c.jsonl')), (e: Error) => e instanceof RunFolderError && message.test(e.message), text);
  }
});

test('jsonLine: non-finite numbers as the strings metrics.jsonl holds, at any depth (what every --json line writes)', () => {
  assert.equal(jsonLine({ a: NaN, b: [Infinity, 1.5], c: { d: -Infinity }, e: null }), '{"a":"NaN","b":["Infinity",1.5],"c":{"d":"-Infinity"},"e":null}');
});

test('appendMetric writes one line per row: rows appended one after another read back as those rows', () => {
  const dir = tempDir('moco3-metrics-');
  appendMetric(dir, { step: 0, loss: 5 });
  appendMetric(dir, { step: 1, loss: NaN, knn_top1: null });
  assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), '{"step":0,"loss":5}\n{"step":1,"loss":"NaN","knn_top1":null}\n');
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[0], { step: 0, loss: 5 });
  assert.ok(Number.isNaN(rows[1]!.loss));
  // a run trained from step 0 again starts from an empty file
  resetMetrics(dir);
  assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), '');
  assert.deepEqual(readMetrics(join(dir, 'metrics.jsonl')), []);
});

test('metrics: a torn line is the last whole-text line even with blank lines after it; a last line that parses but is no object is damage, not a torn write', () => {
  const dir = tempDir('moco3-metrics-');
  const notes: string[] = [];
  writeFileSync(join(dir, 'a.jsonl'), '{"step":1,"loss":4.5}\n{"step":2,"lo\n\n');
  assert.deepEqual(readMetrics(join(dir, 'a.jsonl'), (n) => notes.push(n)), [{ step: 1, loss: 4.5 }]);
  assert.deepEqual(notes, [`${join(dir, 'a.jsonl')}: its last line is torn (a run killed while writing it); ignored`]);
  for (const last of ['[2]', '7', 'null']) {
    writeFileSync(join(dir, 'b.jsonl'), `{"step":1,"loss":4.5}\n${last}\n`);
    assert.throws(() => readMetrics(join(dir, 'b.jsonl')), (e: Error) => e instanceof RunFolderError && /b\.jsonl: line 2 is not a JSON object/.test(e.message), last);
  }
});

test('truncateMetrics of a run whose metrics are gzipped: the rows are unpacked into metrics.jsonl and cut there, the .gz kept', () => {
  const dir = tempDir('moco3-metrics-');
  const text = '{"step":0,"loss":5}\n{"step":2,"loss":4}\n{"step":4,"loss":3}\n';
  writeFileSync(join(dir, 'metrics.jsonl.gz'), gzipSync(text));
  const kept = truncateMetrics(dir, 2);
  assert.deepEqual(kept, [
    { step: 0, loss: 5 },
    { step: 2, loss: 4 },
  ]);
  assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), '{"step":0,"loss":5}\n{"step":2,"loss":4}\n');
  // a row the resume appends goes after the earlier rows, which a reader of the plain file sees
  appendMetric(dir, { step: 3, loss: 3.5 });
  assert.deepEqual(readMetrics(join(dir, 'metrics.jsonl')).map((r) => r.step), [0, 2, 3]);
  assert.ok(existsSync(join(dir, 'metrics.jsonl.gz')));
});

test('metrics that cannot be read: a folder in the file\'s place, a cut .gz, a damaged line of a .gz: one RunFolderError naming the file; a null value is kept as null', () => {
  const dir = tempDir('moco3-metrics-');
  mkdirSync(join(dir, 'a.jsonl'));
  assert.throws(() => readMetrics(join(dir, 'a.jsonl')), (e: Error) => e instanceof RunFolderError && e.message.startsWith(`${join(dir, 'a.jsonl')}: `));
  const gz = gzipSync('{"step":1,"loss":4.5}\n{"step":2,"loss":4.4}\n');
  writeFileSync(join(dir, 'b.jsonl.gz'), gz.subarray(0, gz.length - 6));
  assert.throws(
    () => readMetrics(join(dir, 'b.jsonl')),
    (e: Error) => e instanceof RunFolderError && e.message.startsWith(`${join(dir, 'b.jsonl.gz')}: not a whole gzip file (`) && e.message.endsWith('); copy it again from where it came'),
  );
  writeFileSync(join(dir, 'c.jsonl.gz'), gzipSync('{"step":1,"loss":4.5}\n[]\n{"step":3,"loss":4.3}\n'));
  assert.throws(() => readMetrics(join(dir, 'c.jsonl')), (e: Error) => e instanceof RunFolderError && e.message.startsWith(`${join(dir, 'c.jsonl.gz')}: line 2 is not a JSON object`));
  writeFileSync(join(dir, 'd.jsonl'), '{"step":1,"loss":4.5,"knn_top1":null}\n');
  assert.deepEqual(readMetrics(join(dir, 'd.jsonl')), [{ step: 1, loss: 4.5, knn_top1: null }]);
});
