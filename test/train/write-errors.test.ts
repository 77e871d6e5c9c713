/**
 * Checkpoint writes that fail with other errors than a full disk (test/train/disk-full.test.ts): the
 * checkpoints folder made unwritable (EACCES), a failing disk (EIO) while a file is flushed and while
 * last.json is written. Running as root, a test cannot make a folder unwritable, so the errors are injected
 * (MOCO3_TEST_WRITE_ERROR, test/sweep/fixtures/cli.ts). Each time the previous checkpoint stays intact
 * and last.json names it, the run is failed with the reason in status.json, and the same command resumes
 * the run once the cause is gone, ending as an uninterrupted run ends.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { checkCheckpoint } from '../../src/runfolder/resume.ts';
import { main } from '../../src/cli/main.ts';
import { tinyTrainArgs } from '../helpers/tiny.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-write-errors-');
after(() => rmSync(root, { recursive: true, force: true }));

const repo = join(import.meta.dirname, '..', '..');
const cli = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'cli.ts');
const tinySweep = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'tiny.yaml');
// checkpoints at steps 0, 3, 6, 8
const TINY = tinyTrainArgs();
// the tiny sweep, shortened: run 1 has checkpoints at steps 0, 3, 6, 8
const SWEEP = ['--backend', 'cpu', '-q', '--no-baselines', ...['eval.linear.enabled=false', 'optim.epochs=2', 'optim.warmup_epochs=1'].flatMap((s) => ['--set', s])];

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repo, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

const rows = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const { images_per_s: _ips, ...row } = JSON.parse(l);
    return row;
  });
const bytes = (ckpt: string) => ['model.safetensors', 'optimizer.safetensors'].map((f) => readFileSync(join(ckpt, f)));
const step = (run: string, n: number) => join(run, 'checkpoints', `step-${String(n).padStart(7, '0')}`);

// an uninterrupted run of the same config, trained in this process
const reference = join(root, 'reference');
before(async () => {
  const code = await main(['train', ...TINY, '--out', reference]);
  process.exitCode = 0;
  assert.equal(code, 0);
});

/** After the failed write of step 6: step 3 intact (its tensors as the uninterrupted run's, `ref`), named by last.json; nothing newer; failed with the reason. */
function assertFailedAtSix(out: string, reason: RegExp, ref: string | null): void {
  const status = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.equal(status.status, 'failed');
  assert.match(status.error, reason);
  assert.match(status.error, /could not write the checkpoint of step 6 .*; the checkpoint of step 3 is intact/);
  assert.equal(existsSync(join(out, 'summary.json')), false);
  const ckpts = join(out, 'checkpoints');
  assert.deepEqual(JSON.parse(readFileSync(join(ckpts, 'last.json'), 'utf8')), { step: 3, dir: 'step-0000003' });
  assert.equal(checkCheckpoint(step(out, 3)).step, 3);
  if (ref) assert.deepEqual(bytes(step(out, 3)), bytes(step(ref, 3)), 'the checkpoint of step 3 changed');
  assert.deepEqual(readdirSync(ckpts).filter((d) => d.startsWith('.') || d > 'step-0000003'), [], `left in ${ckpts}`);
}

/** The failure's lines: at most two, no trace, naming the step, the error and what to do. */
function assertOneLine(stderr: string, reason: RegExp): void {
  const lines = stderr.trim().split('\n').filter((l) => !l.startsWith('moco3: backend'));
  assert.ok(lines.length <= 2, stderr);
  assert.match(lines.join('\n'), reason);
  assert.match(lines.join('\n'), /could not write the checkpoint of step 6 .*; the checkpoint of step 3 is intact: once the cause is gone, resume with --resume/);
  assert.doesNotMatch(stderr, /^\s+at /m);
}

// `short`: resumed with `train --out <run> --resume` alone, which takes the run's own config.yaml
const cases: [what: string, inject: string, reason: RegExp, short: boolean][] = [
  ['the checkpoints folder unwritable (EACCES on the temporary folder)', 'EACCES:mkdir:1:/.step-0000006.', /EACCES: permission denied/, true],
  ['a failing disk (EIO flushing optimizer.safetensors)', 'EIO:fsync:1:/.step-0000006.', /EIO: input\/output error/, false],
  ['a failing disk (EIO writing last.json, the folder already in place)', 'EIO:write:3:/checkpoints/.last.json.', /EIO: input\/output error/, false],
];

for (const [what, inject, reason, short] of cases) {
  test(`train: ${what}: step 3 intact and named by last.json, the run failed with the reason; --resume${short ? ' (no other flag)' : ''} then ends as an uninterrupted run`, async () => {
    const out = join(root, inject.split(':').slice(0, 2).join('-'));
    const r = await run(['train', ...TINY, '--out', out], { MOCO3_TEST_WRITE_ERROR: inject });
    assert.equal(r.code, 1, r.stderr);
    assertOneLine(r.stderr, reason);
    assertFailedAtSix(out, reason, reference);
    // the cause gone, the same command with --resume finishes the run as if it had never failed
    const again = await run(short ? ['train', '--out', out, '--resume', '-q'] : ['train', ...TINY, '--out', out, '--resume']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(readFileSync(join(out, 'status.json'), 'utf8')).status, 'completed');
    assert.equal(JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8')).step, 8);
    assert.deepEqual(rows(out), rows(reference));
    assert.deepEqual(bytes(step(out, 8)), bytes(step(reference, 8)));
  });
}

test('train --resume whose config.yaml cannot be written (after the status said running): failed with the reason, exit 1, not left running', async () => {
  const out = join(root, 'resume-config');
  const first = await run(['train', ...TINY, '--out', out], { MOCO3_TEST_WRITE_ERROR: 'EACCES:mkdir:1:/.step-0000006.' });
  assert.equal(first.code, 1, first.stderr);
  const r = await run(['train', ...TINY, '--out', out, '--resume'], { MOCO3_TEST_WRITE_ERROR: 'EACCES:open:1:/.config.yaml.' });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /config\.yaml.*EACCES/);
  const status = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.equal(status.status, 'failed');
  assert.match(status.error, /EACCES/);
  // the cause gone, it resumes and ends as an uninterrupted run
  const again = await run(['train', ...TINY, '--out', out, '--resume']);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(rows(out), rows(reference));
});

