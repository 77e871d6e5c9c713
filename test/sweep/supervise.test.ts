/**
 * `moco3 sweep` as bin/moco3.js runs it: the process a user starts supervises a child that trains
 * (src/cli/supervise.ts). A crash of the child (here SIGABRT, what a failed native assertion raises; a
 * segmentation fault is the same to the supervisor) restarts it, and the sweep ends as if it never crashed;
 * a run that keeps crashing is given up; a supervisor killed outright takes its child with it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '../helpers/tf.ts';
import { loadSweepFile } from '../../src/sweep/file.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { runSweep } from '../../src/sweep/runner.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { readRunState } from '../../src/runfolder/state.ts';
import { CRASH_SIGNALS, markOutputClosed, MAX_CRASHES, onOutputClosed, setProcessEntry, shouldSupervise, STOP_SIGNALS, sweepStartedMs } from '../../src/cli/supervise.ts';
import { spawnEvents } from '../helpers/events.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-supervise-');
after(() => rmSync(root, { recursive: true, force: true }));

const cli = join(import.meta.dirname, 'fixtures', 'cli.ts');
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');

const refPlan = (async () => {
  const plan = planSweep(loadSweepFile(tinyFile), { results: mkdtempSync(join(root, 'ref-')) });
  await runSweep({ plan, backend: { name: 'cpu', requested: 'cpu', device: 'test', reason: 'test', gpu: false, heapLimit: null } });
  return plan;
})();

const strip = (dir: string) => readMetrics(join(dir, 'metrics.jsonl')).map(({ images_per_s: _ips, ...row }) => row);

/** The pid training a run, from its status.json. */
const trainerOf = (runDir: string): number => JSON.parse(readFileSync(join(runDir, 'status.json'), 'utf8')).pid as number;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * The supervised sweep, its child paused before the third metrics row of the first run (fixtures/cli.ts);
 * `atPause(n, marker)` acts at the n-th pause.
 */
function supervised(results: string, atPause: (n: number, marker: string, supervisor: number) => void, row = 3, extraEnv: Record<string, string> = {}) {
  const run1 = planSweep(loadSweepFile(tinyFile), { results }).runs[0]!;
  const marker = join(results, '.pause');
  const env = { ...process.env, MOCO3_TEST_ENTRY: '1', MOCO3_TEST_PAUSE: `metrics:${row}:${run1.id}`, MOCO3_TEST_MARKER: marker, ...extraEnv };
  const { child, events, done } = spawnEvents(cli, ['sweep', tinyFile, '--json', '--no-baselines', '--backend', 'cpu', '--results', results], env, undefined, { noCore: true });
  let pauses = 0;
  const poll = setInterval(() => {
    if (!existsSync(marker)) return;
    pauses += 1;
    atPause(pauses, marker, child.pid!);
  }, 20);
  return { run1, events, done: done.finally(() => clearInterval(poll)) };
}

test('a crashed sweep process is restarted: the run resumes from its checkpoint and ends as if it never crashed', async () => {
  const ref = await refPlan;
  const results = mkdtempSync(join(root, 'crash-'));
  let victim = 0;
  let reached = -1;
  // paused before its ninth metrics row: past its checkpoint at step 6, its status.json's heartbeat (every 10 steps) at 0
  const s = supervised(results, (n, marker) => {
    if (n > 1) return;
    victim = trainerOf(s.run1.dir);
    reached = JSON.parse(readFileSync(join(s.run1.dir, 'metrics.jsonl'), 'utf8').trim().split('\n').at(-1)!).step;
    rmSync(marker);
    process.kill(victim, 'SIGABRT');
    writeFileSync(`${marker}.go`, ''); // the restarted child does not pause again
  }, 9);
  const { code, stderr } = await s.done;
  assert.equal(code, 0, stderr);
  assert.ok(victim > 0 && !alive(victim));
  const crash = s.events.find((e) => e.type === 'sweep_crash');
  assert.deepEqual(
    { signal: crash?.signal, run: crash?.run, restart: crash?.restart, crashes: crash?.crashes },
    { signal: 'SIGABRT', run: s.run1.id, restart: true, crashes: 1 },
  );
  // the step it reached: its last metrics row's, not status.json's heartbeat's nor its checkpoint's
  assert.ok(reached > 6, `paused at step ${reached}`);
  assert.deepEqual([crash?.step, crash?.resume_step], [reached, 6]);
  assert.match(stderr, new RegExp(`crashed \\(SIGABRT\\) in run ${s.run1.id} \\(interrupted at step ${reached}/12, resumes at 6\\); restarting it`));
  assert.ok(s.events.some((e) => e.type === 'run_start' && e.index === 1 && e.previous === 'interrupted'), 'the second child resumed run 1');
  assert.deepEqual(s.events.at(-1)?.counts, { completed: 2 });
  for (const r of ref.runs) assert.deepEqual(strip(join(results, 'tiny', r.id)), strip(r.dir), `${r.id}: metrics differ from an uncrashed sweep`);
});

