/**
 * `moco3 train` stopped by a signal: Ctrl-C (SIGINT), `kill` (SIGTERM) and a closed terminal (SIGHUP) all
 * stop the run after the current step (or batch of the linear probe) with a checkpoint there and status
 * `interrupted`, exit 130; `--resume` then finishes it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { rewindLast } from '../../src/runfolder/checkpoints.ts';
import { readRunState } from '../../src/runfolder/state.ts';
import { evalCheckpoint } from '../../src/eval/offline.ts';
import { withResumePoint } from '../../src/sweep/resume.ts';
import { tinyTrainArgs } from '../helpers/tiny.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-train-signals-');
after(() => rmSync(root, { recursive: true, force: true }));
const cli = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'cli.ts');

// a checkpoint only where a signal stops the run, and at the end
const TINY = tinyTrainArgs('train.checkpoint_every=100', 'optim.epochs=3');

/** `moco3 train`, paused before the 3rd metrics row; there it gets `signal` (`twice`: again 200 ms later) and is let go on. */
function trainWith(signal: NodeJS.Signals | null, out: string, extra: string[] = [], twice = false): Promise<{ code: number | null; stderr: string }> {
  const marker = join(root, `.pause-${process.hrtime.bigint()}`);
  const env = { ...process.env, MOCO3_TEST_PAUSE: signal ? 'metrics:3' : '', MOCO3_TEST_MARKER: marker };
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...TINY, '--out', out, ...extra], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const poll = setInterval(() => {
    if (!signal || !existsSync(marker)) return;
    clearInterval(poll);
    child.kill(signal);
    if (!twice) return writeFileSync(`${marker}.go`, '');
    setTimeout(() => {
      child.kill(signal);
      writeFileSync(`${marker}.go`, '');
    }, 200);
  }, 20);
  return new Promise((resolve) => child.on('close', (code) => {
    clearInterval(poll);
    resolve({ code, stderr });
  }));
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) {
  test(`train: ${signal} checkpoints after the current step, status interrupted, exit 130; --resume finishes the run`, async () => {
    const out = join(root, signal);
    const r = await trainWith(signal, out);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, new RegExp(`${signal}: stopping after this step`));
    const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
    assert.equal(st.status, 'interrupted');
    assert.ok(st.step >= 2 && st.step < st.total_steps, `stopped at step ${st.step} of ${st.total_steps}`);
    const last = JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8'));
    assert.match(JSON.stringify(last), new RegExp(`step-0*${st.step}\\b`), 'checkpointed where it stopped');
    const again = await trainWith(null, out, ['--resume']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(readFileSync(join(out, 'status.json'), 'utf8')).status, 'completed');
  });
}

