import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { parseSweep } from '../../src/sweep/file.ts';
import { planSweep, type SweepPlan } from '../../src/sweep/plan.ts';
import { earlierRuns, plannedPresetNote, writeResolvedSweep } from '../../src/sweep/resolved.ts';
import { FILE_LOCK_STALE_MS, hostTag, withFileLock } from '../../src/engine/files.ts';
import { missingRuns } from '../../src/report/index.ts';
import { readSweep } from '../../src/report/results.ts';
import { viewSweep } from '../../src/report/sweep.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-sweep-resolved-');
after(() => rmSync(root, { recursive: true, force: true }));

const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');

function tinyPlan(results: string, seeds: number[], sets: string[] = [], preset?: string): SweepPlan {
  const doc = YAML.parse(readFileSync(tinyFile, 'utf8'));
  // a learned patch projection: a batch-size sweep of AdamW is then Fig. 1, whose paper values the report shows
  return planSweep(parseSweep(doc, 'tiny.yaml'), { results, seeds, sets: ['model.patch_proj=learned', ...sets], ...(preset ? { preset } : {}) });
}

/** A run folder as the report reads one: its config.yaml alone (a run not started yet has none). */
function fakeRun(plan: SweepPlan, i: number) {
  const r = plan.runs[i]!;
  mkdirSync(r.dir, { recursive: true });
  writeFileSync(join(r.dir, 'config.yaml'), YAML.stringify(r.config));
}

const read = (plan: SweepPlan) => YAML.parse(readFileSync(join(plan.dir, 'sweep.yaml'), 'utf8'));
const ids = (list: { id: string }[] | undefined) => (list ?? []).map((r) => r.id);

test("sweep.yaml keeps what earlier invocations planned (other seeds, another --set): the report's Missing line and paper values cover the whole folder", () => {
  const results = mkdtempSync(join(root, 'r-'));
  const s0 = tinyPlan(results, [0]);
  const s1 = tinyPlan(results, [1]);
  assert.equal(s0.dir, s1.dir, 'one sweep folder');
  writeResolvedSweep(s0);
  assert.equal(read(s0).earlier_runs, undefined, 'a first invocation has nothing earlier');

  // seeds 0 planned first, then seed 1: the latest plan is `runs` (its indices are the Slurm tasks'), seed 0's runs stay beside it
  writeResolvedSweep(s1);
  let doc = read(s1);
  assert.deepEqual(ids(doc.runs), s1.runs.map((r) => r.id));
  assert.deepEqual(doc.runs.map((r: { index: number }) => r.index), [1, 2]);
  assert.deepEqual(ids(doc.earlier_runs), s0.runs.map((r) => r.id));
  assert.ok(doc.earlier_runs.every((r: Record<string, unknown>) => !('index' in r)), "an earlier plan's indices are not this plan's");
  assert.equal(doc.earlier_runs[1].paper['optim.batch_size'], 1024);
  assert.equal(doc.earlier_runs[0].config.seed, 0);

  // the same invocation again: nothing rewritten, nothing doubled
  const text = readFileSync(join(s1.dir, 'sweep.yaml'), 'utf8');
  writeResolvedSweep(s1);
  assert.equal(readFileSync(join(s1.dir, 'sweep.yaml'), 'utf8'), text);

  // a third plan, another --set: the first two both stay, once each
  const lr = tinyPlan(results, [0], ['optim.base_lr=0.02']);
  writeResolvedSweep(lr);
  doc = read(lr);
  assert.deepEqual(ids(doc.runs), lr.runs.map((r) => r.id));
  assert.deepEqual(new Set(ids(doc.earlier_runs)), new Set([...s0.runs, ...s1.runs].map((r) => r.id)));
  assert.equal(doc.earlier_runs.length, 4);
  // back to seed 0: it leaves earlier_runs for runs
  writeResolvedSweep(s0);
  doc = read(s0);
  assert.deepEqual(ids(doc.runs), s0.runs.map((r) => r.id));
  assert.deepEqual(new Set(ids(doc.earlier_runs)), new Set([...s1.runs, ...lr.runs].map((r) => r.id)));

  // the report: run folders for seed 0's first run and seed 1's two; the rest were planned and never started
  fakeRun(s0, 0);
  fakeRun(s1, 0);
  fakeRun(s1, 1);
  const sweep = readSweep(s0.dir);
  assert.deepEqual(new Set(missingRuns(sweep)), new Set([s0.runs[1]!.id, ...lr.runs.map((r) => r.id)]));
  assert.equal(missingRuns(sweep).length, 3);
  // paper values come from the record of whichever invocation planned the run
  const view = viewSweep(sweep);
  assert.deepEqual(view.columns.map((c) => c.paperValues?.['optim.batch_size']), [512, 1024]);
});

