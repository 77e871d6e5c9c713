/**
 * What `moco3 train` does with the folder it is given: a folder another process trains is refused (its
 * lock), `--force` moves a previous run aside only once the new run's input has checked out, files that
 * are not a run's are never overwritten or moved, and a diverged run is a result that `--resume` leaves be.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tinyTrainArgs } from '../helpers/tiny.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-train-folder-');
const cli = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'cli.ts');
const TINY = tinyTrainArgs();

function train(args: string[]): { code: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args], { encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}
const status = (dir: string) => JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')) as { status: string; step: number };
/** Until the paused process has written its marker (a minute at most). */
async function paused(marker: string): Promise<void> {
  for (const t0 = Date.now(); !existsSync(marker); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() - t0 > 60_000) throw new Error(`the process never paused (no ${marker})`);
  }
}
const asides = (name: string) => readdirSync(root).filter((e) => e.startsWith(`${name}.old-`));

test('a folder another train is training is refused, with --resume and --force too; that run is untouched', async () => {
  const out = join(root, 'busy');
  const marker = join(root, '.pause-busy');
  const env = { ...process.env, MOCO3_TEST_PAUSE: 'metrics:3', MOCO3_TEST_MARKER: marker };
  const first = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...TINY, '--out', out], { env, stdio: 'ignore' });
  const done = new Promise<number | null>((r) => first.on('close', r));
  try {
    await paused(marker);
    for (const extra of [[], ['--resume'], ['--force']]) {
      const r = train([...TINY, '--out', out, ...extra]);
      assert.equal(r.code, 2, `${extra}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^moco3: ${out}: is being trained by pid ${first.pid} on .*; wait for it to end, or stop it first\\n$`));
    }
    assert.deepEqual(asides('busy'), []);
  } finally {
    writeFileSync(`${marker}.go`, '');
  }
  assert.equal(await done, 0);
  assert.equal(status(out).status, 'completed');
  const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step as number);
  assert.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b), 'one writer: each step once, in order');
  assert.ok(!existsSync(join(out, '.lock')), 'the lock is gone with its process');
});

test('--force with input that does not check out moves nothing; with good input it moves the run aside (a trailing slash too)', () => {
  const out = join(root, 'forced');
  assert.equal(train([...TINY, '--out', out]).code, 0);
  const bad = train([...TINY, '--out', out, '--force', '--set', 'optim.batch_size=128']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^moco3: --set optim\.batch_size=128: data\.train_size: \d+ images cannot fill one batch of optim\.batch_size 128/);
  assert.deepEqual(asides('forced'), []);
  assert.equal(status(out).status, 'completed');
  const good = train([...TINY, '--out', `${out}/`, '--force']);
  assert.equal(good.code, 0, good.stderr);
  assert.equal(asides('forced').length, 1);
  assert.match(good.stderr, new RegExp(`moved the previous run to ${root}/forced\\.old-\\d{8}T\\d{6}\\n`));
  assert.equal(status(out).status, 'completed');
});

