/**
 * scripts/ship-results.mjs, which copies a finished sweep's small files into docs/results/: the report
 * files, each run's record, metrics gzipped (or kept gzipped when the run was copied from shipped
 * results), and never a checkpoint.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

/** A sweep folder `name` under `src` with report.md and the given run folders (each with config.yaml). */
function sweepAt(src: string, name: string, runs: string[]): string {
  const sweep = join(src, name);
  mkdirSync(sweep, { recursive: true });
  writeFileSync(join(sweep, 'report.md'), `# ${name}\n`);
  for (const r of runs) {
    mkdirSync(join(sweep, r));
    writeFileSync(join(sweep, r, 'config.yaml'), `run: ${r}\n`);
  }
  return sweep;
}

/** Every file and folder under `dir` (folders ending in /), as paths relative to it, sorted. */
function filesUnder(dir: string, at = ''): string[] {
  // walked by hand: Dirent.parentPath needs Node 20.12, the tests run on 20.11
  return readdirSync(join(dir, at), { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? [`${join(at, d.name)}/`, ...filesUnder(dir, join(at, d.name))] : [join(at, d.name)]))
    .sort();
}

test("ship-results: every file of the sweep and of its runs that ships is copied, the rest (a run's log, a sweep's other files, a folder that is no run) are not", () => {
  const src = tmp('moco3-ship-src-');
  const dest = tmp('moco3-ship-dest-');
  const sweep = sweepAt(src, 'full', ['a-s0']);
  for (const f of ['report.csv', 'runs.csv', 'baselines.json', 'sweep.yaml', 'notes.txt']) writeFileSync(join(sweep, f), f);
  for (const f of ['meta.json', 'status.json', 'summary.json', 'linear.json', 'train.log']) writeFileSync(join(sweep, 'a-s0', f), f);
  // a folder of the sweep with no config.yaml is no run
  mkdirSync(join(sweep, 'logs'));
  writeFileSync(join(sweep, 'logs', 'slurm-1.out'), 'x');
  const r = spawnSync(process.execPath, [script, src, dest, 'full'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(filesUnder(join(dest, 'full')), [
    'a-s0/',
    'a-s0/config.yaml',
    'a-s0/linear.json',
    'a-s0/meta.json',
    'a-s0/status.json',
    'a-s0/summary.json',
    'baselines.json',
    'plots/',
    'report.csv',
    'report.md',
    'runs.csv',
    'sweep.yaml',
  ]);
  assert.equal(readFileSync(join(dest, 'full', 'baselines.json'), 'utf8'), 'baselines.json');
  assert.equal(readFileSync(join(dest, 'full', 'a-s0', 'linear.json'), 'utf8'), 'linear.json');
});

test('ship-results: shipping a sweep again replaces its earlier copy (a run gone from the sweep is gone from the copy); other shipped sweeps are kept', () => {
  const src = tmp('moco3-ship-src-');
  const dest = tmp('moco3-ship-dest-');
  const sweep = sweepAt(src, 'again', ['old-s0', 'kept-s0']);
  sweepAt(src, 'other', ['o-s0']);
  const ship = (...names: string[]) => spawnSync(process.execPath, [script, src, dest, ...names], { encoding: 'utf8' });
  assert.equal(ship('again', 'other').status, 0);
  rmSync(join(sweep, 'old-s0'), { recursive: true });
  writeFileSync(join(sweep, 'report.md'), '# again, rerun\n');
  const r = ship('again');
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!existsSync(join(dest, 'again', 'old-s0')), 'the run no longer in the sweep');
  assert.ok(existsSync(join(dest, 'again', 'kept-s0', 'config.yaml')));
  assert.equal(readFileSync(join(dest, 'again', 'report.md'), 'utf8'), '# again, rerun\n');
  assert.ok(existsSync(join(dest, 'other', 'o-s0', 'config.yaml')), 'a sweep not named is left as it was');
});

test('ship-results: with no sweep named, every folder with a report.md is shipped and the others passed over; only the sweeps named when some are', () => {
  const src = tmp('moco3-ship-src-');
  sweepAt(src, 'one', ['r-s0']);
  sweepAt(src, 'two', ['r-s0']);
  mkdirSync(join(src, 'unreported', 'r-s0'), { recursive: true });
  writeFileSync(join(src, 'unreported', 'r-s0', 'config.yaml'), 'seed: 0\n');
  const all = tmp('moco3-ship-dest-');
  const r = spawnSync(process.execPath, [script, src, all], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(all).sort(), ['one', 'two']);
  const some = tmp('moco3-ship-dest-');
  const s = spawnSync(process.execPath, [script, src, some, 'two'], { encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  assert.deepEqual(readdirSync(some), ['two']);
});

test('ship-results without its two folders: the usage line, exit 2, nothing written', () => {
  for (const args of [[], [tmp('moco3-ship-src-')]]) {
    const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr, 'usage: node scripts/ship-results.mjs <results-dir> <dest-dir> [sweep ...]\n');
    assert.equal(r.stdout, '');
  }
});
