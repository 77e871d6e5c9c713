/** Progress bars: only on a terminal that draws them, narrower on a narrow one, and the terminal given back at exit. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { barSize, barsOn, fitLine, fmtDuration, makeProgress } from '../../src/cli/progress.ts';
import { barDisplay, plainDisplay } from '../../src/cli/sweep.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const stream = (o: { isTTY?: boolean; columns?: number }) => o as unknown as NodeJS.WriteStream;

test('bars on a terminal only, not on a dumb one (TERM=dumb: an editor buffer) nor a file; 8 cells wide under 110 columns', () => {
  const term = process.env.TERM;
  try {
    process.env.TERM = 'xterm-256color';
    assert.equal(barsOn(stream({ isTTY: true })), true);
    assert.equal(barsOn(stream({ isTTY: false })), false);
    assert.equal(barsOn(stream({})), false);
    process.env.TERM = 'dumb';
    assert.equal(barsOn(stream({ isTTY: true })), false);
  } finally {
    if (term === undefined) delete process.env.TERM;
    else process.env.TERM = term;
  }
  assert.equal(barSize(stream({ columns: 80 })), 8);
  assert.equal(barSize(stream({ columns: 109 })), 8);
  assert.equal(barSize(stream({ columns: 110 })), 24);
  assert.equal(barSize(stream({ columns: 200 })), 24);
  assert.equal(barSize(stream({})), 24);
});

test('a process that exits while a bar hides the cursor and line wrapping (a second Ctrl-C) turns both back on', () => {
  const script = "import { barOptions } from './src/cli/progress.ts'; barOptions(process.stdout); process.stdout.write('x'); process.exit(130);";
  const p = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.equal(p.status, 130, p.stderr);
  assert.equal(p.stdout, 'x\u001b[?25h\u001b[?7h');
});

test('plain lines: one every 20th of the run, and one when a minute has passed since the last (the first 20th of a long run is hours)', () => {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const row = { loss: 1, epoch: 0, lr: 1e-3, images_per_s: 10 };
    for (const lineSeconds of [3600, 0]) {
      const p = makeProgress('run', { lineSeconds });
      p.onEvent({ type: 'start', runDir: '/r', totalSteps: 1000, startStep: 0, resumed: false, params: 1, knnTop1: null });
      for (let s = 1; s <= 60; s++) p.onEvent({ type: 'step', step: s, totalSteps: 1000, row });
      p.stop();
    }
  } finally {
    process.stderr.write = write;
  }
  const steps = lines.filter((l) => l.startsWith('run: step '));
  // every 50 steps: step 50 alone in the first run; every step in the second (no floor to wait for)
  assert.equal(steps.length, 1 + 60, steps.join(''));
  assert.match(steps[0]!, /^run: step 50\/1000 /);
});

test('plain lines: the last step has its line, a line\'s img/s is over its own steps, the end says how the run ended; --quiet writes none of them', () => {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
  const drive = (p: ReturnType<typeof makeProgress>) => {
    // 50 steps: a line every 3 (a 20th, rounded), and one at step 50, no multiple of 3
    p.onEvent({ type: 'start', runDir: '/r', totalSteps: 50, startStep: 0, resumed: false, params: 1, knnTop1: null });
    for (let s = 1; s <= 50; s++) p.onEvent({ type: 'step', step: s, totalSteps: 50, row: { loss: 1, epoch: 0, lr: 1e-3, images_per_s: s <= 3 ? 100 : 300 } });
    p.onEvent({ type: 'end', status: 'completed', step: 50 } as never);
    p.stop();
  };
  try {
    drive(makeProgress('run', { lineSeconds: 3600 }));
    assert.equal(lines.length, 1 + 16 + 1 + 1, lines.join(''));
    drive(makeProgress('quiet', { quiet: true, lineSeconds: 0 }));
    makeProgress('quiet', { quiet: true }).log('a message\n');
  } finally {
    process.stderr.write = write;
  }
  const steps = lines.filter((l) => l.startsWith('run: step '));
  assert.deepEqual(steps.map((l) => /^run: step (\d+)\//.exec(l)![1]), [...Array.from({ length: 16 }, (_, i) => String(3 * (i + 1))), '50']);
  assert.deepEqual(steps.slice(0, 2).map((l) => / ([\d.]+) img\/s /.exec(l)![1]), ['100.0', '300.0']);
  assert.equal(lines.at(-2), 'run: completed at step 50\n');
  assert.equal(lines.at(-1), 'a message\n', 'quiet: no line of its own, messages still');
});

test('a kNN measured during the run shows in the lines and the bar that follow', () => {
  const row = { loss: 1, epoch: 0, lr: 1e-3, images_per_s: 10 };
  const drive = (p: ReturnType<typeof makeProgress>) => {
    p.onEvent({ type: 'start', runDir: '/r', totalSteps: 4, startStep: 0, resumed: false, params: 1, knnTop1: null });
    p.onEvent({ type: 'step', step: 1, totalSteps: 4, row });
    p.onEvent({ type: 'knn', step: 1, top1: 55.25, top5: 90, seconds: 0.5 });
    p.onEvent({ type: 'step', step: 2, totalSteps: 4, row });
    p.stop();
  };
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
  try {
    drive(makeProgress('run', { lineSeconds: 0 }));
  } finally {
    process.stderr.write = write;
  }
  assert.deepEqual(lines.filter((l) => l.startsWith('run: step ')).map((l) => / kNN (\S+) /.exec(l)![1]), ['-', '55.3%']);
  assert.ok(lines.includes('run: kNN at step 1: top-1 55.25% (0.5 s)\n'), lines.join(''));
  const text = onTerminal(120, () => drive(makeProgress('train')));
  assert.match(text, /train \|.{24}\| 2\/4 \| loss 1\.000 \| kNN 55\.3% /);
});

test('img/s is images over time, not a mean of the steps\' rates: a plain line\'s over the steps since the last line, the bar\'s over recent steps', () => {
  // steps alternating 100 and 300 img/s (10 and 3.33 ms per image): 150 img/s, where the mean of the rates said 200
  const rows = [100, 300, 100, 300].map((r) => ({ loss: 1, epoch: 0, lr: 1e-3, images_per_s: r }));
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const p = makeProgress('run', { lineSeconds: 3600 });
    p.onEvent({ type: 'start', runDir: '/r', totalSteps: 80, startStep: 0, resumed: false, params: 1, knnTop1: null });
    for (let s = 1; s <= 8; s++) p.onEvent({ type: 'step', step: s, totalSteps: 80, row: rows[(s - 1) % 4]! });
    p.stop();
  } finally {
    process.stderr.write = write;
  }
  // a line every 4 steps: each over its own 4 steps
  const rates = lines.filter((l) => l.startsWith('run: step ')).map((l) => / ([\d.]+) img\/s /.exec(l)![1]);
  assert.deepEqual(rates, ['150.0', '150.0']);
  // the bar: 1 / the moving average of the seconds per image (a steady 250 img/s reads 250)
  const text = onTerminal(120, () => {
    const p = makeProgress('train');
    p.onEvent({ type: 'start', runDir: '/r', totalSteps: 80, startStep: 0, resumed: false, params: 1, knnTop1: null });
    p.onEvent({ type: 'step', step: 1, totalSteps: 80, row: rows[0]! });
    p.onEvent({ type: 'step', step: 2, totalSteps: 80, row: rows[1]! });
    p.stop();
  });
  // 0.9 x 10 ms + 0.1 x 3.33 ms = 9.33 ms per image: 107.1 img/s (a moving average of the rates said 120.0)
  assert.match(text, /\| 107\.1 img\/s/);
  // a sweep's run bar the same way
  const run = 'bs16-lr1.0e-2-adamw-learned-s0-9f6e2288';
  const swept = onTerminal(200, () => {
    const d = barDisplay();
    d.onEvent({ type: 'sweep_start', sweep: 'tiny', dir: '/r/tiny', total: 1, todo: 1, backend: 'native' });
    d.onEvent({ type: 'run_start', run, index: 1, total: 1, previous: 'new', resume_step: null, to_train: true });
    d.onEvent({ type: 'train', run, index: 1, total: 1, event: { type: 'start', runDir: `/r/tiny/${run}`, totalSteps: 80, startStep: 0, resumed: false, params: 1, knnTop1: null } });
    for (const [i, row] of rows.slice(0, 2).entries()) d.onEvent({ type: 'train', run, index: 1, total: 1, event: { type: 'step', step: i + 1, totalSteps: 80, row } });
    d.stop();
  });
  assert.match(swept, /\| 107\.1 img\/s/);
  assert.doesNotMatch(swept, /\| 120\.0 img\/s/);
});

test("a sweep's plain lines: a run that ends interrupted is not through; a failed run is, and counted as failed", () => {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const d = plainDisplay();
    const run = (index: number) => ({ run: `r${index}`, index, total: 3 });
    d.onEvent({ type: 'sweep_start', sweep: 'tiny', dir: '/r/tiny', total: 3, todo: 3, backend: 'native' });
    d.onEvent({ type: 'run_start', ...run(1), previous: 'new', resume_step: null, to_train: true });
    d.onEvent({ type: 'run_end', ...run(1), status: 'completed', summary: {} as never });
    d.onEvent({ type: 'run_start', ...run(2), previous: 'new', resume_step: null, to_train: true });
    d.onEvent({ type: 'run_end', ...run(2), status: 'interrupted', summary: {} as never });
    d.onEvent({ type: 'run_start', ...run(3), previous: 'new', resume_step: null, to_train: true });
    d.onEvent({ type: 'run_failed', ...run(3), error: 'no space left on device' });
    d.stop();
  } finally {
    process.stderr.write = write;
  }
  const sweepLines = lines.join('').split('\n').filter((l) => l.startsWith('sweep: '));
  assert.deepEqual(
    sweepLines.map((l) => l.replace(/, ETA .*/, '')),
    ['sweep: 1/3 runs through', 'sweep: 2/3 runs (1 failed) through'],
  );
  assert.ok(lines.join('').includes('[3/3] r3: failed: no space left on device\n'), lines.join(''));
});