test('files that are not a run\'s are never overwritten or moved; a run\'s files without a status need --force', () => {
  const mine = join(root, 'project');
  mkdirSync(mine);
  writeFileSync(join(mine, 'notes.txt'), 'mine');
  writeFileSync(join(mine, 'config.yaml'), 'mine: 1\n');
  for (const extra of [[], ['--force'], ['--resume']]) {
    const r = train([...TINY, '--out', mine, ...extra]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^moco3: ${mine}: holds files that are not a moco3 run's \\(notes\\.txt\\); give a new or empty folder as --out\\n$`));
  }
  assert.deepEqual(readdirSync(mine).sort(), ['config.yaml', 'notes.txt']);
  assert.equal(readFileSync(join(mine, 'config.yaml'), 'utf8'), 'mine: 1\n');
  assert.deepEqual(asides('project'), []);
  // a run's own files and no status: a run that stopped before its first status; only --force replaces them
  const partial = join(root, 'partial');
  mkdirSync(partial);
  writeFileSync(join(partial, 'config.yaml'), 'x: 1\n');
  writeFileSync(join(partial, 'metrics.jsonl'), '');
  const r = train([...TINY, '--out', partial]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /holds a previous run that had not begun training \(no status, no checkpoint\); pass --resume to continue it or --force to start over/);
  assert.equal(train([...TINY, '--out', partial, '--force']).code, 0);
  assert.equal(asides('partial').length, 1);
});

for (const [kind, extraArgs] of [
  ['diverged', ['--set', 'optim.base_lr=1e12', '--set', 'optim.warmup_epochs=0']],
  ['completed', []],
] as const) {
  test(`a ${kind} run is a result: train again, with or without --resume, leaves it as it is (its meta.json and checkpoints too)`, () => {
    const out = join(root, kind);
    const args = [...TINY, '--out', out, ...extraArgs];
    const first = train(args);
    assert.equal(first.code, 0, first.stderr);
    // diverged before its first kNN after step 0: no best is said, not "undefined"
    if (kind === 'diverged') assert.match(first.stdout, /kNN top-1 [\d.]+% at step 0 \(best - \(no kNN after step 0\), chance/);
    const st = status(out);
    assert.equal(st.status, kind);
    const files = () =>
      ['summary.json', 'metrics.jsonl', 'meta.json', 'status.json', 'checkpoints/last.json'].map((f) => readFileSync(join(out, f), 'utf8')).join('\n---\n') +
      readdirSync(join(out, 'checkpoints')).join(',');
    const before = files();
    for (const extra of [[], ['--resume']]) {
      const r = train([...args, ...extra]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, `moco3: ${out} is already ${kind} at step ${st.step} (use --force to train it again)\n`);
    }
    assert.equal(files(), before);
    // nothing of it is read to say so: a damaged metrics line does not turn the answer into an error
    const metrics = join(out, 'metrics.jsonl');
    const rows = readFileSync(metrics, 'utf8');
    writeFileSync(metrics, rows.replace(/^[^\n]*\n/, 'garbage\n'));
    const damaged = train([...args, '--resume']);
    assert.equal(damaged.stderr, `moco3: ${out} is already ${kind} at step ${st.step} (use --force to train it again)\n`);
    writeFileSync(metrics, rows);
  });
}

test('--force holds the lock while it moves the previous run aside: a resume started meanwhile is refused; files not a run\'s stop --force', async () => {
  const out = join(root, 'race');
  assert.equal(train([...TINY, '--out', out]).code, 0);
  const marker = join(root, '.pause-race');
  // A pauses just before it moves the old run's status.json aside
  const env = { ...process.env, MOCO3_TEST_PAUSE: `before-rename:1:${out}/status\\.json$`, MOCO3_TEST_MARKER: marker };
  const a = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...TINY, '--out', out, '--force'], { env, stdio: 'ignore' });
  const done = new Promise<number | null>((r) => a.on('close', r));
  try {
    await paused(marker);
    const b = train([...TINY, '--out', out, '--resume']);
    assert.equal(b.code, 2, b.stderr);
    assert.match(b.stderr, new RegExp(`is being trained by pid ${a.pid} `));
  } finally {
    writeFileSync(`${marker}.go`, '');
  }
  assert.equal(await done, 0);
  assert.equal(asides('race').length, 1);
  assert.equal(status(out).status, 'completed');
  // an earlier checkpoint's evaluation is the run's own: --force moves it aside with the run; so is the
  // damaged meta.json a resume kept
  writeFileSync(join(out, 'linear-step-0.json'), '{}');
  writeFileSync(join(out, 'meta.old-20261206T000000.json'), '{"broken');
  assert.equal(train([...TINY, '--out', out, '--force']).code, 0);
  assert.equal(asides('race').length, 2);
  // a run folder the user put a file into: resumed as it is, but --force would carry the file away
  writeFileSync(join(out, 'notes.txt'), 'mine');
  const r = train([...TINY, '--out', out, '--force']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /holds files that are not a moco3 run's \(notes\.txt\), which --force would move aside with the run; move them out first/);
  assert.equal(asides('race').length, 2);
});

test('a --force killed while it moves the previous run aside leaves it split; the next train puts it back whole', async () => {
  const out = join(root, 'split');
  assert.equal(train([...TINY, '--out', out]).code, 0);
  const listing = (d: string) => readdirSync(d).filter((e) => !e.startsWith('.')).sort();
  const before = new Map(listing(out).filter((e) => e !== 'checkpoints').map((e) => [e, readFileSync(join(out, e))]));
  const ckpts = readdirSync(join(out, 'checkpoints')).sort();
  const marker = join(root, '.pause-split');
  // killed before the third of the run's own files is moved (the note's rename starts with a dot)
  const env = { ...process.env, MOCO3_TEST_PAUSE: `before-rename:3:^${out}/[^./][^/]*$`, MOCO3_TEST_MARKER: marker };
  const a = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...TINY, '--out', out, '--force'], { env, stdio: 'ignore' });
  const done = new Promise<number | null>((r) => a.on('close', r));
  await paused(marker);
  a.kill('SIGKILL');
  await done;
  const [aside, ...more] = asides('split');
  assert.equal(more.length, 0);
  assert.equal(listing(join(root, aside!)).length, 2, 'two files moved before the kill');
  assert.ok(existsSync(join(out, '.aside.json')));
  // a --dry-run (which puts nothing back) reads the note as the run's own, not as a file of the user's
  const dry = train([...TINY, '--out', out, '--dry-run', '--force']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.doesNotMatch(dry.stderr, /not a moco3 run's/);
  // the next train finds the run whole again: a completed run, left as it is
  const r = train([...TINY, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`^moco3: ${out}: put back the files of the previous run that an interrupted \`train --force\` had begun to move aside\\nmoco3: ${out} is already completed`));
  assert.deepEqual(asides('split'), []);
  assert.deepEqual(listing(out), [...before.keys(), 'checkpoints'].sort());
  for (const [e, bytes] of before) assert.ok(readFileSync(join(out, e)).equals(bytes), e);
  assert.deepEqual(readdirSync(join(out, 'checkpoints')).sort(), ckpts);
  assert.ok(!existsSync(join(out, '.aside.json')));
});

test('--resume of a run with no checkpoint left: trains it again from step 0 only as the config it was, and says so; without its config.yaml it is refused', () => {
  const out = join(root, 'no-checkpoints');
  assert.equal(train([...TINY, '--out', out]).code, 0);
  // as after a kill with its checkpoints lost (deleted by hand, a disk cleaned up)
  rmSync(join(out, 'checkpoints'), { recursive: true });
  writeFileSync(join(out, 'status.json'), JSON.stringify({ ...status(out), status: 'interrupted' }));
  const files = () => Object.fromEntries(readdirSync(out).map((e) => [e, statSync(join(out, e)).isDirectory() ? '(folder)' : readFileSync(join(out, e), 'utf8')]));
  const before = files();
  const other = train([...TINY, '--out', out, '--resume', '--set', 'optim.base_lr=0.5']);
  assert.equal(other.code, 2, other.stderr);
  assert.match(other.stderr, /^moco3: .*no-checkpoints: was trained with another config: optim\.base_lr 0\.0015 -> 0\.5; to resume it, start again with --force/);
  assert.deepEqual(files(), before, 'nothing touched');
  const again = train(['--out', out, '--resume', '-q']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /no-checkpoints: no checkpoint to resume from; training it again from step 0 \(its metrics start over\)/);
  assert.equal(status(out).status, 'completed');
  // its config.yaml gone as well: the defaults are not what it trained
  rmSync(join(out, 'config.yaml'));
  const bare = train(['--out', out, '--resume', '-q']);
  assert.equal(bare.code, 2, bare.stderr);
  assert.equal(bare.stderr, `moco3: --resume --out ${out}: the run's config.yaml is missing: give its config (--config FILE, or --preset and --set) to resume it\n`);
  // no run at all (a mistyped folder): refused, not the paper's full-size run started there; nothing made
  const typo = join(root, 'no-such-run');
  for (const args of [['--out', typo, '--resume', '-q'], ['--out', typo, '--resume', '--dry-run']]) {
    const r = train(args);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `moco3: --resume --out ${typo}: no run there to resume (no config.yaml); to start one, give its config: --config FILE, or --preset and --set\n`);
    assert.equal(r.stdout, '');
    assert.equal(existsSync(typo), false);
  }
  // no run there, but its config given: a new run trains there from step 0, and the line says so
  const fresh = join(root, 'fresh-resume');
  const first = train([...TINY, '--out', fresh, '--resume', '-q']);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /^moco3: \S+fresh-resume: no run there to resume; training a new one from step 0$/m);
  assert.equal(status(fresh).status, 'completed');
  // flags that contradict each other, or name no folder, are said as such before the folder is looked at
  assert.equal(train(['--out', typo, '--resume', '--force']).stderr, 'moco3: --resume continues a run and --force starts it again: give one of them\n');
  assert.equal(train(['--out', ' ', '--resume']).stderr, "moco3: --out ' ': expected a folder path\n");
});