test('train: a second Ctrl-C quits at once, exit 130, no checkpoint written; its status says interrupted, not running', async () => {
  const out = join(root, 'twice');
  const { code, stderr } = await trainWith('SIGINT', out, [], true);
  assert.equal(code, 130, stderr);
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.equal(st.status, 'interrupted');
  // the checkpoint of step 0 only: the second Ctrl-C came before the stop's own
  assert.equal(JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8')).step, 0);
  assert.equal(readRunState(out).state, 'interrupted');
});

test('train: Ctrl-C in the linear probe stops it between batches: status interrupted at the last step, exit 130; --resume runs the probe', async () => {
  const out = join(root, 'probe');
  const args = [...tinyTrainArgs('eval.linear.enabled=true', 'eval.linear.epochs=300', 'eval.linear.batch_size=16'), '--json', '--out', out];
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let sent = false;
  child.stdout.on('data', (d) => {
    stdout += d;
    if (!sent && /linear probe: epoch 3\//.test(stdout)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 130, stderr);
  const probeEpochs = [...stdout.matchAll(/linear probe: epoch (\d+)\//g)].map((m) => Number(m[1]));
  assert.ok(Math.max(...probeEpochs) < 60, `the probe went on to epoch ${Math.max(...probeEpochs)} of 300 after Ctrl-C`);
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.deepEqual([st.status, st.step], ['interrupted', st.total_steps]);
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.deepEqual([summary.status, summary.linear_top1], ['interrupted', null]);
  const again = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--resume'], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  const done = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.equal(done.status, 'completed');
  assert.equal(typeof done.linear_top1, 'number');
});

test('train --dump-views N, stopped and resumed before step N: the file holds every one of the N steps, as an uninterrupted run writes them', async () => {
  const whole = join(root, 'views-whole');
  assert.equal((await trainWith(null, whole, ['--dump-views', '6'])).code, 0);
  const out = join(root, 'views-resumed');
  const r = await trainWith('SIGINT', out, ['--dump-views', '6']);
  assert.equal(r.code, 130, r.stderr);
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.ok(st.step >= 1 && st.step < 6, `stopped at step ${st.step}`);
  assert.equal((await trainWith(null, out, ['--dump-views', '6', '--resume'])).code, 0);
  const a = readSafetensors(join(whole, 'views.safetensors'));
  const b = readSafetensors(join(out, 'views.safetensors'));
  assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort());
  assert.equal(a.tensors.size, 12);
  for (const [k, t] of a.tensors) assert.deepEqual(b.tensors.get(k)!.data, t.data, k);
  // a finished run resumed from a checkpoint before step N, its file already there: the file is made whole again
  const kept = join(root, 'views-kept');
  const every3 = ['--dump-views', '6', '--set', 'train.checkpoint_every=3'];
  assert.equal((await trainWith(null, kept, every3)).code, 0);
  const again = await trainWith(null, kept, [...every3, '--resume', '--checkpoint', 'step-3']);
  assert.equal(again.code, 0, again.stderr);
  const c = readSafetensors(join(kept, 'views.safetensors'));
  assert.deepEqual([...c.tensors.keys()].sort(), [...a.tensors.keys()].sort());
  for (const [k, t] of a.tensors) assert.deepEqual(c.tensors.get(k)!.data, t.data, k);
});

test('train: Ctrl-C while an image folder is being cached ends at once: exit 130, no lock, no run folder, no partial cache', async () => {
  // 1200 small images: enough that the cache takes a moment to build and says so on stderr (from 1000 images)
  const folder = join(root, 'images');
  const sharp = (await import('sharp')).default;
  for (const [split, n] of [['train', 600], ['val', 2]] as const) {
    for (const cls of ['a', 'b']) {
      mkdirSync(join(folder, split, cls), { recursive: true });
      const px = Buffer.from(new Uint8Array(12 * 12 * 3).map((_, j) => (j * 7 + cls.charCodeAt(0)) & 255));
      const png = await sharp(px, { raw: { width: 12, height: 12, channels: 3 } }).png().toBuffer();
      for (let i = 0; i < n; i++) writeFileSync(join(folder, split, cls, `${i}.png`), png);
    }
  }
  const out = join(root, 'cache-interrupted');
  const args = ['train', ...tinyTrainArgs('data.train_size=64', 'data.test_size=4', 'data.num_classes=2'), '--data', `imagefolder:${folder}`, '--out', out];
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let locked = false;
  let sent = false;
  child.stderr.on('data', (d) => {
    stderr += d;
    if (!sent && /imagefolder: caching .*train/.test(stderr)) {
      sent = true;
      locked = existsSync(join(out, '.lock'));
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.ok(sent, `the cache build was never seen: ${stderr}`);
  assert.ok(locked, 'the run folder is locked while its data loads');
  assert.equal(code, 130, stderr);
  assert.match(stderr, /SIGINT: stopped before training began/);
  assert.equal(existsSync(out), false, 'the new run folder (and its lock) is gone');
  // no partial cache, and not the cache folder the build made either
  assert.equal(existsSync(join(folder, '.moco3-cache')), false);
});

test('a signal that comes while train prepares the run (here: --force moving the previous run aside) is not lost when the run\'s own handlers take over', async () => {
  const out = join(root, 'force-signal');
  assert.equal((await trainWith(null, out)).code, 0);
  const marker = join(root, `.pause-${process.hrtime.bigint()}`);
  // paused (synchronously, as a data load or a cache build holds the process) as the previous run's
  // metrics are moved aside; the signal waits there until the process gets a turn
  const env = { ...process.env, MOCO3_TEST_PAUSE: `before-rename:1:^${out}/metrics\\.jsonl$`, MOCO3_TEST_MARKER: marker };
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...TINY, '--out', out, '--force'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const poll = setInterval(() => {
    if (!existsSync(marker)) return;
    clearInterval(poll);
    child.kill('SIGTERM');
    setTimeout(() => writeFileSync(`${marker}.go`, ''), 200);
  }, 20);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(poll);
  assert.ok(existsSync(marker), `never paused: ${stderr}`);
  // it ran to the end without a word, exit 0, as if never signalled
  assert.equal(code, 130, stderr);
  assert.match(stderr, /SIGTERM: stop/);
  assert.notEqual(JSON.parse(readFileSync(join(out, 'status.json'), 'utf8')).status, 'completed');
});

test('train --resume after a kill between the two renames that replace a checkpoint of the same step: the folder moved aside is put back', async () => {
  const out = join(root, 'aside');
  assert.equal((await trainWith(null, out)).code, 0);
  const ckpts = join(out, 'checkpoints');
  const last = JSON.parse(readFileSync(join(ckpts, 'last.json'), 'utf8')).dir as string;
  // a resume of the finished run rewrote its last checkpoint and was killed after moving the old one aside,
  // before putting the new one (complete, under its temporary name) in its place
  const dead = 2 ** 22 + 4321;
  renameSync(join(ckpts, last), join(ckpts, `.${last}.old.${dead}.tmp`));
  cpSync(join(ckpts, `.${last}.old.${dead}.tmp`), join(ckpts, `.${last}.${dead}.tmp`), { recursive: true });
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  writeFileSync(join(out, 'status.json'), JSON.stringify({ ...st, status: 'running' }));
  const again = await trainWith(null, out, ['--resume']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(readFileSync(join(out, 'status.json'), 'utf8')).status, 'completed');
  assert.ok(existsSync(join(ckpts, last, 'state.json')));
  assert.deepEqual(readdirSync(ckpts).filter((f) => f.endsWith('.tmp')), [], 'no temporary folder left');
});

test('train whose lock was taken over while it was frozen writes nothing more to the run: exit 1, the new holder left alone', async () => {
  const out = join(root, 'taken');
  const marker = join(root, `.pause-${process.hrtime.bigint()}`);
  const env = { ...process.env, MOCO3_TEST_PAUSE: 'metrics:3', MOCO3_TEST_MARKER: marker, MOCO3_LOCK_TIMEOUT: '2' };
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...TINY, '--out', out], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  while (!existsSync(marker)) await new Promise((r) => setTimeout(r, 20));
  // frozen (paused) past the timeout, the run was taken over by another host, which wrote its own status
  const lock = { pid: 4242, host: 'other-host', proc_start: null, since: new Date().toISOString(), sweep: 'train', heartbeat: new Date().toISOString() };
  writeFileSync(join(out, '.lock'), JSON.stringify(lock));
  const status = JSON.stringify({ status: 'running', step: 2, host: 'other-host' });
  writeFileSync(join(out, 'status.json'), status);
  const checkpoints = readdirSync(join(out, 'checkpoints')).sort();
  writeFileSync(`${marker}.go`, '');
  const code = await closed;
  assert.equal(code, 1, stderr);
  assert.match(stderr, /taken over by pid 4242 on other-host .*wrote nothing more to the run/);
  assert.equal(readFileSync(join(out, 'status.json'), 'utf8'), status, 'status.json is the new holder\'s');
  assert.deepEqual(readdirSync(join(out, 'checkpoints')).sort(), checkpoints, 'no checkpoint written');
  assert.equal(existsSync(join(out, 'summary.json')), false);
  assert.deepEqual(JSON.parse(readFileSync(join(out, '.lock'), 'utf8')), lock);
  // the row the paused append was writing is the last one
  const rows = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
  assert.ok(rows.length <= 3, `${rows.length} rows`);
});

test('eval of an interrupted run says which checkpoint it evaluates: the newest, or the one asked for', async () => {
  const out = join(root, 'eval-note');
  const r = await trainWith('SIGINT', out);
  assert.equal(r.code, 130, r.stderr);
  const evalNote = (extra: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', 'knn', out, '--backend', 'cpu', '--json', ...extra], { encoding: 'utf8' });
  const asked = evalNote(['--checkpoint', 'step-0']);
  assert.equal(asked.status, 0, asked.stderr);
  assert.match(asked.stderr, /is interrupted at step \d+; evaluating its checkpoint step-0000000$/m);
  const newest = evalNote([]);
  assert.equal(newest.status, 0, newest.stderr);
  assert.match(newest.stderr, /is interrupted at step \d+; evaluating its newest checkpoint$/m);
  // status.json behind the checkpoints (it is rewritten only every few steps): the step they reach is said
  const last = JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8')).step as number;
  assert.ok(last > 0);
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  writeFileSync(join(out, 'status.json'), JSON.stringify({ ...st, step: 0 }));
  const behind = evalNote([]);
  assert.equal(behind.status, 0, behind.stderr);
  assert.match(behind.stderr, new RegExp(`is interrupted at step ${last}; evaluating its newest checkpoint$`, 'm'));
});

test('train whose output pipe closes (`moco3 train ... | head`): stops as for a closed terminal, checkpointed, status interrupted', async () => {
  const out = join(root, 'epipe');
  // as bin/moco3.js runs it (the process is moco3's own)
  const env = { ...process.env, MOCO3_TEST_ENTRY: '1' };
  // not -q: a line a step
  const args = tinyTrainArgs('train.checkpoint_every=100', 'optim.epochs=10', 'train.log_every=1').filter((a) => a !== '-q');
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', out], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // the reader goes away after the first line, as `head -1` does
  child.stderr.once('data', () => child.stderr.destroy());
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(code, 130);
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.equal(st.status, 'interrupted');
  assert.ok(st.step < st.total_steps, `stopped at step ${st.step} of ${st.total_steps}`);
  const last = JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8'));
  assert.match(JSON.stringify(last), new RegExp(`step-0*${st.step}\\b`), 'checkpointed where it stopped');
  assert.equal(existsSync(join(out, '.lock')), false, 'the lock is released');

  // resumed with its output gone before anything is written: the first line (the run's own config, said
  // while the data loads, before train's stop handler is set up) fails, and the run stops before its next step
  const again = spawn(process.execPath, ['--import', 'tsx', cli, 'train', '--resume', '--out', out], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  again.stderr.destroy();
  assert.equal(await new Promise<number | null>((resolve) => again.on('close', (c) => resolve(c))), 130);
  const st2 = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.deepEqual([st2.status, st2.step], ['interrupted', st.step], 'stopped before training on');
});

test('train on a terminal that goes away (an ssh session dropped): writes fail with EIO, and it stops as for a closed output, checkpointed, exit 130 (no abort at exit)', () => {
  const out = join(root, 'eio');
  const args = tinyTrainArgs('train.checkpoint_every=100', 'optim.epochs=10', 'train.log_every=1').filter((a) => a !== '-q');
  // stdin, stdout and stderr on a pseudo-terminal whose other end closes after the first line. The run is in a
  // session of its own, without the terminal as its controlling one: no SIGHUP, its writes fail with EIO
  const py = [
    'import os, pty, subprocess, sys',
    'master, slave = pty.openpty()',
    'p = subprocess.Popen(sys.argv[1:], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)',
    'os.close(slave)',
    'buf = b""',
    'while b"\\n" not in buf:',
    '    buf += os.read(master, 4096)',
    'os.close(master)',
    'sys.exit(p.wait())',
  ].join('\n');
  const r = spawnSync('python3', ['-c', py, process.execPath, '--import', 'tsx', cli, 'train', ...args, '--out', out], {
    env: { ...process.env, MOCO3_TEST_ENTRY: '1' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 130, r.stderr);
  const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.equal(st.status, 'interrupted');
  assert.ok(st.step < st.total_steps, `stopped at step ${st.step} of ${st.total_steps}`);
  const last = JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8'));
  assert.match(JSON.stringify(last), new RegExp(`step-0*${st.step}\\b`), 'checkpointed where it stopped');
});

test('train stopping (Ctrl-C) whose output then closes (`| tee` ended with it), or given TERM twice (scancel): the checkpoint is still written', async () => {
  const args = tinyTrainArgs('train.checkpoint_every=100', 'optim.epochs=10', 'train.log_every=1').filter((a) => a !== '-q');
  const env = { ...process.env, MOCO3_TEST_ENTRY: '1' };
  for (const how of ['SIGINT, then the output closes', 'SIGTERM twice'] as const) {
    const out = join(root, how.replace(/\W+/g, '-'));
    // paused before its 3rd metrics row: the two events reach it as two, not merged into one pending signal
    const marker = join(root, `.pause-${process.hrtime.bigint()}`);
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--json', '--out', out], {
      env: { ...env, MOCO3_TEST_PAUSE: 'metrics:3', MOCO3_TEST_MARKER: marker },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    child.stdout.on('data', () => {});
    const poll = setInterval(() => {
      if (!existsSync(marker)) return;
      clearInterval(poll);
      if (how === 'SIGTERM twice') child.kill('SIGTERM');
      else child.kill('SIGINT');
      setTimeout(() => {
        if (how === 'SIGTERM twice') child.kill('SIGTERM');
        else child.stdout.destroy();
        setTimeout(() => writeFileSync(`${marker}.go`, ''), 150);
      }, 150);
    }, 20);
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 130, how);
    const st = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
    assert.equal(st.status, 'interrupted', how);
    assert.ok(st.step > 0 && st.step < st.total_steps, `${how}: stopped at step ${st.step} of ${st.total_steps}`);
    const last = JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8'));
    assert.match(JSON.stringify(last), new RegExp(`step-0*${st.step}\\b`), `${how}: checkpointed where it stopped`);
  }
});

test('train --resume --checkpoint step-N, killed before its next checkpoint: resumed again from step N, it ends as a run never stopped', async () => {
  const every3 = ['--set', 'train.checkpoint_every=3'];
  const whole = join(root, 'rewind-whole');
  assert.equal((await trainWith(null, whole, every3)).code, 0);
  const out = join(root, 'rewind');
  cpSync(whole, out, { recursive: true });
  // back to step 3, killed before the metrics row of step 6 (its checkpoint not written)
  const killed = await trainWith('SIGKILL', out, [...every3, '--resume', '--checkpoint', 'step-3']);
  assert.equal(killed.code, null);
  // the run goes on from step 3, not from the newest checkpoint of the steps it left (12), whose metrics were cut
  // the folders of the steps it left, named (their next checkpoint removes them)
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8')), { step: 3, dir: 'step-0000003', left: [6, 9, 12] });
  const st = readRunState(out);
  assert.deepEqual([st.state, st.checkpoint_step], ['interrupted', 3]);
  assert.ok(st.step !== null && st.step < 6, `reached step ${st.step}`);
  // the newer checkpoints of the steps it left are no one's to resume: their steps are not in its metrics
  const ahead = await trainWith(null, out, [...every3, '--resume', '--checkpoint', 'step-12']);
  assert.equal(ahead.code, 2, ahead.stderr);
  assert.match(ahead.stderr, /--checkpoint step-12: step 12 is of steps the run left when it went back to step 3 \(\S*last\.json\); its next checkpoint removes it/);
  // last.json lost as well: the resume starts from the run's own newest checkpoint (3), not from step 12
  const nolast = join(root, 'rewind-nolast');
  cpSync(out, nolast, { recursive: true });
  rmSync(join(nolast, 'checkpoints', 'last.json'));
  assert.equal((await trainWith(null, out, [...every3, '--resume'])).code, 0);
  assert.deepEqual(rows(out), rows(whole));
  assert.equal((await trainWith(null, nolast, [...every3, '--resume'])).code, 0);
  assert.deepEqual(rows(nolast), rows(whole));
});

const rows = (d: string) => readMetrics(join(d, 'metrics.jsonl')).map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !/per_s|seconds/.test(k))));

/**
 * A copy of a finished run as a kill leaves one: its checkpoints after step `keep` gone, last.json naming
 * step `last` (left as it is when not given), its metrics rows after step `row` cut, its status `running`
 * at that step, no summary.json.
 */
function asKilled(from: string, to: string, o: { keep?: number; last?: number; row: number }): void {
  cpSync(from, to, { recursive: true });
  for (const d of readdirSync(join(to, 'checkpoints'))) if (/^step-\d+$/.test(d) && Number(d.slice(5)) > (o.keep ?? Infinity)) rmSync(join(to, 'checkpoints', d), { recursive: true });
  if (o.last !== undefined) writeFileSync(join(to, 'checkpoints', 'last.json'), JSON.stringify({ step: o.last, dir: `step-${String(o.last).padStart(7, '0')}` }));
  const lines = readFileSync(join(to, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l && JSON.parse(l).step <= o.row);
  writeFileSync(join(to, 'metrics.jsonl'), `${lines.join('\n')}\n`);
  const st = JSON.parse(readFileSync(join(to, 'status.json'), 'utf8'));
  writeFileSync(join(to, 'status.json'), JSON.stringify({ ...st, status: 'running', step: o.row }));
  rmSync(join(to, 'summary.json'), { force: true });
}

test('train.log_every above 1, a rewind killed before its next checkpoint: a left checkpoint within log_every steps of a kNN row is refused too, by train and eval', async () => {
  const args = [...TINY, '--set', 'train.log_every=5', '--set', 'train.checkpoint_every=3'];
  const whole = join(root, 'rewind5-whole');
  assert.equal(spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', whole]).status, 0);
  // as `--resume --checkpoint step-9` leaves it when killed before its first metrics row: last.json back at 9,
  // the rows after step 9 cut (the kNN row of step 8 the last), the left checkpoints 12, 15, ... still there
  const out = join(root, 'rewind5');
  asKilled(whole, out, { row: 9 });
  rewindLast(join(out, 'checkpoints'), join(out, 'checkpoints', 'step-0000009'), 9);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'checkpoints', 'last.json'), 'utf8')).left, [12]);
  assert.deepEqual(rows(out).map((r) => r.step), [0, 4, 5, 8]);
  // step 12 is 4 steps past the kNN row of step 8, within log_every: only last.json tells it is left
  const ahead = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', out, '--resume', '--checkpoint', 'step-12'], { encoding: 'utf8' });
  assert.equal(ahead.status, 2, ahead.stderr);
  assert.match(ahead.stderr, /--checkpoint step-12: step 12 is of steps the run left when it went back to step 9/);
  const ev = spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', 'knn', out, '--checkpoint', 'step-12'], { encoding: 'utf8' });
  assert.equal(ev.status, 2, ev.stderr);
  assert.deepEqual(rows(out).map((r) => r.step), [0, 4, 5, 8]);
  // the rows trained again past step 12 before the next checkpoint removed its folder (a kill then): still left
  const passed = join(root, 'rewind5-passed');
  cpSync(out, passed, { recursive: true });
  const again = readFileSync(join(whole, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l && JSON.parse(l).step > 9);
  writeFileSync(join(passed, 'metrics.jsonl'), `${readFileSync(join(passed, 'metrics.jsonl'), 'utf8')}${again.join('\n')}\n`);
  const evp = spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', 'knn', passed, '--checkpoint', 'step-12'], { encoding: 'utf8' });
  assert.equal(evp.status, 2, evp.stderr);
  assert.match(evp.stderr, /step 12 is of steps the run left when it went back to step 9/);
  // last.json lost too, or damaged: the metrics alone tell step 12 is left (they lack the row of step 10)
  const nolast = join(root, 'rewind5-nolast');
  cpSync(out, nolast, { recursive: true });
  rmSync(join(nolast, 'checkpoints', 'last.json'));
  const damaged = join(root, 'rewind5-damaged');
  cpSync(out, damaged, { recursive: true });
  writeFileSync(join(damaged, 'checkpoints', 'last.json'), '{"step": 9, "dir": "step-000');
  const offer = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', damaged, '--resume'], { encoding: 'utf8' });
  assert.equal(offer.status, 2, offer.stderr);
  assert.match(offer.stderr, /last\.json.*--checkpoint step-9\b/);
  for (const dir of [out, nolast]) {
    const resumed = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', dir, '--resume'], { encoding: 'utf8' });
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.deepEqual(rows(dir), rows(whole), dir);
  }
});

test('train.log_every raised on a resume: a later plain --resume takes the newest checkpoint, its rows not lost (no multiple of the new log_every since the checkpoint before it)', async () => {
  const args = (n: number) => [...tinyTrainArgs('train.knn_every=null', 'optim.epochs=4'), '--set', `train.log_every=${n}`, '--set', 'train.checkpoint_every=3'];
  const train = (dir: string, n: number, extra: string[] = []) => spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args(n), '--out', dir, ...extra], { encoding: 'utf8' });
  const whole = join(root, 'raise-whole');
  assert.equal(train(whole, 5).status, 0);
  // killed at step 11, resumed with log_every 8: its checkpoint 12 records log_every 8, and no row after step 5 until 16
  const raised = join(root, 'raise');
  asKilled(whole, raised, { keep: 9, last: 9, row: 11 });
  assert.equal(train(raised, 8, ['--resume']).status, 0);
  const again = join(root, 'raise-again');
  asKilled(raised, again, { keep: 12, last: 12, row: 13 });
  assert.deepEqual(rows(again).map((r) => r.step), [5]);
  const r = train(again, 8, ['--resume']);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /were lost/);
  assert.deepEqual(rows(again), rows(raised));
});

test('a process killed between placing a checkpoint and naming it in last.json: the checkpoint the metrics reach is still the run\'s to evaluate or resume from', async () => {
  const every3 = ['--set', 'train.checkpoint_every=3'];
  const whole = join(root, 'unnamed-whole');
  assert.equal((await trainWith(null, whole, every3)).code, 0);
  // as the kill leaves it: step 6 placed and its rows written, last.json still naming step 3
  const out = join(root, 'unnamed');
  asKilled(whole, out, { keep: 6, last: 3, row: 6 });
  const ev = spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', 'knn', out, '--checkpoint', 'step-6', '--backend', 'cpu'], { encoding: 'utf8' });
  assert.equal(ev.status, 0, ev.stderr);
  assert.match(ev.stdout, /checkpoint step 6\b/);
  const r = await trainWith(null, out, [...every3, '--resume', '--checkpoint', 'step-6']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(rows(out), rows(whole));
});

test('train.log_every above 1: a checkpoint past the last metrics row is still the run\'s own, and eval and --resume take it', async () => {
  const args = [...TINY, '--set', 'train.log_every=5', '--set', 'train.checkpoint_every=3'];
  const whole = join(root, 'log5-whole');
  assert.equal(spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', whole]).status, 0);
  // killed before its 4th metrics row (step 8's): rows of steps 0, 4 and 5 written, checkpoints at 3 and 6
  const out = join(root, 'log5');
  const marker = join(root, `.pause-${process.hrtime.bigint()}`);
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', out], {
    env: { ...process.env, MOCO3_TEST_PAUSE: 'metrics:4', MOCO3_TEST_MARKER: marker },
    stdio: 'ignore',
  });
  const poll = setInterval(() => existsSync(marker) && child.kill('SIGKILL'), 20);
  await new Promise((resolve) => child.on('close', resolve));
  clearInterval(poll);
  assert.deepEqual(readMetrics(join(out, 'metrics.jsonl')).map((r) => r.step), [0, 4, 5]);
  assert.ok(existsSync(join(out, 'checkpoints', 'step-0000006', 'state.json')));
  const ev = spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', 'knn', out, '--checkpoint', 'step-6'], { encoding: 'utf8' });
  assert.equal(ev.status, 0, ev.stderr);
  const resumed = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--out', out, '--resume', '--checkpoint', 'step-6'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.deepEqual(rows(out), rows(whole));
});

test('train --resume after the machine went down with metrics rows unwritten: it resumes from the newest checkpoint the rows reach, says so, and ends as a run never stopped', async () => {
  const every3 = ['--set', 'train.checkpoint_every=3'];
  const whole = join(root, 'lost-whole');
  assert.equal((await trainWith(null, whole, every3)).code, 0);
  // as the machine left it at step 10: checkpoints 0, 3, 6 and 9 on disk (last.json names 9), the rows after
  // step 5 lost and the 6th torn, the status still `running` (no live lock)
  const downAt10 = (dir: string) => {
    cpSync(whole, dir, { recursive: true });
    rmSync(join(dir, 'checkpoints', 'step-0000012'), { recursive: true });
    writeFileSync(join(dir, 'checkpoints', 'last.json'), JSON.stringify({ step: 9, dir: 'step-0000009' }));
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n');
    writeFileSync(join(dir, 'metrics.jsonl'), `${lines.slice(0, 6).join('\n')}\n${lines[6]!.slice(0, 9)}`);
    const st = JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8'));
    writeFileSync(join(dir, 'status.json'), JSON.stringify({ ...st, status: 'running', step: 10 }));
    for (const f of ['summary.json']) rmSync(join(dir, f), { force: true });
  };
  const out = join(root, 'lost');
  downAt10(out);
  assert.deepEqual(rows(out).map((r) => r.step), [0, 1, 2, 3, 4, 5]);
  // `moco3 plan` says where the resume starts; an evaluation reads the newest weights, lost rows or not
  assert.equal(withResumePoint(readRunState(out), out).checkpoint_step, 3);
  assert.equal(basename(evalCheckpoint(out)), 'step-0000009');
  const r = await trainWith(null, out, [...every3, '--resume']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /metrics\.jsonl ends at step 5, before the newest checkpoint \(step 9\): the rows of the steps between were lost; resuming from step 3, the newest checkpoint they reach/);
  assert.deepEqual(rows(out), rows(whole));
  // no complete checkpoint the rows reach: it resumes from the nearest after them and says which rows the curves lack
  const gap = join(root, 'lost-gap');
  downAt10(gap);
  const evald = spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', 'knn', gap, '--backend', 'cpu'], { encoding: 'utf8' });
  assert.equal(evald.status, 0, evald.stderr);
  assert.match(evald.stdout, /checkpoint step 9\b/);
  for (const s of ['0000000', '0000003']) rmSync(join(gap, 'checkpoints', `step-${s}`), { recursive: true });
  const g = await trainWith(null, gap, [...every3, '--resume']);
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stderr, /no complete checkpoint is one they reach: resuming from step 6; the curves have no rows of step 6\n/);
  assert.deepEqual(rows(gap).map((x) => x.step), [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]);
});