test('on a terminal too, a run says where it goes and that it resumed, above its bar (it said so only in plain lines)', () => {
  const text = onTerminal(120, () => {
    const p = makeProgress('train');
    p.onEvent({ type: 'start', runDir: '/runs/r1', totalSteps: 200, startStep: 38, resumed: true, params: 7, knnTop1: null });
    p.stop();
  });
  assert.ok(text.includes('train: resuming at step 38 of 200, 7 trainable parameters -> /runs/r1\n'), JSON.stringify(text));
});

test('a run resumed at its last step says its training is done, and a new run gives its steps', () => {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const p = makeProgress('train');
    p.onEvent({ type: 'start', runDir: '/runs/r1', totalSteps: 160, startStep: 160, resumed: true, params: 7, knnTop1: null });
    p.onEvent({ type: 'start', runDir: '/runs/r2', totalSteps: 80, startStep: 0, resumed: false, params: 7, knnTop1: null });
    p.stop();
  } finally {
    process.stderr.write = write;
  }
  assert.deepEqual(lines.filter((l) => l.includes('trainable')), [
    'train: resuming at step 160 of 160 (training done), 7 trainable parameters -> /runs/r1\n',
    'train: starting, 80 steps, 7 trainable parameters -> /runs/r2\n',
  ]);
});