test("train on a folder whose run's process died says it is interrupted, with its last checkpoint, as plan does (not 'running')", () => {
  const out = join(tempDir('moco3-train-killed-'), 'run');
  assert.equal(train([...TINY, '--out', out]).code, 0);
  // as a kill -9 leaves it: status.json still says running, of a process that is gone
  const st = join(out, 'status.json');
  writeFileSync(st, JSON.stringify({ ...JSON.parse(readFileSync(st, 'utf8')), status: 'running', step: 7, pid: 2 ** 22 + 12345 }));
  const r = train([...TINY, '--out', out]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /holds an interrupted run, its last checkpoint at step 8; pass --resume to continue it or --force to start over\n$/);
});

test('a completed run whose summary.json was removed (as a damaged one\'s line says) is interrupted to train as to plan, and --resume writes it again', () => {
  const out = join(tempDir('moco3-train-nosummary-'), 'run');
  assert.equal(train([...TINY, '--out', out]).code, 0);
  const before = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  writeFileSync(join(out, 'summary.json'), '{"status": "compl');
  const damaged = train([...TINY, '--out', out, '--resume']);
  assert.equal(damaged.code, 2);
  assert.match(damaged.stderr, /summary\.json: .*remove it \(`moco3 train --resume` or the sweep writes it again\)/);
  rmSync(join(out, 'summary.json'));
  const plain = train([...TINY, '--out', out]);
  assert.equal(plain.code, 2, plain.stderr);
  assert.match(plain.stderr, /holds an interrupted run, its last checkpoint at step 8; pass --resume/);
  assert.ok(!existsSync(join(out, 'summary.json')));
  const resumed = train([...TINY, '--out', out, '--resume']);
  assert.equal(resumed.code, 0, resumed.stderr);
  const after = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  for (const k of ['status', 'steps', 'final_loss', 'knn_top1', 'best_knn_top1', 'linear_top1', 'config_hash']) assert.deepEqual(after[k], before[k], k);
  assert.equal(status(out).status, 'completed');
});