test(`a run that crashes ${MAX_CRASHES} times is given up, its status left interrupted`, async () => {
  const results = mkdtempSync(join(root, 'again-'));
  const s = supervised(results, (_n, marker) => {
    rmSync(marker);
    process.kill(trainerOf(s.run1.dir), 'SIGABRT');
  });
  const { code, stderr } = await s.done;
  assert.equal(code, 128 + 6, stderr);
  assert.deepEqual(
    s.events.filter((e) => e.type === 'sweep_crash').map((e) => [e.crashes, e.restart]),
    Array.from({ length: MAX_CRASHES }, (_, i) => [i + 1, i + 1 < MAX_CRASHES]),
  );
  assert.match(stderr, new RegExp(`crash ${MAX_CRASHES} of ${MAX_CRASHES} there; not restarting it`));
  assert.equal(readRunState(s.run1.dir).state, 'interrupted');
});

test(`crashes are counted run by run: ${MAX_CRASHES - 1} in one run and 1 in the next are ${MAX_CRASHES} restarts, and the sweep ends`, async () => {
  const results = mkdtempSync(join(root, 'per-run-'));
  const [run1, run2] = planSweep(loadSweepFile(tinyFile), { results }).runs;
  // each child reads its pause as it starts: the first two in run 1, the third in run 2, the fourth none
  const from = join(results, '.pause-spec');
  writeFileSync(from, `metrics:3:${run1!.id}`);
  const s = supervised(
    results,
    (n, marker) => {
      rmSync(marker);
      const run = n < MAX_CRASHES ? run1! : run2!;
      if (n === MAX_CRASHES - 1) writeFileSync(from, `metrics:3:${run2!.id}`);
      if (n === MAX_CRASHES) writeFileSync(from, '');
      process.kill(trainerOf(run.dir), 'SIGABRT');
    },
    3,
    { MOCO3_TEST_PAUSE_FROM: from },
  );
  const { code, stderr } = await s.done;
  assert.equal(code, 0, stderr);
  assert.deepEqual(
    s.events.filter((e) => e.type === 'sweep_crash').map((e) => [e.run, e.crashes, e.restart]),
    [...Array.from({ length: MAX_CRASHES - 1 }, (_, i) => [run1!.id, i + 1, true]), [run2!.id, 1, true]],
  );
  assert.match(stderr, new RegExp(`in run ${run2!.id} \\(.*\\); restarting it \\(1 of ${MAX_CRASHES - 1} restarts for this run\\)`));
  assert.deepEqual(s.events.at(-1)?.counts, { completed: 2 });
});