test('durations as every progress line writes them: seconds, then minutes, then hours (a 10-hour ETA read 36000s)', () => {
  assert.deepEqual([fmtDuration(42.4), fmtDuration(600), fmtDuration(36000), fmtDuration(NaN), fmtDuration(-1)], ['42s', '10m', '10.0h', '-', '-']);
  // the units change at 90 s and at 90 minutes
  assert.deepEqual([89.4, 90, 4000, 5399, 5400].map(fmtDuration), ['89s', '2m', '67m', '90m', '1.5h']);
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
  // the clock: the first step ends 36.036 s after the start, so the 999 steps left take 10 hours
  const now = performance.now;
  let t = 1000;
  performance.now = () => t;
  try {
    const p = makeProgress('run', { lineSeconds: 0 });
    p.onEvent({ type: 'start', runDir: '/r', totalSteps: 1000, startStep: 0, resumed: false, params: 1, knnTop1: 61.5 });
    t += 36036;
    p.onEvent({ type: 'step', step: 1, totalSteps: 1000, row: { loss: 1, epoch: 0, lr: 1e-3, images_per_s: 10 } });
  } finally {
    process.stderr.write = write;
    performance.now = now;
  }
  // a resumed run's last kNN from its first line; the ETA in the same units as the sweep's
  assert.match(lines.at(-1)!, /^run: step 1\/1000 .* kNN 61\.5% 10\.0 img\/s ETA 10\.0h\n$/);
});