test('a resume of a run whose metrics are gzipped keeps its earlier rows; a metrics file that is a folder is one line naming it', () => {
  const out = join(tempDir('moco3-train-gz-'), 'run');
  assert.equal(train([...TINY, '--out', out]).code, 0);
  const rows = () => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step as number);
  const steps = rows();
  spawnSync('gzip', [join(out, 'metrics.jsonl')]);
  assert.ok(!existsSync(join(out, 'metrics.jsonl')) && existsSync(join(out, 'metrics.jsonl.gz')));
  const r = train([...TINY, '--out', out, '--resume', '--checkpoint', 'step-3']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(rows(), steps, 'rows 0-3 from the .gz, then the steps trained again');
  // a folder where the metrics file goes
  rmSync(join(out, 'metrics.jsonl'));
  rmSync(join(out, 'metrics.jsonl.gz'));
  mkdirSync(join(out, 'metrics.jsonl'));
  const d = train([...TINY, '--out', out, '--resume', '--checkpoint', 'step-3']);
  assert.equal(d.code, 2, d.stderr);
  assert.match(d.stderr, /^moco3: \S+metrics\.jsonl: is a folder, not a file\n$/);
});

test('a resume on an image folder that gained files since refuses, naming the steps an epoch it had and has (the schedule changed mid-run)', async () => {
  const sharp = (await import('sharp')).default;
  const folder = join(root, 'grows');
  const put = async (split: string, from: number, n: number) => {
    for (const cls of ['a', 'b']) {
      mkdirSync(join(folder, split, cls), { recursive: true });
      const px = Buffer.from(new Uint8Array(8 * 8 * 3).map((_, j) => (j * 13 + cls.charCodeAt(0) * 7) & 255));
      for (let i = from; i < from + n; i++) await sharp(px, { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(join(folder, split, cls, `${i}.png`));
    }
  };
  await put('train', 0, 16);
  await put('val', 0, 2);
  const out = join(root, 'grows-run');
  // 32 images at batch 16: 2 steps an epoch, 4 in all, checkpoints at 3 and 4
  const args = [...tinyTrainArgs('data.train_size=null', 'data.test_size=null', 'data.num_classes=2', 'train.knn_every=null', 'train.knn_every_epochs=null'), '--data', `imagefolder:${folder}`, '--out', out];
  const first = train(args);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(status(out).step, 4);
  // one more image a class: the same steps an epoch (34 / 16), but not the data the run was trained on
  await put('train', 16, 1);
  const again = train([...args, '--resume', '--checkpoint', 'step-3']);
  assert.equal(again.code, 2, again.stderr);
  assert.match(
    again.stderr,
    /\nmoco3: \S+grows-run: its checkpoint of step 3 was trained on a train split of 32 images, which now holds 34: to resume it, give it the data it was trained on, or train it anew \(`moco3 train --force`; in a sweep, move its folder out of the sweep's\)\n$/,
  );
  assert.equal(status(out).step, 4, 'the run is left as it was');
  // a checkpoint of before the count was kept: told by its steps an epoch
  const state = join(out, 'checkpoints', 'step-0000003', 'state.json');
  const { train_images: _n, ...older } = JSON.parse(readFileSync(state, 'utf8'));
  writeFileSync(state, JSON.stringify(older));
  await put('train', 17, 15);
  const old = train([...args, '--resume', '--checkpoint', 'step-3']);
  assert.equal(old.code, 2, old.stderr);
  assert.match(old.stderr, /\nmoco3: \S+grows-run: its checkpoint of step 3 was trained at 2 steps an epoch, and the data now gives 4 \(batch 16\): the train split changed since; to resume it, give it the data/);
});