test('a crash while the sweep computes its baselines is said as such, not blamed on the last run trained; the restarted process computes them', async () => {
  const results = mkdtempSync(join(root, 'baselines-'));
  const marker = join(results, '.pause');
  // paused before baselines.json is put in place: the runs are done, the baselines being computed
  const env = { ...process.env, MOCO3_TEST_ENTRY: '1', MOCO3_TEST_PAUSE: 'before-rename:1:baselines\\.json', MOCO3_TEST_MARKER: marker };
  const { events, done } = spawnEvents(cli, ['sweep', tinyFile, '--json', '--backend', 'cpu', '--results', results, '--set', 'eval.linear.enabled=false'], env, undefined, { noCore: true });
  const poll = setInterval(() => {
    if (!existsSync(marker)) return;
    clearInterval(poll);
    rmSync(marker);
    // the process that trained the runs (their status.json's pid) computes the baselines
    const run = readdirSync(join(results, 'tiny')).find((d) => existsSync(join(results, 'tiny', d, 'status.json')))!;
    process.kill(trainerOf(join(results, 'tiny', run)), 'SIGABRT');
    writeFileSync(`${marker}.go`, '');
  }, 20);
  const { code, stderr } = await done.finally(() => clearInterval(poll));
  assert.equal(code, 0, stderr);
  assert.match(stderr, /the sweep process crashed \(SIGABRT\) in the baselines; restarting it \(1 of \d restarts for the baselines\)\n/);
  assert.doesNotMatch(stderr, /crashed \(SIGABRT\) in run/);
  const crash = events.find((e) => e.type === 'sweep_crash');
  assert.deepEqual([crash?.run, crash?.where, crash?.restart], [null, 'the baselines', true]);
  assert.ok(events.some((e) => e.type === 'baselines_start'), 'the start of the baselines is an event');
  assert.equal(events.at(-1)?.type, 'baselines');
  assert.deepEqual(JSON.parse(readFileSync(join(results, 'tiny', 'baselines.json'), 'utf8')).seeds.map((x: { seed: number }) => x.seed), [0]);
});

/** A process's state letter from /proc (T: stopped). */
const procState = (pid: number): string => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
};