test('a damaged sweep.yaml is written anew from the plan (the run folders hold what ran), and the sweep says so', () => {
  const results = mkdtempSync(join(root, 'r-'));
  const s0 = tinyPlan(results, [0]);
  mkdirSync(s0.dir, { recursive: true });
  writeFileSync(join(s0.dir, 'sweep.yaml'), 'runs: [\n');
  const notes = writeResolvedSweep(s0);
  assert.deepEqual(notes.length, 1);
  assert.match(notes[0]!, /sweep\.yaml could not be read \(not YAML\); written anew from this plan: what earlier invocations planned is no longer listed \(their run folders are kept\)$/);
  const doc = read(s0);
  assert.deepEqual(ids(doc.runs), s0.runs.map((r) => r.id));
  assert.equal(doc.earlier_runs, undefined);
});

test('a sweep into a folder that holds runs of another preset says so (the report would mix the two); earlier runs keep their preset', () => {
  const results = mkdtempSync(join(root, 'r-'));
  const smoke = tinyPlan(results, [0]);
  assert.deepEqual(writeResolvedSweep(smoke), []);
  assert.deepEqual(writeResolvedSweep(tinyPlan(results, [1])), [], 'other seeds of the same preset: nothing to say');
  const doc = YAML.parse(readFileSync(join(tinyPlan(results, [0], ['model.patch_size=4'], 'cpu').dir, 'sweep.yaml'), 'utf8'));
  assert.equal(doc.preset, 'smoke');
  const cpu = tinyPlan(results, [0], ['model.patch_size=4'], 'cpu');
  assert.equal(cpu.dir, smoke.dir);
  // a dry run says it too, reading only
  const before = readFileSync(join(cpu.dir, 'sweep.yaml'), 'utf8');
  assert.match(plannedPresetNote(cpu) ?? '', /was planned under preset smoke as well; the runs of preset cpu go beside theirs/);
  assert.equal(readFileSync(join(cpu.dir, 'sweep.yaml'), 'utf8'), before);
  assert.equal(plannedPresetNote(tinyPlan(results, [2])), null, 'the same preset: nothing to say');
  const notes = writeResolvedSweep(cpu);
  assert.equal(notes.length, 1);
  assert.match(notes[0]!, /was planned under preset smoke as well; the runs of preset cpu go beside theirs and the report's columns will mix the two .*give --results another folder/);
  const after = read(cpu);
  assert.equal(after.preset, 'cpu');
  assert.deepEqual([...new Set(after.earlier_runs.map((r: { preset: string }) => r.preset))], ['smoke']);
  // back to smoke: the cpu runs are now the other preset's
  assert.match(writeResolvedSweep(smoke)[0]!, /under preset cpu as well; the runs of preset smoke/);
});

test('two invocations planning into one folder at the same moment (agents on two hosts) both stay listed: sweep.yaml is merged under a lock', async () => {
  const results = mkdtempSync(join(root, 'r-'));
  const s0 = tinyPlan(results, [0]);
  const marker = join(results, 'child-started');
  // the other invocation, in its own process: seed 1 planned into the same folder
  const child = join(results, 'other.ts');
  writeFileSync(
    child,
    [
      `import { readFileSync, writeFileSync } from 'node:fs';`,
      `import YAML from ${JSON.stringify(import.meta.resolve('yaml'))};`,
      `import { parseSweep } from ${JSON.stringify(join(import.meta.dirname, '../../src/sweep/file.ts'))};`,
      `import { planSweep } from ${JSON.stringify(join(import.meta.dirname, '../../src/sweep/plan.ts'))};`,
      `import { writeResolvedSweep } from ${JSON.stringify(join(import.meta.dirname, '../../src/sweep/resolved.ts'))};`,
      `const doc = YAML.parse(readFileSync(${JSON.stringify(tinyFile)}, 'utf8'));`,
      `const plan = planSweep(parseSweep(doc, 'tiny.yaml'), { results: ${JSON.stringify(results)}, seeds: [1], sets: ['model.patch_proj=learned'] });`,
      `writeFileSync(${JSON.stringify(marker)}, '');`,
      `writeResolvedSweep(plan);`,
    ].join('\n'),
  );
  let exited: Promise<number | null> = Promise.resolve(null);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  // seed 0 has read sweep.yaml (not there yet) when the other starts, and writes only once the other has
  // had time to write its own: without a lock it would then drop seed 1's runs
  writeResolvedSweep(s0, () => {
    const p = spawn(process.execPath, ['--import', 'tsx', child], { cwd: join(import.meta.dirname, '..', '..'), stdio: 'inherit' });
    exited = new Promise((res) => p.on('exit', res));
    for (let i = 0; i < 1500 && !existsSync(marker); i++) Atomics.wait(pause, 0, 0, 20);
    assert.ok(existsSync(marker), 'the other invocation started');
    Atomics.wait(pause, 0, 0, 1500);
  });
  assert.equal(await exited, 0);
  const doc = read(s0);
  const s1 = tinyPlan(results, [1]);
  assert.deepEqual(ids(doc.runs), s1.runs.map((r) => r.id), 'the other wrote last: its plan is the latest');
  assert.deepEqual(ids(doc.earlier_runs), s0.runs.map((r) => r.id), "seed 0's runs stay listed");
  assert.equal(existsSync(join(s0.dir, '.sweep.yaml.lock')), false, 'the lock is gone');
});

test("withFileLock takes over a dead process's lock at once and a live one's only once it is untouched for FILE_LOCK_STALE_MS", () => {
  const dir = mkdtempSync(join(root, 'lock-'));
  const lock = join(dir, '.f.yaml.lock');
  // this host, a pid that is not running
  writeFileSync(lock, `${hostTag()} 999999999\n`);
  let t = Date.now();
  assert.equal(withFileLock(join(dir, 'f.yaml'), () => 'ran'), 'ran');
  assert.ok(Date.now() - t < 1000);
  assert.equal(existsSync(lock), false);
  // another host's, touched 1.5 s short of stale: waited for, then taken over
  writeFileSync(lock, 'elsewhere 1\n');
  const old = (Date.now() - FILE_LOCK_STALE_MS + 1500) / 1000;
  utimesSync(lock, old, old);
  t = Date.now();
  let held = 0;
  withFileLock(join(dir, 'f.yaml'), () => {
    held++;
    assert.equal(readFileSync(lock, 'utf8'), `${hostTag()} ${process.pid}\n`);
  });
  assert.equal(held, 1, 'the guarded section ran');
  const waited = Date.now() - t;
  assert.ok(waited >= 1200 && waited < 5000, `waited ${waited} ms`);
  // a holder frozen past FILE_LOCK_STALE_MS whose lock another took over meanwhile leaves the new holder's lock in place
  withFileLock(join(dir, 'f.yaml'), () => writeFileSync(lock, 'elsewhere 2\n'));
  assert.equal(readFileSync(lock, 'utf8'), 'elsewhere 2\n');
});

test("withFileLock: waiters that find a dead process's lock at the same moment take it over one at a time", async () => {
  const dir = mkdtempSync(join(root, 'race-'));
  // each waiter marks the guarded section with a file made with O_EXCL: a second holder inside fails to make it
  const child = join(dir, 'waiter.ts');
  writeFileSync(
    child,
    [
      `import { rmSync, writeFileSync } from 'node:fs';`,
      `import { withFileLock } from ${JSON.stringify(join(import.meta.dirname, '../../src/engine/files.ts'))};`,
      `const [dir, start] = [process.argv[2]!, Number(process.argv[3])];`,
      `while (Date.now() < start) {}`,
      `withFileLock(dir + '/f.yaml', () => {`,
      `  try { writeFileSync(dir + '/inside', '', { flag: 'wx' }); } catch { process.stdout.write('two holders'); return; }`,
      `  const t = Date.now(); while (Date.now() - t < 30) {}`,
      `  rmSync(dir + '/inside');`,
      `  process.stdout.write('held');`,
      `});`,
    ].join('\n'),
  );
  const locked: number[] = [];
  for (let trial = 0; trial < 8; trial++) {
    const d = join(dir, `t${trial}`);
    mkdirSync(d);
    writeFileSync(join(d, '.f.yaml.lock'), `${hostTag()} 999999999\n`);
    const start = Date.now() + 2000;
    const outs = await Promise.all(
      Array.from({ length: 4 }, () => {
        const p = spawn(process.execPath, ['--import', 'tsx', child, d, String(start)], { cwd: join(import.meta.dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (b) => (out += b));
        return new Promise<string>((res) => p.on('close', (code) => res(code === 0 ? out : `exit ${code}`)));
      }),
    );
    assert.deepEqual(outs.filter((o) => o !== 'held'), [], `trial ${trial}`);
    if (existsSync(join(d, '.f.yaml.lock'))) locked.push(trial);
  }
  assert.deepEqual(locked, [], 'every lock released');
});

test('withFileLock waits for a breaker another waiter holds without spinning a core, and takes the lock once that breaker is stale', () => {
  const dir = mkdtempSync(join(root, 'breaker-'));
  const lock = join(dir, '.f.yaml.lock');
  writeFileSync(lock, `${hostTag()} 999999999\n`);
  // a breaker of another host, 1.2 s short of stale
  writeFileSync(`${lock}.break`, 'elsewhere 1\n');
  const old = (Date.now() - FILE_LOCK_STALE_MS + 1200) / 1000;
  utimesSync(`${lock}.break`, old, old);
  const t = Date.now();
  const cpu = process.cpuUsage();
  let held = 0;
  withFileLock(join(dir, 'f.yaml'), () => {
    held++;
    assert.equal(readFileSync(lock, 'utf8'), `${hostTag()} ${process.pid}\n`);
  });
  assert.equal(held, 1, 'the guarded section ran');
  const wall = Date.now() - t;
  const used = process.cpuUsage(cpu);
  assert.ok(wall >= 1000 && wall < 5000, `waited ${wall} ms`);
  assert.ok((used.user + used.system) / 1000 < wall / 4, `${((used.user + used.system) / 1000).toFixed(0)} ms of CPU in ${wall} ms`);
  assert.deepEqual([existsSync(lock), existsSync(`${lock}.break`)], [false, false]);
});

test("sweep.yaml planned again unchanged is not rewritten (the tasks of a Slurm array start together); each run's lr is base_lr x batch / 256", () => {
  const results = mkdtempSync(join(root, 'r-'));
  const s0 = tinyPlan(results, [0]);
  mkdirSync(s0.dir, { recursive: true });
  assert.deepEqual(writeResolvedSweep(s0), []);
  const path = join(s0.dir, 'sweep.yaml');
  const before = statSync(path).ino;
  assert.deepEqual(writeResolvedSweep(tinyPlan(results, [0])), []);
  assert.equal(statSync(path).ino, before, 'the same file, not one renamed over it');
  // planned with another seed: written whole under another name and renamed onto sweep.yaml
  writeResolvedSweep(tinyPlan(results, [1]));
  assert.notEqual(statSync(path).ino, before);
  writeResolvedSweep(s0);
  assert.deepEqual(
    read(s0).runs.map((r: { id: string; config_hash: string }) => [r.id, r.config_hash]),
    s0.runs.map((r) => [r.id, r.hash]),
  );
  assert.notEqual(s0.runs[0]!.hash, s0.runs[1]!.hash);
  // smoke: base lr 0.01 x10 = 0.1 at batch 512/32 = 16 and 1024/32 = 32: lr 0.1 x 16 / 256 = 0.00625, x 32 / 256 = 0.0125
  assert.deepEqual(
    read(s0).runs.map((r: { lr: number; config: { optim: { batch_size: number } } }) => [r.config.optim.batch_size, r.lr]),
    [
      [16, 0.00625],
      [32, 0.0125],
    ],
  );
});

test("earlierRuns: the earlier file's runs (with its preset, without their index) before its earlier runs, each id once, none this plan has", () => {
  const previous = {
    preset: 'cpu',
    runs: [
      { index: 1, id: 'a', x: 1 },
      { index: 2, id: 'c', x: 3 },
    ],
    earlier_runs: [
      { id: 'a', preset: 'gpu', x: 2 },
      { id: 'b', preset: 'gpu', x: 4 },
    ],
  };
  assert.deepEqual(earlierRuns(previous, new Set(['c'])), [
    { preset: 'cpu', id: 'a', x: 1 },
    { id: 'b', preset: 'gpu', x: 4 },
  ]);
  assert.deepEqual(earlierRuns('runs: [', new Set()), []);
});