test('a bar line fits the terminal: the parts after the first dropped from the end, the first cut (wrapping is off while it draws)', () => {
  assert.equal(fitLine(['a |bar| 1/2', 'loss 3.1', 'ETA 4s'], 80), 'a |bar| 1/2 | loss 3.1 | ETA 4s');
  assert.equal(fitLine(['a |bar| 1/2', 'loss 3.1', 'ETA 4s'], 24), 'a |bar| 1/2 | loss 3.1');
  assert.equal(fitLine(['a |bar| 1/2', 'loss 3.1', 'ETA 4s'], 13), 'a |bar| 1/2');
  assert.equal(fitLine(['a |bar| 1/2', 'loss 3.1'], 6), 'a |ba');
  // a long part that does not fit whole is shown cut where 8 of its characters fit
  assert.equal(fitLine(['a |bar| 1/2', 'bs16-lr1.0e-2-adamw-s0', 'loss 3.1'], 30), 'a |bar| 1/2 | bs16-lr1.0e-2-…');
  assert.equal(fitLine(['a |bar| 1/2', 'bs16-lr1.0e-2-adamw-s0'], 22), 'a |bar| 1/2');
  // a name of 20 characters is one, and 8 columns are room enough (7 of its characters and the `…`); a part of 19 is none
  assert.equal(fitLine(['a |bar| 1/2', 'bs16-lr1.0e-2-adamw-', 'loss 3.1'], 30), 'a |bar| 1/2 | bs16-lr1.0e-2-…');
  assert.equal(fitLine(['a |bar| 1/2', 'bs16-lr1.0e-2-adamw-s0'], 23), 'a |bar| 1/2 | bs16-lr…');
  assert.equal(fitLine(['a |bar| 1/2', 'bs16-lr1.0e-2-adamw', 'loss 3.1'], 30), 'a |bar| 1/2');
  // a figure is never cut (`loss 3.2…` would read as 3.2)
  assert.equal(fitLine(['a |bar| 1/2', 'loss 3.2250', 'ETA 4s'], 24), 'a |bar| 1/2');
});

/** What a bar writes to a terminal of `columns` while `drive` runs. */
function onTerminal(columns: number, drive: () => void): string {
  const out: string[] = [];
  const err = process.stderr as unknown as { isTTY?: boolean; columns?: number; write: typeof process.stderr.write };
  const saved = { isTTY: err.isTTY, columns: err.columns, write: err.write, term: process.env.TERM };
  err.isTTY = true;
  err.columns = columns;
  process.env.TERM = 'xterm';
  err.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stderr.write;
  try {
    drive();
  } finally {
    Object.assign(err, { isTTY: saved.isTTY, columns: saved.columns, write: saved.write });
    if (saved.term === undefined) delete process.env.TERM;
    else process.env.TERM = saved.term;
  }
  return out.join('');
}