async function until(what: string, f: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('Ctrl-Z (SIGTSTP) stops the training child with its supervisor, and continuing the supervisor continues it', async () => {
  const results = mkdtempSync(join(root, 'tstp-'));
  let checked: Promise<void> | null = null;
  const s = supervised(results, (n, marker, supervisor) => {
    if (n > 1) return;
    const trainer = trainerOf(s.run1.dir);
    checked = (async () => {
      try {
        process.kill(supervisor, 'SIGTSTP');
        await until('the supervisor and its child to stop', () => procState(supervisor) === 'T' && procState(trainer) === 'T');
        process.kill(supervisor, 'SIGCONT');
        await until('both to go on', () => procState(supervisor) !== 'T' && procState(trainer) !== 'T');
        rmSync(marker);
        writeFileSync(`${marker}.go`, '');
      } catch (e) {
        // neither left behind, stopped or training
        for (const pid of [trainer, supervisor]) process.kill(pid, 'SIGKILL');
        throw e;
      }
    })();
  });
  const { code, stderr } = await s.done;
  assert.ok(checked, 'the child paused in its run');
  await checked;
  assert.equal(code, 0, stderr);
  assert.deepEqual(s.events.at(-1)?.counts, { completed: 2 });
});

test("a terminal's resize (SIGWINCH) reaches the training child, in a session of its own (its bars kept the width they started at)", async () => {
  const results = mkdtempSync(join(root, 'winch-'));
  const got = join(results, 'winch');
  let trainer = 0;
  const s = supervised(
    results,
    (n, marker, supervisor) => {
      if (n > 1) return;
      trainer = trainerOf(s.run1.dir);
      process.kill(supervisor, 'SIGWINCH');
      // the child acts on it once it goes on
      rmSync(marker);
      writeFileSync(`${marker}.go`, '');
    },
    3,
    { MOCO3_TEST_WINCH: got },
  );
  const { code, stderr } = await s.done;
  assert.equal(code, 0, stderr);
  assert.ok(trainer > 0, 'the child paused in its run');
  assert.equal(existsSync(got) ? readFileSync(got, 'utf8') : 'no SIGWINCH', String(trainer));
});

test('a child stopped with its supervisor (Ctrl-Z) dies when the supervisor is then killed outright: it holds no run for ever', async () => {
  const results = mkdtempSync(join(root, 'tstp-kill-'));
  let trainer = 0;
  let checked: Promise<void> | null = null;
  const s = supervised(results, (n, _marker, supervisor) => {
    if (n > 1) return;
    trainer = trainerOf(s.run1.dir);
    checked = (async () => {
      try {
        process.kill(supervisor, 'SIGTSTP');
        await until('the supervisor and its child to stop', () => procState(supervisor) === 'T' && procState(trainer) === 'T');
        process.kill(supervisor, 'SIGKILL');
        await until('the stopped child to end', () => !alive(trainer) || procState(trainer) === 'Z');
      } catch (e) {
        for (const pid of [trainer, supervisor]) if (alive(pid)) process.kill(pid, 'SIGKILL');
        throw e;
      }
    })();
  });
  await s.done;
  assert.ok(checked, 'the child paused in its run');
  await checked;
  assert.ok(trainer > 0);
});

test("a supervised child counts the sweep's time from its supervisor's start (a child restarted after a crash too)", () => {
  const saved = { child: process.env.MOCO3_SWEEP_CHILD, started: process.env.MOCO3_SWEEP_STARTED };
  try {
    process.env.MOCO3_SWEEP_CHILD = '1';
    process.env.MOCO3_SWEEP_STARTED = '1700000000000';
    assert.equal(sweepStartedMs(), 1_700_000_000_000);
    // a process that is no supervised child starts its own clock
    delete process.env.MOCO3_SWEEP_CHILD;
    const t = Date.now();
    assert.ok(sweepStartedMs() >= t);
  } finally {
    for (const [k, v] of [['MOCO3_SWEEP_CHILD', saved.child], ['MOCO3_SWEEP_STARTED', saved.started]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('an output that closes stops train and sweep once, however many writes fail after it; a stop added after it is called at once, a removed one not at all', () => {
  const calls: string[] = [];
  const offEarly = onOutputClosed(() => calls.push('early'));
  const offGone = onOutputClosed(() => calls.push('gone'));
  offGone();
  // every failed write of stdout or stderr says so again
  markOutputClosed();
  markOutputClosed();
  assert.deepEqual(calls, ['early']);
  const offLate = onOutputClosed(() => calls.push('late'));
  markOutputClosed();
  assert.deepEqual(calls, ['early', 'late']);
  offEarly();
  offLate();
});

test('the crash signals restarted, the stop signals passed on, and the crashes of one run given up after', () => {
  // a crash of native code (segmentation fault, bus error, illegal instruction, arithmetic fault, failed assertion)
  assert.deepEqual([...CRASH_SIGNALS].sort(), ['SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGILL', 'SIGSEGV']);
  assert.deepEqual([...STOP_SIGNALS].sort(), ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2']);
  assert.ok(STOP_SIGNALS.every((s) => !CRASH_SIGNALS.has(s)));
  assert.equal(MAX_CRASHES, 3);
});

test('a sweep is supervised only in a process moco3 owns, not in its child, and not with MOCO3_SUPERVISE=0', () => {
  const saved = { child: process.env.MOCO3_SWEEP_CHILD, supervise: process.env.MOCO3_SUPERVISE };
  const got: boolean[] = [];
  try {
    delete process.env.MOCO3_SWEEP_CHILD;
    delete process.env.MOCO3_SUPERVISE;
    setProcessEntry(true);
    got.push(shouldSupervise());
    process.env.MOCO3_SUPERVISE = '0';
    got.push(shouldSupervise());
    process.env.MOCO3_SUPERVISE = '1';
    process.env.MOCO3_SWEEP_CHILD = '1';
    got.push(shouldSupervise());
    delete process.env.MOCO3_SWEEP_CHILD;
    setProcessEntry(false);
    got.push(shouldSupervise());
  } finally {
    setProcessEntry(false);
    for (const [k, v] of [['MOCO3_SWEEP_CHILD', saved.child], ['MOCO3_SUPERVISE', saved.supervise]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  assert.deepEqual(got, [true, false, false, false]);
});

test("a sweep process killed by a signal of no crash (the OOM killer's SIGKILL) is not restarted: exit 128 + its number, and the line says how to go on", async () => {
  const results = mkdtempSync(join(root, 'killed-'));
  let restarted = false;
  const s = supervised(results, (n, marker, supervisor) => {
    if (n > 1) {
      // a second child paused where the first did: the kill was taken for a crash. Neither is left waiting
      if (!restarted) for (const pid of [supervisor, trainerOf(s.run1.dir)]) if (alive(pid)) process.kill(pid, 'SIGKILL');
      restarted = true;
      return;
    }
    rmSync(marker);
    process.kill(trainerOf(s.run1.dir), 'SIGKILL');
  });
  const { code, stderr } = await s.done;
  assert.ok(!restarted, 'the sweep process was restarted after SIGKILL');
  assert.equal(code, 128 + 9, stderr);
  assert.match(stderr, /moco3: the sweep process was killed by SIGKILL; `moco3 sweep` again continues from the last checkpoint\n/);
  assert.ok(!s.events.some((e) => e.type === 'sweep_crash'), 'not restarted');
});

test('a second Ctrl-C quits the sweep at once: exit 130, and the run it was training says interrupted, not running', async () => {
  const results = mkdtempSync(join(root, 'twice-'));
  const s = supervised(results, (n, marker, supervisor) => {
    if (n > 1) return;
    rmSync(marker);
    process.kill(supervisor, 'SIGINT'); // passed on to the child, which is paused between two steps
    setTimeout(() => {
      process.kill(supervisor, 'SIGINT');
      writeFileSync(`${marker}.go`, '');
    }, 300);
  });
  const { code, stderr } = await s.done;
  assert.equal(code, 130, stderr);
  assert.equal(JSON.parse(readFileSync(join(s.run1.dir, 'status.json'), 'utf8')).status, 'interrupted');
  assert.ok(!s.events.some((e) => e.type === 'run_end'), 'no run ended');
});

test('a sweep process that crashes after a Ctrl-C is not restarted: the sweep stops as asked', async () => {
  const results = mkdtempSync(join(root, 'stopping-'));
  const s = supervised(results, (n, marker, supervisor) => {
    if (n > 1) return;
    const victim = trainerOf(s.run1.dir);
    rmSync(marker);
    process.kill(supervisor, 'SIGINT'); // passed on to the child, which is paused between two steps
    setTimeout(() => {
      process.kill(victim, 'SIGABRT');
      writeFileSync(`${marker}.go`, ''); // a restarted child would not pause again
    }, 300);
  });
  const { code, stderr } = await s.done;
  assert.equal(code, 130, stderr);
  assert.match(stderr, /the sweep process crashed \(SIGABRT\) while stopping on SIGINT; not restarting it/);
  assert.ok(!s.events.some((e) => e.type === 'sweep_crash'), 'no restart');
  assert.notEqual(readRunState(s.run1.dir).state, 'completed');
});

test('a crash after two stop signals is said, and exits, as a stop on the first of them', async () => {
  const results = mkdtempSync(join(root, 'stopping-two-'));
  const s = supervised(results, (n, marker, supervisor) => {
    if (n > 1) return;
    const victim = trainerOf(s.run1.dir);
    rmSync(marker);
    // apart, so that each reaches the supervisor on its own and in this order
    process.kill(supervisor, 'SIGTERM');
    setTimeout(() => process.kill(supervisor, 'SIGHUP'), 200);
    setTimeout(() => {
      process.kill(victim, 'SIGABRT');
      writeFileSync(`${marker}.go`, '');
    }, 500);
  });
  const { code, stderr } = await s.done;
  assert.equal(code, 128 + 15, stderr);
  assert.match(stderr, /the sweep process crashed \(SIGABRT\) while stopping on SIGTERM; not restarting it/);
  assert.ok(!s.events.some((e) => e.type === 'sweep_crash'), 'no restart');
});

test('two Ctrl-C while the sweep process starts are kept and passed on one at a time: the second quits at once, as it would have unsupervised', async () => {
  const results = mkdtempSync(join(root, 'held-twice-'));
  const env = { ...process.env, MOCO3_TEST_ENTRY: '1' };
  const { child, events, done } = spawnEvents(cli, ['sweep', tinyFile, '--json', '--no-baselines', '--backend', 'cpu', '--results', results], env, undefined, { noCore: true });
  const sup = child.pid!;
  // the supervisor's child that runs the sweep (not the esbuild service tsx starts)
  const sweepChild = () => {
    try {
      const pids = readFileSync(`/proc/${sup}/task/${sup}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      return pids.some((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cli));
    } catch {
      return false;
    }
  };
  // the child started (it takes seconds to load and say it is ready): both are kept until then
  await until('the supervisor to start its child', sweepChild);
  await new Promise((r) => setTimeout(r, 200)); // its handlers, put in place as it spawned the child
  process.kill(sup, 'SIGINT');
  await new Promise((r) => setTimeout(r, 50));
  process.kill(sup, 'SIGINT');
  const { code, stderr } = await done;
  assert.equal(code, 130, stderr);
  // had they been passed on together, the kernel would have made them one: the sweep would have stopped as on one
  // Ctrl-C and reached its end (sweep_end)
  assert.ok(!events.some((e) => e.type === 'sweep_end'), `the sweep stopped as on one Ctrl-C: ${JSON.stringify(events.map((e) => e.type))}`);
  assert.equal(stderr.match(/moco3: stopping: /g)?.length, 1, stderr);
});

test('a USR1 that comes while moco3 starts (a Slurm warning in a task\'s first moments) stops the sweep with a checkpoint, supervised or not', async () => {
  for (const supervise of ['1', '0']) {
    const results = mkdtempSync(join(root, `early-${supervise}-`));
    const env = { ...process.env, MOCO3_TEST_ENTRY: '1', MOCO3_SUPERVISE: supervise, MOCO3_TEST_EARLY_SIGNAL: 'SIGUSR1' };
    const { events, done } = spawnEvents(cli, ['sweep', tinyFile, '--json', '--no-baselines', '--backend', 'cpu', '--results', results], env, undefined, { noCore: true });
    const { code, stderr } = await done;
    // unhandled, USR1 opens Node's inspector and the sweep trains on to its end (exit 0)
    assert.equal(code, 130, `supervised ${supervise}: ${stderr}`);
    assert.doesNotMatch(stderr, /Debugger listening/);
    assert.ok(!events.some((e) => e.type === 'run_end' && e.status === 'completed'), 'no run trained to its end');
  }
});

test('a warning kept while moco3 started reaches a command that does not act on it as Node would have given it (USR2 ends it)', async () => {
  const env = { ...process.env, MOCO3_TEST_ENTRY: '1', MOCO3_TEST_EARLY_SIGNAL: 'SIGUSR2' };
  const { done } = spawnEvents(cli, ['plan', tinyFile, '--json', '--results', mkdtempSync(join(root, 'plan-'))], env, undefined, { noCore: true });
  const { code, signal } = await done;
  assert.equal(signal, 'SIGUSR2', `exit ${code}`);
});

test('a supervisor killed outright (SIGKILL) takes its training child with it', async () => {
  const results = mkdtempSync(join(root, 'kill-'));
  let trainer = 0;
  const s = supervised(results, (n, marker, supervisor) => {
    if (n > 1) return;
    trainer = trainerOf(s.run1.dir);
    process.kill(supervisor, 'SIGKILL');
    writeFileSync(`${marker}.go`, ''); // let the child go on: it must notice it is alone and stop
  });
  const { signal } = await s.done;
  assert.equal(signal, 'SIGKILL');
  const t0 = Date.now();
  while (alive(trainer) && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 50));
  assert.ok(trainer > 0 && !alive(trainer), `the child ${trainer} outlived its supervisor`);
  assert.notEqual(readRunState(s.run1.dir).state, 'completed');
});