test('sweep: EACCES on a checkpoint write fails that run with the reason and the sweep goes on; the same command then resumes it', async () => {
  const results = join(root, 'sweep');
  const args = ['sweep', tinySweep, ...SWEEP.filter((a) => a !== '-q'), '--results', results];
  const r = await run(args, { MOCO3_TEST_WRITE_ERROR: 'EACCES:open:1:/.step-0000006.' });
  assert.equal(r.code, 1, r.stderr);
  const runs = readdirSync(join(results, 'tiny')).filter((d) => d.startsWith('bs')).sort().map((d) => join(results, 'tiny', d));
  assert.equal(runs.length, 2);
  const [first, second] = runs as [string, string];
  assertFailedAtSix(first, /EACCES: permission denied/, null);
  assert.equal(JSON.parse(readFileSync(join(second, 'status.json'), 'utf8')).status, 'completed', 'the sweep went on');
  assert.match(r.stderr, /failed: .*could not write the checkpoint of step 6 \(EACCES: permission denied\).*\(a sweep: run it again\)/);
  // the progress line counts the failed run as through, not done
  assert.match(r.stderr, /sweep: 1\/2 runs \(1 failed\) through, ETA/);
  const again = await run(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(readFileSync(join(first, 'status.json'), 'utf8')).status, 'completed');
  const steps = rows(first).map((row) => row.step as number);
  assert.deepEqual(steps, [0, 1, 2, 3, 4, 5, 6, 7, 8], 'metrics rows once per step, in order');
});

test('sweep: a disk that stays full (not even the failed status can be written) fails that run with its own error and the sweep goes on', async () => {
  const results = join(root, 'sweep-full');
  const args = ['sweep', tinySweep, ...SWEEP.filter((a) => a !== '-q'), '--results', results];
  // the checkpoint of step 6 of the first run (batch 16) fails, then every write into that run's folder
  const r = await run(args, { MOCO3_TEST_WRITE_ERROR: 'ENOSPC:open:1:/.step-0000006.', MOCO3_TEST_WRITE_ERROR_STICKY: '/bs16-' });
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
  assert.match(r.stderr, /bs16-.*: failed: .*could not write the checkpoint of step 6 \(ENOSPC/);
  // the closing lines say the run's error too, not the status it could not write ("interrupted")
  assert.match(r.stderr, /\n  bs16-\S+: failed: \S+\/checkpoints: could not write the checkpoint of step 6 \(ENOSPC/);
  const runs = readdirSync(join(results, 'tiny')).filter((d) => d.startsWith('bs')).sort().map((d) => join(results, 'tiny', d));
  const [first, second] = runs as [string, string];
  assert.equal(JSON.parse(readFileSync(join(second, 'status.json'), 'utf8')).status, 'completed', 'the sweep went on');
  // the first run's status could not be written: it still reads running, of a process now gone
  assert.equal(JSON.parse(readFileSync(join(first, 'status.json'), 'utf8')).status, 'running');
  const again = await run(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /was interrupted; resuming from the checkpoint at step 3/);
  assert.equal(JSON.parse(readFileSync(join(first, 'status.json'), 'utf8')).status, 'completed');
  assert.deepEqual(rows(first).map((row) => row.step as number), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
});

test('train: a file the run cannot write once it has begun (EIO renaming summary.json into place): exit 1, a failed run, not 2 (bad input)', async () => {
  const out = join(root, 'summary-eio');
  const r = await run(['train', ...TINY, '--out', out], { MOCO3_TEST_WRITE_ERROR: 'EIO:rename:1:/.summary.json.' });
  assert.equal(r.code, 1, r.stderr);
  // named as the file being written, not by its temporary name
  assert.match(r.stderr, new RegExp(`${out}/summary\\.json: input/output error \\(a failing disk\\?\\) \\(EIO in rename\\)`));
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.deepEqual([st.status, st.step], ['failed', 8]);
});

test('train: a disk gone read-only mid-run (EROFS on every write, the lock\'s removal too): the run\'s own error, exit 1, not the lock\'s (exit 2)', async () => {
  const out = join(root, 'erofs');
  const r = await run(['train', ...TINY, '--out', out], { MOCO3_TEST_WRITE_ERROR: 'EROFS:open:1:/.step-0000006.', MOCO3_TEST_WRITE_ERROR_STICKY: out });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /could not write the checkpoint of step 6 \(EROFS/);
  assert.doesNotMatch(r.stderr, /\.lock/);
  // the lock it could not remove is stale (its process gone): once the disk is back, the same command resumes
  const again = await run(['train', ...TINY, '--out', out, '--resume']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(readFileSync(join(out, 'status.json'), 'utf8')).status, 'completed');
});

test('train: a file that cannot be opened for writing (EIO opening status.json\'s temporary) is named as the file being written, not by its temporary name', async () => {
  const out = join(root, 'status-open');
  const r = await run(['train', ...TINY, '--out', out], { MOCO3_TEST_WRITE_ERROR: 'EIO:open:3:/.status.json.' });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`${out}/status\\.json: input/output error \\(a failing disk\\?\\) \\(EIO in open\\)`));
  assert.doesNotMatch(r.stderr, /\.status\.json\..*\.tmp/);
});