test('the train bar: no ETA before a step is timed, lines within the terminal, a message whole above it (a Ctrl-C\'s was cut and drawn over)', () => {
  const row = { loss: 3.25, epoch: 0, lr: 1e-3, images_per_s: 1234.5 };
  const msg = 'moco3: SIGINT: stopping after this step, or this batch of the linear probe (checkpointing); Ctrl-C again to quit at once\n';
  const text = onTerminal(60, () => {
    const p = makeProgress('train');
    p.onEvent({ type: 'start', runDir: '/r', totalSteps: 240, startStep: 0, resumed: false, params: 1, knnTop1: 52 });
    p.onEvent({ type: 'step', step: 1, totalSteps: 240, row });
    p.log(`\n${msg}`);
    p.onEvent({ type: 'step', step: 2, totalSteps: 240, row });
    p.stop();
  });
  // every frame of the bar (drawn from the line's start, its rest cleared after) fits in 59 columns
  const frames = [...text.matchAll(/\u001b\[1G(train \|[^\u001b]*)\u001b\[0K/g)].map((m) => m[1]!);
  assert.ok(frames.length >= 3, JSON.stringify(text));
  for (const f of frames) assert.ok(f.length <= 59, f);
  assert.match(frames[0]!, /^train \|.{8}\| 0\/240 \| loss - \| kNN 52\.0% \| ETA -/);
  // the message: the bar's line taken back and cleared, the message whole (wrapping on), the bar drawn again below
  const at = text.indexOf(msg);
  assert.ok(at > 0, 'the message is written whole');
  assert.ok(text.slice(0, at).endsWith('\u001b[1A\r\u001b[2K'), JSON.stringify(text.slice(at - 40, at)));
  assert.ok(text.slice(0, at).lastIndexOf('\u001b[?7h') > text.slice(0, at).lastIndexOf('\u001b[?7l'), 'line wrapping is on for the message');
  assert.match(text.slice(at + msg.length), /\u001b\[1Gtrain \|.{8}\| 1\/240 /);
});

test("a sweep's bars: the runs' count, lines within the terminal, the run's name before its figures, a message whole above them", () => {
  const run = 'bs16-lr1.0e-2-adamw-learned-s0-9f6e2288';
  const msg = 'moco3: stopping: checkpointing the current run; `moco3 sweep` again continues (Ctrl-C again quits at once)\n';
  const row = { loss: 3.25, epoch: 0, lr: 1e-3, images_per_s: 1234.5 };
  const text = onTerminal(60, () => {
    const d = barDisplay();
    d.onEvent({ type: 'sweep_start', sweep: 'tiny', dir: '/r/tiny', total: 2, todo: 2, backend: 'native' });
    d.onEvent({ type: 'run_start', run, index: 1, total: 2, previous: 'new', resume_step: null, to_train: true });
    d.onEvent({ type: 'train', run, index: 1, total: 2, event: { type: 'start', runDir: `/r/tiny/${run}`, totalSteps: 4, startStep: 0, resumed: false, params: 1, knnTop1: null } });
    for (let s = 1; s <= 4; s++) d.onEvent({ type: 'train', run, index: 1, total: 2, event: { type: 'step', step: s, totalSteps: 4, row } });
    d.log(`\n${msg}`);
    d.onEvent({ type: 'run_end', run, index: 1, total: 2, status: 'completed', summary: { steps: 4, total_steps: 4, knn_top1: 61.5, knn_step: 4, wall_s: 3 } as never });
    d.onEvent({ type: 'sweep_end', sweep: 'tiny', counts: { completed: 1, new: 1 }, failed: [], interrupted: false, busy: [] });
    d.stop();
  });
  const frames = [...text.matchAll(/(?:\u001b\[1G|\n)((?:sweep tiny|\[1\/2\]) \|[^\u001b\n]*)/g)].map((m) => m[1]!);
  assert.ok(frames.length >= 4, JSON.stringify(text));
  for (const f of frames) assert.ok(f.length <= 59, f);
  assert.ok(frames.some((f) => /^sweep tiny \|.{8}\| 0\/2 runs \| ETA -$/.test(f)), frames.join('\n'));
  // the run's name, cut to the terminal (60 columns), before its figures, which are dropped
  assert.ok(frames.some((f) => f.startsWith(`[1/2] |`) && f.includes(`| 4/4 | ${run.slice(0, 20)}`) && f.endsWith('…')), frames.join('\n'));
  assert.match(frames.at(-1)!, /^sweep tiny \|.{8}\| 1\/2 runs/);
  // the message and the run's line whole, line wrapping on for them
  const at = text.indexOf(msg.replace(/\n/g, '\u001b[K\n'));
  assert.ok(at > 0, 'the message is written whole');
  assert.ok(text.slice(0, at).endsWith('\u001b[?7h'), JSON.stringify(text.slice(at - 20, at)));
  assert.ok(text.includes(`[1/2] ${run}: completed at step 4/4; kNN 61.50%; 3s\u001b[K\n`), JSON.stringify(text));
});
