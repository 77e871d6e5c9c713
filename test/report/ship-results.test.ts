/**
 * scripts/ship-results.mjs, which copies a finished sweep's small files into docs/results/: the report
 * files, each run's record, metrics gzipped (or kept gzipped when the run was copied from shipped
 * results), and never a checkpoint.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { tmp } from './fixtures.ts';

const script = join(import.meta.dirname, '..', '..', 'scripts', 'ship-results.mjs');

test('ship-results: report files and run records, metrics gzipped or kept gzipped, no checkpoints', () => {
  const src = tmp('moco3-ship-src-');
  const dest = tmp('moco3-ship-dest-');
  const sweep = join(src, 'probe');
  mkdirSync(join(sweep, 'plots'), { recursive: true });
  writeFileSync(join(sweep, 'report.md'), '# report\n');
  writeFileSync(join(sweep, 'runs.csv'), 'run_id\n');
  writeFileSync(join(sweep, 'plots', 'knn.svg'), '<svg/>');
  const fresh = join(sweep, 'fresh-s0');
  mkdirSync(join(fresh, 'checkpoints', 'step-10'), { recursive: true });
  writeFileSync(join(fresh, 'config.yaml'), 'seed: 0\n');
  writeFileSync(join(fresh, 'summary.json'), '{"status":"completed"}');
  writeFileSync(join(fresh, 'metrics.jsonl'), '{"step":0}\n{"step":1}\n');
  writeFileSync(join(fresh, 'checkpoints', 'step-10', 'weights.bin'), 'w');
  const copied = join(sweep, 'copied-s1');
  mkdirSync(copied);
  writeFileSync(join(copied, 'config.yaml'), 'seed: 1\n');
  writeFileSync(join(copied, 'metrics.jsonl.gz'), gzipSync('{"step":5}\n'));

  const r = spawnSync(process.execPath, [script, src, dest, 'probe'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const to = join(dest, 'probe');
  assert.equal(readFileSync(join(to, 'report.md'), 'utf8'), '# report\n');
  assert.ok(existsSync(join(to, 'plots', 'knn.svg')));
  assert.equal(readFileSync(join(to, 'fresh-s0', 'summary.json'), 'utf8'), '{"status":"completed"}');
  assert.equal(gunzipSync(readFileSync(join(to, 'fresh-s0', 'metrics.jsonl.gz'))).toString(), '{"step":0}\n{"step":1}\n');
  assert.ok(!existsSync(join(to, 'fresh-s0', 'metrics.jsonl')));
  assert.ok(!existsSync(join(to, 'fresh-s0', 'checkpoints')));
  assert.equal(gunzipSync(readFileSync(join(to, 'copied-s1', 'metrics.jsonl.gz'))).toString(), '{"step":5}\n');
});

test('ship-results: a sweep without report.md is refused, exit 2', () => {
  const src = tmp('moco3-ship-src-');
  mkdirSync(join(src, 'unreported', 'run-s0'), { recursive: true });
  const r = spawnSync(process.execPath, [script, src, tmp('moco3-ship-dest-'), 'unreported'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /has no report\.md/);
});
