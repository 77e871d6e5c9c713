import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadSweep, parseSweep, SweepError } from '../../src/sweep/file.ts';
import { parseLauncherFlags, resolveLauncher, slurmTimeS } from '../../src/sweep/launcher.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { procStart, setLockTimeout } from '../../src/runfolder/lock.ts';
import { prepareLaunch } from '../../src/cli/launch.ts';
import type { SweepResult } from '../../src/sweep/runner.ts';
import { writeResolvedSweep } from '../../src/sweep/resolved.ts';
import { arraySpec, readJobs, recordSubmission, runJobs, sbatchArg, sbatchScript, slurmDir, writeScript } from '../../src/sweep/slurm.ts';
import { shellQuote } from '../../src/engine/files.ts';
import { cli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';

const fail = (m: string) => new SweepError(m);

test('the sweep file\'s launcher: section: its keys checked, unknown keys refused, flags win', () => {
  const doc = { parameters: { 'optim.base_lr': { value: 1e-4 } }, launcher: { partition: 'gpu', gpus_per_run: 2, time: '2-00:00:00', max_parallel: 3, sbatch_args: ['--account=v'] } };
  const spec = parseSweep(doc, 'x.yaml');
  assert.deepEqual(spec.launcher, doc.launcher);
  const flags = parseLauncherFlags({ gpus_per_run: '1', mem: '64G', sbatch_args: ['--qos=high'] }, fail);
  const s = resolveLauncher(spec.launcher, flags);
  assert.equal(s.partition, 'gpu');
  assert.equal(s.gpus_per_run, 1, 'the flag wins');
  assert.equal(s.mem, '64G');
  assert.equal(s.signal_s, 300);
  assert.deepEqual(s.sbatch_args, ['--account=v', '--qos=high'], 'sbatch arguments add up');
  const bad: [unknown, RegExp][] = [
    [{ gpu: 1 }, /^x\.yaml: launcher\.gpu: unknown key \(expected one of: partition, gpus_per_run/],
    [{ max_parallel: 0 }, /^x\.yaml: launcher\.max_parallel: expected a positive integer, got 0$/],
    // past Slurm's largest: sbatch refused it, after the script was written
    [{ signal_s: 70000 }, /^x\.yaml: launcher\.signal_s: expected an integer number of seconds from 10 to 65535 \(Slurm's largest\), got 70000$/],
    [{ time: 'a day' }, /^x\.yaml: launcher\.time: expected a Slurm time limit/],
    [{ sbatch_args: 'account' }, /^x\.yaml: launcher\.sbatch_args: expected a list of sbatch options/],
    [[1], /^x\.yaml: launcher: expected a mapping/],
  ];
  for (const [launcher, re] of bad) assert.throws(() => parseSweep({ ...doc, launcher }, 'x.yaml'), (e: Error) => e instanceof SweepError && re.test(e.message));
  assert.throws(() => parseLauncherFlags({ max_parallel: 'four' }, fail), (e: Error) => e.message === '--max-parallel four: expected a positive integer');
  assert.throws(() => parseLauncherFlags({ signal_s: '65536' }, fail), (e: Error) => e.message === "--signal-s 65536: expected an integer number of seconds from 10 to 65535 (Slurm's largest)");
  assert.deepEqual(parseLauncherFlags({ signal_s: '65535' }, fail), { signal_s: 65535 });
  // a run on CPUs alone: 0 GPUs, from the file or a flag (cpus_per_run and max_parallel start at 1)
  assert.deepEqual(parseSweep({ ...doc, launcher: { gpus_per_run: 0 } }, 'x.yaml').launcher, { gpus_per_run: 0 });
  assert.deepEqual(parseLauncherFlags({ gpus_per_run: '0' }, fail), { gpus_per_run: 0 });
  assert.throws(() => parseLauncherFlags({ gpus_per_run: '-1' }, fail), (e: Error) => e.message === '--gpus-per-run -1: expected a non-negative integer');
  // read as every integer flag is: a sign and spaces are fine, an exponent, hex or nothing is not
  assert.deepEqual(parseLauncherFlags({ gpus_per_run: '+1', cpus_per_run: ' 4 ', signal_s: '060' }, fail), { gpus_per_run: 1, cpus_per_run: 4, signal_s: 60 });
  for (const v of ['0x10', '', '-1', '0']) {
    assert.throws(() => parseLauncherFlags({ max_parallel: v }, fail), (e: Error) => e.message.startsWith('--max-parallel') && e.message.endsWith(': expected a positive integer'), v);
  }
  // an integer with an exponent or a point: an integer, not in the digits a count is written in
  for (const v of ['1e3', '2.0']) {
    assert.throws(() => parseLauncherFlags({ max_parallel: v }, fail), (e: Error) => e.message === `--max-parallel ${v}: expected a positive integer (written in digits)`, v);
  }
  // one the digits would not make valid either: no such hint
  for (const v of ['0e0', '5e0']) {
    assert.throws(() => parseLauncherFlags({ [v === '0e0' ? 'max_parallel' : 'signal_s']: v }, fail), (e: Error) => !e.message.includes('digits'), v);
  }
  assert.throws(() => parseLauncherFlags({ mem: '64 GB' }, fail), (e: Error) => /^--mem 64 GB: expected a memory size/.test(e.message));
  // YAML reads `time: 90` and `mem: 16000` as numbers: Slurm's minutes and megabytes, as the flags give them
  assert.deepEqual(parseSweep({ ...doc, launcher: { time: 90, mem: 16000 } }, 'x.yaml').launcher, { time: '90', mem: '16000' });
  assert.throws(() => parseSweep({ ...doc, launcher: { time: 1.5 } }, 'x.yaml'), (e: Error) => /launcher\.time: expected a Slurm time limit .*, got 1\.5$/.test(e.message));
  // Slurm's own spellings: no limit in words, a unit in either case
  assert.deepEqual(parseLauncherFlags({ time: 'UNLIMITED', mem: '4g' }, fail), { time: 'UNLIMITED', mem: '4g' });
  assert.equal(parseSweep({ ...doc, launcher: { time: 'infinite' } }, 'x.yaml').launcher.time, 'infinite');
  // an option moco3 writes itself (the job name it finds the tasks by, the array, the log) is refused, named
  for (const [args, shown, own] of [
    [['--job-name=mine'], '--job-name=mine', '--job-name'],
    [['--account=v', '-J mine'], '-J mine', '--job-name'],
    [['-omylog'], '-omylog', '--output'],
    [['--array=1-3'], '--array=1-3', '--array'],
    // the script's own #SBATCH --requeue, and the option that would undo it
    [['--requeue'], '--requeue', '--requeue'],
    [['--no-requeue'], '--no-requeue', '--requeue'],
    // the space form, and a start of the name sbatch takes for the whole
    [['--job-name x'], '--job-name x', '--job-name'],
    [['--out=/tmp/x.log'], '--out=/tmp/x.log', '--output'],
    [['--arr 1-3'], '--arr 1-3', '--array'],
    [['--ou=/x'], '--ou=/x', '--output'],
    [['--si=B:USR1@60'], '--si=B:USR1@60', '--signal'],
  ] as const) {
    assert.throws(
      () => parseLauncherFlags({ sbatch_args: [...args] }, fail),
      (e: Error) => e.message.startsWith(`--sbatch-arg ${shown}: expected a list of sbatch options, each starting with - and on one line, none of those moco3 sets: moco3 sets ${own} itself (`),
      args.join(' '),
    );
  }
  assert.throws(() => parseSweep({ ...doc, launcher: { sbatch_args: ['--job-name=x'] } }, 'x.yaml'), (e: Error) => /^x\.yaml: launcher\.sbatch_args: expected .*moco3 sets --job-name itself/.test(e.message));
  // look-alikes are not those options
  assert.deepEqual(parseLauncherFlags({ sbatch_args: ['--job-name-suffix=x', '--exclusive', '-A acct', '--ntasks-per-node=1'] }, fail).sbatch_args?.length, 4);
  // two options in one entry: the second would be written as the first's value
  assert.throws(
    () => parseLauncherFlags({ sbatch_args: ['--account=v', '--exclusive --hold'] }, fail),
    (e: Error) => e.message === '--sbatch-arg --exclusive --hold: expected a list of sbatch options, each starting with - and on one line, one option an entry (a value that begins with - goes after =)',
  );
  // a value after a blank goes into the script quoted after =, as sbatch would split it at blanks and end it at ' #'
  assert.equal(sbatchArg('--comment run #3 of lr'), '--comment="run #3 of lr"');
  assert.equal(sbatchArg('--comment=run #3'), '--comment="run #3"');
  assert.equal(sbatchArg('--account vision'), '--account=vision');
  // quotes around the value are the user's quoting, not part of it
  assert.equal(sbatchArg('--comment "a b"'), '--comment="a b"');
  assert.equal(sbatchArg("--comment 'my run'"), '--comment="my run"');
  assert.equal(sbatchArg('--comment="a b"'), '--comment="a b"');
  // two quoted words are no one quoted value: kept as written
  assert.equal(sbatchArg('--comment "a" "b"'), '--comment="\\"a\\" \\"b\\""');
  assert.equal(sbatchArg('-J my job'), '-J "my job"');
  assert.equal(sbatchArg('-Avision'), '-Avision');
  assert.equal(sbatchArg('--exclusive'), '--exclusive');
  // a start two options begin with is not taken for one of moco3's (sbatch refuses it as ambiguous)
  assert.deepEqual(parseLauncherFlags({ sbatch_args: ['--par=gpu', '--nod=n1', '--nodelist=n1', '--no-kill'] }, fail).sbatch_args?.length, 4);
});

test('a Slurm time limit in seconds, and one no longer than the warning before it refused', () => {
  const cases: [string, number | null][] = [
    ['90', 5400], ['90:30', 5430], ['2:00:00', 7200], ['1-0', 86400], ['1-2:30', 95400], ['2-00:00:05', 172805], ['0', null], ['soon', null],
  ];
  for (const [t, s] of cases) assert.equal(slurmTimeS(t), s, t);
  // the warning comes signal_s before the limit: a limit within it would requeue each start at once
  assert.throws(() => resolveLauncher({}, { time: '5' }, fail), (e: Error) => e.message.startsWith('--time 5: a time limit of 300 s, not longer than the default --signal-s 300 '));
  assert.throws(() => resolveLauncher({ time: '10' }, { signal_s: 600 }, fail, 'x.yaml'), (e: Error) => e.message.startsWith("x.yaml's launcher.time 10: a time limit of 600 s, not longer than --signal-s 600 "));
  assert.equal(resolveLauncher({}, { time: '6' }, fail).time, '6', 'a limit past the warning');
  assert.equal(resolveLauncher({}, { time: '0' }, fail).time, '0', 'no limit');
  assert.equal(slurmTimeS('UNLIMITED'), null);
  assert.equal(resolveLauncher({}, { time: 'Unlimited' }, fail).time, 'Unlimited', 'no limit, in words');
});

test('the array: indices as ranges with the %N limit; the script runs each index with the plan hashes', () => {
  assert.equal(arraySpec([5, 1, 2, 3, 8, 7], 2), '1-3,5,7-8%2');
  assert.equal(arraySpec([4], null), '4');
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  const plan = planSweep(loadSweep('batch-size'), { preset: 'gpu', results: '/r' });
  const s = resolveLauncher({}, { partition: 'gpu', gpus_per_run: 1, max_parallel: 2, time: '1:00:00', sbatch_args: ['--account=v'] });
  const text = sbatchScript({ plan, indices: [2, 3, 4], settings: s, command: ['node', '/m/bin/moco3.js', 'sweep', 'batch-size', '--set', 'a=b c'], cwd: '/w' });
  assert.match(text, /^#SBATCH --array=2-4%2$/m);
  assert.match(text, /^#SBATCH --output=\/r\/batch-size\/slurm\/%A_%a\.log$/m);
  assert.match(text, /^#SBATCH --signal=B:USR1@300$/m);
  assert.match(text, /^#SBATCH --requeue$/m);
  assert.match(text, /^#SBATCH --gres=gpu:1$/m);
  assert.match(text, /^#SBATCH --time=1:00:00$/m);
  assert.match(text, /^#SBATCH --account=v$/m);
  assert.match(text, new RegExp(`^HASHES=\\(- ${plan.runs.map((r) => r.hash).join(' ')}\\)$`, 'm'));
  assert.match(text, /^node \/m\/bin\/moco3\.js sweep batch-size --set 'a=b c' \\$/m);
  assert.match(text, /--run-index "\$SLURM_ARRAY_TASK_ID" --expect-hash "\$\{HASHES\[\$SLURM_ARRAY_TASK_ID\]\}" &$/m);
  // sbatch splits #SBATCH lines on whitespace outside quotes, reads a backslash as an escape and # as a comment
  const spaced = planSweep(loadSweep('batch-size'), { preset: 'gpu', results: '/home/me/my results' });
  const args = resolveLauncher({}, { sbatch_args: ['--comment=two words', '--comment=a"b\\c#d', '-A vision', '--qos=x'] });
  const t2 = sbatchScript({ plan: spaced, indices: [1], settings: args, command: ['node', 'moco3'], cwd: "/home/me/it's here" });
  assert.match(t2, /^#SBATCH --output="\/home\/me\/my results\/batch-size\/slurm\/%A_%a\.log"$/m);
  assert.match(t2, /^#SBATCH --chdir="\/home\/me\/it's here"$/m);
  assert.match(t2, /^#SBATCH --comment="two words"$/m);
  assert.match(t2, /^#SBATCH --comment="a\\"b\\\\c#d"$/m);
  assert.match(t2, /^#SBATCH -A vision$/m);
  assert.match(t2, /^#SBATCH --qos=x$/m);
  // a # would start a comment where it stands unquoted (the working folder cut at it)
  assert.match(sbatchScript({ plan: spaced, indices: [1], settings: args, command: ['node'], cwd: '/w/run#3' }), /^#SBATCH --chdir="\/w\/run#3"$/m);
  // no GPUs asked for: no --gres line (a cluster without GPU resources refuses gpu:0)
  const cpuOnly = sbatchScript({ plan, indices: [1], settings: resolveLauncher({}, { gpus_per_run: 0 }), command: ['node'], cwd: '/w' });
  assert.doesNotMatch(cpuOnly, /--gres/);
  assert.throws(() => sbatchScript({ plan: spaced, indices: [1], settings: args, command: ['node'], cwd: '/a\nb' }), /the working folder "\/a\\nb": a line break cannot go into an #SBATCH line/);
  // sbatch reads % in --output as a pattern: a % in the folder's name is written %% (its own, not the job's)
  const pct = planSweep(loadSweep('batch-size'), { preset: 'gpu', results: '/r/100%' });
  assert.match(sbatchScript({ plan: pct, indices: [1], settings: args, command: ['node'], cwd: '/w' }), /^#SBATCH --output=\/r\/100%%\/batch-size\/slurm\/%A_%a\.log$/m);
  // a backslash there Slurm reads as "no patterns" and drops: refused (a relative --results through the working folder too)
  const back = planSweep(loadSweep('batch-size'), { preset: 'gpu', results: 'res' });
  assert.throws(
    () => sbatchScript({ plan: back, indices: [1], settings: args, command: ['node'], cwd: '/w/a\\b' }),
    (e: Error) => e instanceof SweepError && e.message === "/w/a\\b/res/batch-size/slurm: a backslash in the path of the tasks' logs cannot go to Slurm; give a --results folder without one",
  );
});

test('--launcher slurm --dry-run prints the script and writes nothing; bad flags and a changed plan are one line, exit 2', async () => {
  const results = tempDir('moco3-launch-');
  try {
    // an sbatch option is --sbatch-arg's value, also one spelt as a flag of moco3's own (--mem)
    const r = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--dry-run', '--results', results, '--max-parallel', '4', '--sbatch-arg', '--qos=x', '--sbatch-arg', '--mem=4G']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^#!\/bin\/bash\n/);
    assert.match(r.out, /#SBATCH --array=1-4%4/);
    assert.match(r.out, /#SBATCH --qos=x/);
    assert.match(r.out, /#SBATCH --mem=4G/);
    assert.match(r.out, / sweep batch-size --preset gpu --results /);
    assert.equal(existsSync(join(results, 'batch-size')), false, 'nothing written');
    // a refused flag probes no folder: the results folder is not written, not even for a moment
    const mtime = statSync(results).mtimeMs;
    const bad = await cli(['sweep', 'batch-size', '--launcher', 'slurm', '--dry-run', '--results', results, '--gpus-per-run', 'x']);
    assert.equal(bad.code, 2);
    assert.equal(bad.err, 'moco3: --gpus-per-run x: expected a non-negative integer\n');
    const local = await cli(['sweep', 'batch-size', '--results', results, '--partition', 'gpu']);
    assert.equal(local.code, 2);
    assert.equal(local.err, 'moco3: --partition gpu: only with --launcher slurm\n');
    assert.equal(statSync(results).mtimeMs, mtime, 'a refused flag wrote in the results folder');
    const idx = await cli(['sweep', 'batch-size', '--results', results, '--run-index', '9']);
    assert.equal(idx.code, 2);
    assert.equal(idx.err, 'moco3: --run-index 9: the sweep batch-size has 4 runs\n');
    const hash = await cli(['sweep', 'batch-size', '--results', results, '--run-index', '1', '--expect-hash', 'deadbeef']);
    assert.equal(hash.code, 2);
    assert.match(hash.err, /^moco3: --expect-hash deadbeef: run 1 of batch-size now resolves to config [0-9a-f]{8} \(bs\S+\), not the one submitted; .*submit again\n$/);
    assert.equal(existsSync(join(results, 'batch-size')), false, 'nothing written');
    // a folder planned under another preset: the dry run of a submission says so, as the local one does
    writeResolvedSweep(planSweep(loadSweep('batch-size'), { results, preset: 'smoke' }));
    for (const launcher of [['--launcher', 'slurm'], []]) {
      const mixed = await cli(['sweep', 'batch-size', '--preset', 'gpu', ...launcher, '--dry-run', '--results', results]);
      assert.equal(mixed.code, 0, mixed.err);
      assert.match(mixed.err, /^moco3: note: \S+batch-size was planned under preset smoke as well; /, launcher.join(' '));
      assert.equal(mixed.err.match(/note: /g)?.length, 1, mixed.err);
    }
    // and `moco3 plan`, which showed the runs as new and said nothing of the others
    const planned = await cli(['plan', 'batch-size', '--preset', 'gpu', '--results', results]);
    assert.equal(planned.code, 0, planned.err);
    assert.match(planned.err, /^moco3: note: \S+batch-size was planned under preset smoke as well; /);
  } finally {
    rmSync(results, { recursive: true, force: true });
  }
});

test('--launcher slurm: each task runs the sweep with every flag that made the plan, with the node options and the --no-baselines and --lock-timeout of the submission', async () => {
  const results = tempDir('moco3-launch-');
  try {
    const flags = ['--preset', 'gpu', '--optimizer', 'adamw', '--set', 'optim.weight_decay=0.05', '--seeds', '1,2', '--data', 'synthetic', '--backend', 'cpu'];
    const r = await cli(['sweep', 'batch-size', ...flags, '--no-baselines', '--lock-timeout', '900', '--launcher', 'slurm', '--dry-run', '--results', results]);
    assert.equal(r.code, 0, r.err);
    const line = r.out.split('\n').find((l) => / sweep batch-size /.test(l) && !l.startsWith('#'));
    const node = [process.execPath, ...process.execArgv].map(shellQuote).join(' ');
    assert.equal(line, `${node} ${shellQuote(process.argv[1]!)} sweep batch-size ${flags.join(' ')} --results ${shellQuote(results)} --no-baselines --lock-timeout 900 \\`);
  } finally {
    rmSync(results, { recursive: true, force: true });
  }
});

test('--launcher slurm: a run another process is training is not submitted again (its task would hold a node, waiting on the run\'s lock)', async () => {
  const results = tempDir('moco3-launch-');
  try {
    const run = planSweep(loadSweep('batch-size'), { preset: 'gpu', results }).runs[1]!.dir;
    mkdirSync(run, { recursive: true });
    const now = new Date().toISOString();
    writeFileSync(join(run, '.lock'), JSON.stringify({ pid: process.ppid, host: hostname(), proc_start: procStart(process.ppid), since: now, heartbeat: now, sweep: 'batch-size', timeout_s: 600 }));
    const r = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--dry-run', '--json', '--results', results]);
    assert.equal(r.code, 0, r.err);
    const o = JSON.parse(r.out) as { script: string; skipped: string[] };
    assert.deepEqual(o.skipped, ['2 running']);
    assert.match(o.script, /^#SBATCH --array=1,3-4$/m);
  } finally {
    rmSync(results, { recursive: true, force: true });
  }
});

test('a local sweep refuses the flags of a Slurm task out of place in one line, exit 2, before a dry run shows anything', async () => {
  const results = tempDir('moco3-launch-');
  try {
    for (const [extra, line] of [
      [['--expect-hash', 'abc'], 'moco3: --expect-hash abc: only with --run-index\n'],
      [['--agent', '--run-index', '1'], 'moco3: --agent: takes runs itself; not with --run-index\n'],
      [['--run-index', '0'], 'moco3: --run-index 0: expected a positive integer\n'],
    ] as const) {
      const r = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--dry-run', '--results', results, ...extra]);
      assert.deepEqual([r.code, r.err, r.out], [2, line, ''], extra.join(' '));
    }
    assert.deepEqual(readdirSync(results), []);
  } finally {
    rmSync(results, { recursive: true, force: true });
  }
});

test('a local sweep judges another host\'s lock by its --lock-timeout: a heartbeat 30 s old is stale under 10 s, live under the default', async () => {
  const results = tempDir('moco3-launch-');
  try {
    const run = planSweep(loadSweep('batch-size'), { preset: 'gpu', results }).runs[0]!.dir;
    mkdirSync(run, { recursive: true });
    const beat = new Date(Date.now() - 30_000).toISOString();
    writeFileSync(join(run, '.lock'), JSON.stringify({ pid: 1, host: 'another-host', proc_start: null, since: beat, sweep: 'batch-size', heartbeat: beat, timeout_s: 10 }));
    const status = async (flags: string[]) => {
      const r = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--dry-run', '--json', '--results', results, ...flags]);
      assert.equal(r.code, 0, r.err);
      return (JSON.parse(r.out) as { runs: { status: string }[] }).runs[0]!.status;
    };
    assert.equal(await status([]), 'running');
    assert.equal(await status(['--lock-timeout', '10']), 'new');
  } finally {
    setLockTimeout(null);
    rmSync(results, { recursive: true, force: true });
  }
});

test('a Slurm task stopped otherwise than by USR1 (scancel\'s TERM) ends, recorded as such; USR1 requeues it, and a requeue that fails is said, exit 1', async () => {
  const results = tempDir('moco3-launch-');
  const bin = join(results, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'scontrol'), `#!/bin/sh\necho "$@" >> ${join(bin, 'calls')}\necho "scontrol: error: Invalid job id" >&2\nexit 1\n`, { mode: 0o755 });
  const keys = ['SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID', 'SLURM_JOB_ID', 'SLURM_RESTART_COUNT', 'PATH'] as const;
  const saved = keys.map((k) => [k, process.env[k]] as const);
  const exitCode = process.exitCode;
  Object.assign(process.env, { SLURM_ARRAY_JOB_ID: '55', SLURM_ARRAY_TASK_ID: '1', SLURM_JOB_ID: '56', SLURM_RESTART_COUNT: '0', PATH: `${bin}:${process.env.PATH}` });
  const err = process.stderr.write;
  const said: string[] = [];
  process.stderr.write = ((s: string) => (said.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const plan = planSweep(loadSweep('batch-size'), { preset: 'gpu', results });
    const stopped = { states: plan.runs.map(() => ({ state: 'interrupted', checkpoint_step: 3 })), interrupted: true, failed: [], trained: [], busy: [] } as unknown as SweepResult;
    const events = () => readFileSync(join(slurmDir(plan), 'tasks.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).event as string);
    let stops = 0;
    const term = prepareLaunch(plan, { sbatchArg: [], runIndex: '1' }, () => stops++);
    await term.run(async () => stopped);
    term.afterStopped?.();
    assert.deepEqual(events(), ['start', 'end']);
    assert.equal(existsSync(join(bin, 'calls')), false, 'no requeue');
    assert.equal(process.exitCode, exitCode);
    const usr1 = prepareLaunch(plan, { sbatchArg: [], runIndex: '1' }, () => stops++);
    usr1.onUsr1!();
    assert.equal(stops, 1);
    await usr1.run(async () => stopped);
    assert.deepEqual(events(), ['start', 'end', 'start', 'requeue', 'requeue_failed']);
    assert.equal(readFileSync(join(bin, 'calls'), 'utf8'), 'requeue 55_1\n');
    assert.equal(usr1.requeued?.(), false);
    assert.equal(process.exitCode, 1);
    assert.match(said.join(''), /moco3: scontrol requeue 55_1 failed: .*; the run is checkpointed: submit the sweep again to continue it\n/);
  } finally {
    process.stderr.write = err;
    process.exitCode = exitCode;
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(results, { recursive: true, force: true });
  }
});

test('an agent passes over the plan while runs are left to others and it trained one, never trying again a run that failed under it, which its result keeps', async () => {
  const plan = planSweep(loadSweep('batch-size'), { preset: 'gpu', results: tempDir('moco3-launch-') });
  const [a, b, c] = plan.runs.map((r) => r.id);
  const passes: number[][] = [];
  const answers = [
    { failed: [a], trained: [b], busy: [c] },
    { failed: [], trained: [c], busy: [b] },
    { failed: [], trained: [], busy: [b] },
  ];
  const agent = prepareLaunch(plan, { sbatchArg: [], agent: true }, () => {});
  const r = await agent.run(async (extra) => {
    passes.push(extra.only!);
    return { ...answers[passes.length - 1]!, interrupted: false, states: [] } as unknown as SweepResult;
  });
  assert.deepEqual(passes, [[1, 2, 3, 4], [2, 3, 4], [2, 3, 4]]);
  assert.deepEqual(r.failed, [a], 'the run that failed in the first pass');
});

test('--launcher slurm --json with every run running elsewhere: one object saying there is no script, the runs skipped named', async () => {
  const results = tempDir('moco3-launch-');
  try {
    const now = new Date().toISOString();
    for (const run of planSweep(loadSweep('batch-size'), { preset: 'gpu', results }).runs) {
      mkdirSync(run.dir, { recursive: true });
      writeFileSync(join(run.dir, '.lock'), JSON.stringify({ pid: process.ppid, host: hostname(), proc_start: procStart(process.ppid), since: now, heartbeat: now, sweep: 'batch-size', timeout_s: 600 }));
    }
    const r = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--dry-run', '--json', '--results', results]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), { type: 'sbatch', script: null, skipped: ['1 running', '2 running', '3 running', '4 running'] });
    assert.match(r.err, /^sweep batch-size: nothing to submit: every run is completed, running or queued \(1 running, 2 running, 3 running, 4 running\)\n/);
  } finally {
    rmSync(results, { recursive: true, force: true });
  }
});

test('--launcher slurm: a task\'s own flags are refused; --dry-run checks the results folder and the batches; a failed sbatch leaves nothing', async () => {
  const results = tempDir('moco3-launch-');
  const base = ['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--results', results];
  for (const [extra, line] of [
    [['--run-index', '2'], "moco3: --run-index 2: a Slurm task's own flag (the array job gives each task its index); not with --launcher slurm\n"],
    [['--expect-hash', 'zzz'], "moco3: --expect-hash zzz: a Slurm task's own flag; not with --launcher slurm\n"],
    [['--agent'], 'moco3: --agent: takes runs itself on this machine; not with --launcher slurm\n'],
    [['--lock-timeout', 'abc'], 'moco3: --lock-timeout abc: expected a positive number\n'],
  ] as const) {
    const r = await cli([...base, '--dry-run', ...extra]);
    assert.equal(r.code, 2, r.err);
    assert.equal(r.err, line);
  }
  const lock = await cli([...base, '--dry-run', '--lock-timeout', '900']);
  assert.match(lock.out, / --lock-timeout 900 /, 'the tasks get the lock timeout');
  // a number of seconds as MOCO3_LOCK_TIMEOUT takes it
  const half = await cli([...base, '--dry-run', '--lock-timeout', '0.5']);
  assert.equal(half.code, 0, half.err);
  assert.match(half.out, / --lock-timeout 0\.5 /);
  const small = await cli([...base, '--dry-run', '--set', 'data.train_size=10']);
  assert.equal(small.code, 2);
  assert.match(small.err, /data\.train_size 10 cannot fill one batch of optim\.batch_size 256/);
  writeFileSync(join(results, 'a-file'), '');
  const onFile = await cli(['sweep', 'batch-size', '--preset', 'smoke', '--results', join(results, 'a-file'), '--dry-run']);
  assert.equal(onFile.code, 2);
  assert.match(onFile.err, /^moco3: --results .*a-file: is a file, not a folder/);
  // the sweep's folder under --results a file: that path is named, not --results'
  mkdirSync(join(results, 'holder'));
  writeFileSync(join(results, 'holder', 'batch-size'), '');
  const under = await cli(['sweep', 'batch-size', '--preset', 'smoke', '--results', join(results, 'holder'), '--dry-run']);
  assert.equal(under.code, 2);
  assert.match(under.err, /^moco3: --results \S+holder: \S+holder\/batch-size is a file, not a folder/);
  rmSync(join(results, 'holder'), { recursive: true });
  // sbatch that cannot reach a controller: exit 2, and neither the script nor the sweep folder stays
  const bin = join(results, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho "sbatch: error: Batch job submission failed: Unable to contact slurm controller" >&2\nexit 1\n', { mode: 0o755 });
  writeFileSync(join(bin, 'squeue'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  const sub = await cli(base, { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(sub.code, 2, sub.err);
  assert.match(sub.err, /Unable to contact slurm controller \(nothing was submitted; the script is removed\)\n$/);
  assert.deepEqual(readdirSync(results).sort(), ['a-file', 'bin']);
  // results folders it would have made above the sweep's are not left behind either
  const deep = await cli([...base.slice(0, base.indexOf('--results')), '--results', join(results, 'new', 'deeper'), ...base.slice(base.indexOf('--results') + 2)], { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(deep.code, 2, deep.err);
  assert.deepEqual(readdirSync(results).sort(), ['a-file', 'bin']);
  // a sweep folder that was there: its sweep.yaml (of another preset's runs) is put back as it was
  mkdirSync(join(results, 'batch-size'));
  writeFileSync(join(results, 'batch-size', 'sweep.yaml'), 'name: batch-size\npreset: smoke-earlier\n');
  const again = await cli(base, { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(again.code, 2, again.err);
  assert.equal(readFileSync(join(results, 'batch-size', 'sweep.yaml'), 'utf8'), 'name: batch-size\npreset: smoke-earlier\n');
  assert.deepEqual(readdirSync(join(results, 'batch-size')), ['sweep.yaml']);
  rmSync(join(results, 'batch-size'), { recursive: true });
  // an sbatch that timed out: the controller may have queued the job all the same. Not in the queue (or no
  // answer): what the submission wrote stays, and the line says to look before submitting again; exit 1, as
  // a failure that is no fault of the command (it touched files: bad input, exit 2, touches none)
  writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2\nexit 1\n', { mode: 0o755 });
  const unsure = await cli(base, { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(unsure.code, 1, unsure.err);
  assert.match(
    unsure.err,
    /^moco3: sbatch (\S+\.sbatch): sbatch: error: Batch job submission failed: Socket timed out on send\/recv operation; the job may have been queued all the same: look with `squeue -r --name moco3-batch-size` before submitting again \(the script \1 is kept\)\n$/,
  );
  const kept = readdirSync(join(results, 'batch-size', 'slurm'));
  assert.equal(kept.filter((f) => f.endsWith('.sbatch')).length, 1);
  assert.ok(existsSync(join(results, 'batch-size', 'sweep.yaml')));
  // in the queue: recorded as any submission
  rmSync(join(results, 'batch-size'), { recursive: true });
  // (another job of this sweep, of another script, is not this submission's)
  writeFileSync(join(bin, 'squeue'), `#!/bin/sh\necho "4141|${join(results, 'other.sbatch')}"\nfor f in ${join(results, 'batch-size', 'slurm')}/*.sbatch; do echo "4242|$f"; done\n`, { mode: 0o755 });
  const found = await cli(base, { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(found.code, 0, found.err);
  assert.match(found.err, /^moco3: sbatch \S+: sbatch: error: Batch job submission failed: Socket timed out on send\/recv operation; the queue holds it all the same, as job 4242\n/);
  assert.equal(found.out, '4242\n');
  const jobs = JSON.parse(readFileSync(join(results, 'batch-size', 'slurm', 'jobs.json'), 'utf8'));
  assert.deepEqual(jobs.submissions.map((j: { job_id: string }) => j.job_id), ['4242']);
  // sbatch's answer without --parsable (a wrapper that drops the flag) gives the job id all the same
  writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho "Submitted batch job 4343 on cluster c1"\n', { mode: 0o755 });
  const plain = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--results', join(results, 'plain')], { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(plain.code, 0, plain.err);
  assert.equal(plain.out, '4343\n');
  assert.deepEqual(JSON.parse(readFileSync(join(results, 'plain', 'batch-size', 'slurm', 'jobs.json'), 'utf8')).submissions.map((j: { job_id: string }) => j.job_id), ['4343']);
  // another answer of a submission that succeeded is no job id, and the job may be queued: not recorded as
  // one, not in the queue either: the script is kept and the line says to look
  writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho "queued"\n', { mode: 0o755 });
  writeFileSync(join(bin, 'squeue'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const odd = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--results', join(results, 'odd')], { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(odd.code, 1, odd.err);
  assert.match(odd.err, /^moco3: sbatch \S+\.sbatch: unexpected answer "queued"; the job may have been queued all the same: look with `squeue/);
  assert.equal(existsSync(join(results, 'odd', 'batch-size', 'slurm', 'jobs.json')), false);
  assert.equal(readdirSync(join(results, 'odd', 'batch-size', 'slurm')).filter((f) => f.endsWith('.sbatch')).length, 1);
  // --json: the submission as one object (it was the bare job id), and the dry run's script inside one
  writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho 4343\n', { mode: 0o755 });
  const into = ['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--results', join(results, 'json'), '--json'];
  const dry = await cli([...into, '--dry-run'], { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(dry.code, 0, dry.err);
  const d = JSON.parse(dry.out) as { type: string; script: string };
  assert.equal(d.type, 'sbatch');
  assert.match(d.script, /^#!\/bin\/bash\n[^]*#SBATCH --array=1-4\n/);
  const js = await cli(into, { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(js.code, 0, js.err);
  const o = JSON.parse(js.out) as { type: string; job_id: string; script: string; runs: Record<string, string>; skipped: string[] };
  assert.deepEqual([o.type, o.job_id, Object.keys(o.runs), o.skipped], ['submitted', '4343', ['1', '2', '3', '4'], []]);
  assert.ok(existsSync(o.script), o.script);
});

test('--launcher slurm: a run queued by an earlier submission is found by its id when other flags number it otherwise (--seeds 1 after --seeds 0,1)', async () => {
  const results = tempDir('moco3-launch-');
  const slurm = join(results, 'batch-size', 'slurm');
  // sbatch hands out 101, 102, ...; squeue shows every task of every recorded submission pending
  const bin = join(results, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'sbatch'), `#!/bin/sh\nn=$(cat ${bin}/next 2>/dev/null || echo 101)\necho $((n + 1)) > ${bin}/next\necho $n\n`, { mode: 0o755 });
  writeFileSync(
    join(bin, 'squeue'),
    `#!${process.execPath}\nconst j = JSON.parse(require('fs').readFileSync(${JSON.stringify(join(slurm, 'jobs.json'))}, 'utf8'));\n` +
      "for (const s of j.submissions) for (const k of Object.keys(s.runs)) console.log(`${s.job_id}_${k}|PENDING`);\n",
    { mode: 0o755 },
  );
  const env = { PATH: `${bin}:${process.env.PATH}` };
  const base = ['sweep', 'batch-size', '--preset', 'smoke', '--launcher', 'slurm', '--results', results];
  const first = await cli([...base, '--seeds', '0,1'], env);
  assert.equal(first.code, 0, first.err);
  assert.equal(first.out, '101\n');
  const jobs = () => JSON.parse(readFileSync(join(slurm, 'jobs.json'), 'utf8')).submissions as { job_id: string; runs: Record<string, string> }[];
  const queued = jobs()[0]!.runs;
  // seed 1's runs, numbered 1, 2, ... by --seeds 1, are the tasks the first submission gave them
  const plan = await cli(['plan', 'batch-size', '--preset', 'smoke', '--results', results, '--seeds', '1', '--json'], env);
  assert.equal(plan.code, 0, plan.err);
  const planned = JSON.parse(plan.out).runs as { id: string; slurm: { job: string; state: string } | null }[];
  assert.ok(planned.length > 0);
  for (const r of planned) {
    const task = Object.entries(queued).find(([, id]) => id === r.id)![0];
    assert.deepEqual(r.slurm, { job: `101_${task}`, state: 'PENDING' }, r.id);
  }
  // and a submission of seed 1 alone submits nothing
  const again = await cli([...base, '--seeds', '1'], env);
  assert.equal(again.code, 0, again.err);
  assert.match(again.err, /nothing to submit: every run is completed, running or queued \(1 pending as 101_\d+, /);
  assert.equal(jobs().length, 1);
});

test('--launcher slurm: with squeue failing, the runs submitted before are neither submitted again nor shown as not queued', async () => {
  const results = tempDir('moco3-launch-');
  const slurm = join(results, 'batch-size', 'slurm');
  const bin = join(results, 'bin');
  mkdirSync(bin);
  // an sbatch that warns as it submits: the warning is passed on
  writeFileSync(join(bin, 'sbatch'), `#!/bin/sh\nn=$(cat ${bin}/next 2>/dev/null || echo 101)\necho $((n + 1)) > ${bin}/next\necho "sbatch: warning: time limit cut to the partition's" >&2\necho $n\n`, { mode: 0o755 });
  const squeue = (body: string) => writeFileSync(join(bin, 'squeue'), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  squeue('echo "squeue: error: Socket timed out on send/recv operation" >&2; exit 1');
  const env = { PATH: `${bin}:${process.env.PATH}` };
  const base = ['sweep', 'batch-size', '--preset', 'smoke', '--launcher', 'slurm', '--results', results];
  // the first submission: nothing submitted before, so nothing to ask the queue about
  const first = await cli(base, env);
  assert.equal(first.code, 0, first.err);
  assert.equal(first.out, '101\n');
  assert.match(first.err, /^moco3: sbatch: warning: time limit cut to the partition's\n/m);
  const before = readdirSync(slurm).sort();
  // again, the queue unanswered: exit 1 (not bad input), one line, nothing written
  const again = await cli(base, env);
  assert.equal(again.code, 1, again.err);
  assert.equal(
    again.err,
    'moco3: sweep batch-size: squeue: error: Socket timed out on send/recv operation: whether the tasks submitted before for runs 1 as 101_1, 2 as 101_2, 3 as 101_3, 4 as 101_4 are still queued is unknown, and submitting them again could train them twice: submit again once squeue answers (nothing was submitted)\n',
  );
  assert.deepEqual(readdirSync(slurm).sort(), before);
  // a dry run prints the script it would submit, saying the same in a note
  const dry = await cli([...base, '--dry-run'], env);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /^#!\/bin\/bash\n[^]*#SBATCH --array=1-4\n/);
  assert.match(dry.err, /^moco3: note: squeue: error: Socket timed out on send\/recv operation: whether the tasks submitted before for runs 1 as 101_1, 2 as 101_2, 3 as 101_3, 4 as 101_4 are still queued is unknown; the script below submits them again\n/m);
  assert.deepEqual(readdirSync(slurm).sort(), before);
  // plan says the state is unknown, not "not queued"
  const plan = await cli(['plan', 'batch-size', '--preset', 'smoke', '--results', results], env);
  assert.equal(plan.code, 0, plan.err);
  assert.match(plan.err, /^moco3: note: squeue: error: Socket timed out on send\/recv operation: whether the submitted tasks are still queued is unknown \(unknown below\)\n$/);
  assert.equal((plan.out.match(/101_\d unknown/g) ?? []).length, 4, plan.out);
  assert.ok(!plan.out.includes('not queued'), plan.out);
  const pj = JSON.parse((await cli(['plan', 'batch-size', '--preset', 'smoke', '--results', results, '--json'], env)).out);
  assert.equal(pj.slurm_error, 'squeue: error: Socket timed out on send/recv operation');
  // sacct answering for them: a task it calls preempted or lost with its node may be queued again by Slurm
  // (--requeue), and stays unknown; one it calls completed or failed is out of the queue
  writeFileSync(join(bin, 'sacct'), '#!/bin/sh\nprintf "101_1|PREEMPTED\\n101_2|NODE_FAIL\\n101_3|FAILED\\n101_4|CANCELLED by 0\\n"\n', { mode: 0o755 });
  const acct = await cli(base, env);
  assert.equal(acct.code, 1, acct.err);
  assert.match(acct.err, /whether the tasks submitted before for runs 1 as 101_1, 2 as 101_2 are still queued is unknown, /);
  assert.deepEqual(readdirSync(slurm).sort(), before);
  const acctPlan = await cli(['plan', 'batch-size', '--preset', 'smoke', '--results', results], env);
  assert.match(acctPlan.out, /101_1 unknown[^]*101_2 unknown[^]*101_3 FAILED[^]*101_4 CANCELLED/, acctPlan.out);
  rmSync(join(bin, 'sacct'));
  // squeue absent: the same
  rmSync(join(bin, 'squeue'));
  const none = await cli(base, { PATH: bin });
  assert.equal(none.code, 1, none.err);
  assert.match(none.err, /^moco3: sweep batch-size: squeue: not found: whether the tasks/);
  // squeue that answers: the tasks it does not show are out of the queue, and are submitted again
  squeue('exit 0');
  const answered = await cli(base, env);
  assert.equal(answered.code, 0, answered.err);
  assert.equal(answered.out, '102\n');
  rmSync(results, { recursive: true, force: true });
});

/**
 * `moco3 sweep lr --preset smoke --launcher slurm` into `results` as a process of its own (the submission lock is
 * between processes; --lock-timeout is process-wide), with the fake Slurm commands of `bin` first on the PATH.
 */
function submitLr(results: string, bin: string, extra: string[] = []): Promise<{ code: number | null; out: string; err: string }> {
  const entry = join(import.meta.dirname, 'fixtures', 'cli.ts');
  const p = spawn(process.execPath, ['--import', 'tsx', entry, 'sweep', 'lr', '--preset', 'smoke', '--launcher', 'slurm', '--no-baselines', ...extra, '--results', results], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  return new Promise((done) => p.on('close', (code) => done({ code, out, err })));
}

test('--launcher slurm: two submissions of one sweep at once submit its runs once (each saw none of the other\'s queued, and both submitted all)', async () => {
  const results = tempDir('moco3-launch-');
  const slurm = join(results, 'lr', 'slurm');
  // sbatch takes a second and hands out 201, 202, ...; squeue shows every recorded task pending
  const bin = join(results, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'sbatch'), `#!/bin/sh\nsleep 1\nn=$(cat ${bin}/next 2>/dev/null || echo 201)\necho $((n + 1)) > ${bin}/next\necho $n\n`, { mode: 0o755 });
  writeFileSync(
    join(bin, 'squeue'),
    `#!${process.execPath}\nconst f = ${JSON.stringify(join(slurm, 'jobs.json'))};\nif (require('fs').existsSync(f)) for (const s of JSON.parse(require('fs').readFileSync(f, 'utf8')).submissions) for (const k of Object.keys(s.runs)) console.log(\`\${s.job_id}_\${k}|PENDING\`);\n`,
    { mode: 0o755 },
  );
  writeFileSync(join(bin, 'sacct'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  // the lock of a submission that died (its pid gone) is no other submission's: taken over
  mkdirSync(join(results, 'lr', '.submit'), { recursive: true });
  const now = new Date().toISOString();
  writeFileSync(join(results, 'lr', '.submit', '.lock'), JSON.stringify({ pid: 2 ** 22 + 7, host: hostname(), proc_start: null, since: now, sweep: 'lr submission', heartbeat: now, timeout_s: 600 }));
  const both = await Promise.all([submitLr(results, bin), submitLr(results, bin)]);
  for (const r of both) assert.equal(r.code, 0, r.err);
  const subs = JSON.parse(readFileSync(join(slurm, 'jobs.json'), 'utf8')).submissions as { job_id: string; runs: Record<string, string> }[];
  assert.deepEqual(subs.map((x) => x.job_id), ['201'], JSON.stringify(subs));
  // the other waited for it, then found every run queued
  const second = both.find((r) => r.out === '')!;
  assert.ok(second, both.map((r) => r.out).join(' | '));
  assert.match(second.err, /nothing to submit: every run is completed, running or queued \(1 pending as 201_1, /);
  assert.equal(readdirSync(slurm).filter((f) => f.endsWith('.sbatch')).length, 1);
  // released: no lock left behind
  assert.equal(existsSync(join(results, 'lr', '.submit', '.lock')), false);
});

test('--launcher slurm: --lock-timeout judges the submission lock of another host, as it judges the runs\' (it was checked, not applied)', async () => {
  const results = tempDir('moco3-launch-');
  const bin = join(results, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho 301\n', { mode: 0o755 });
  // a submission on another host whose heartbeat stopped 30 s ago: stale under a 10 s timeout, live under the default 600 s
  mkdirSync(join(results, 'lr', '.submit'), { recursive: true });
  const beat = new Date(Date.now() - 30_000).toISOString();
  writeFileSync(join(results, 'lr', '.submit', '.lock'), JSON.stringify({ pid: 1, host: 'another-host', proc_start: null, since: beat, sweep: 'lr submission', heartbeat: beat, timeout_s: 10 }));
  const r = await submitLr(results, bin, ['--lock-timeout', '10']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, '301\n');
  assert.doesNotMatch(r.err, /waiting for another submission/);
});

test('a Slurm task refused for a changed plan records it in tasks.jsonl, beside the other tasks\' rows', async () => {
  const results = tempDir('moco3-launch-');
  const env = { SLURM_ARRAY_JOB_ID: '41', SLURM_ARRAY_TASK_ID: '2', SLURM_JOB_ID: '43', SLURM_RESTART_COUNT: '1' };
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    const slurm = join(results, 'batch-size', 'slurm');
    mkdirSync(slurm, { recursive: true });
    const r = await cli(['sweep', 'batch-size', '--results', results, '--run-index', '2', '--expect-hash', 'deadbeef']);
    assert.equal(r.code, 2, r.err);
    const rows = readFileSync(join(slurm, 'tasks.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(rows.length, 1);
    assert.equal(rows[0].event, 'refused');
    assert.equal(rows[0].task, '41_2');
    assert.equal(rows[0].job_id, '43');
    assert.equal(rows[0].restarts, 1);
    assert.equal(rows[0].index, 2);
    assert.equal(rows[0].submitted_hash, 'deadbeef');
    assert.match(rows[0].hash, /^[0-9a-f]{8}$/);
    assert.equal(`moco3: ${rows[0].error}\n`, r.err, 'the row holds the line the task printed');
    // a task whose run is gone from the plan (a value taken out of the grid since) is a changed plan as well
    const gone = await cli(['sweep', 'batch-size', '--results', results, '--run-index', '9', '--expect-hash', 'deadbeef']);
    assert.equal(gone.code, 2, gone.err);
    assert.equal(gone.err, 'moco3: --expect-hash deadbeef: run 9 of batch-size is gone: the sweep has 4 runs now, not the one submitted; the sweep file, its flags or moco3 changed since: submit again\n');
    const last = JSON.parse(readFileSync(join(slurm, 'tasks.jsonl'), 'utf8').trim().split('\n')[1]!);
    assert.deepEqual([last.event, last.index, last.run, last.hash, `moco3: ${last.error}\n`], ['refused', 9, null, null, gone.err]);
    // a sweep folder without slurm/ (no submission made it): the refusal writes nothing
    rmSync(slurm, { recursive: true });
    const again = await cli(['sweep', 'batch-size', '--results', results, '--run-index', '2', '--expect-hash', 'deadbeef']);
    assert.equal(again.code, 2);
    assert.equal(existsSync(slurm), false);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(results, { recursive: true, force: true });
  }
});

test('--launcher slurm: the libuv pool size moco3 chose from this machine\'s cores does not go to the tasks; one the user set does', async () => {
  const results = tempDir('moco3-launch-env-');
  try {
    const bin = join(results, 'bin');
    mkdirSync(bin);
    const seen = join(results, 'env.txt');
    writeFileSync(join(bin, 'sbatch'), `#!/bin/sh\nenv | grep -E '^(UV_THREADPOOL_SIZE|MOCO3_UV_THREADPOOL_DEFAULT)=' > ${seen}\necho 99\n`, { mode: 0o755 });
    writeFileSync(join(bin, 'squeue'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const submit = (sweepResults: string, env: Record<string, string | undefined>) =>
      cli(['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--results', sweepResults], { PATH: `${bin}:${process.env.PATH}`, ...env });
    // as bin/moco3.js leaves it when the user set none: 64 from this machine's cores
    const chosen = await submit(join(results, 'a'), { UV_THREADPOOL_SIZE: '64', MOCO3_UV_THREADPOOL_DEFAULT: '64' });
    assert.equal(chosen.code, 0, chosen.err);
    assert.equal(readFileSync(seen, 'utf8'), '');
    // the user's own
    const own = await submit(join(results, 'b'), { UV_THREADPOOL_SIZE: '6', MOCO3_UV_THREADPOOL_DEFAULT: undefined });
    assert.equal(own.code, 0, own.err);
    assert.equal(readFileSync(seen, 'utf8'), 'UV_THREADPOOL_SIZE=6\n');
  } finally {
    rmSync(results, { recursive: true, force: true });
  }
});

test('--launcher slurm: the tasks run moco3 by its real path, not through the link npx ran it by', async () => {
  const dir = tempDir('moco3-launch-link-');
  const argv1 = process.argv[1];
  try {
    const real = join(dir, 'clone', 'bin', 'moco3.js');
    mkdirSync(join(dir, 'clone', 'bin'), { recursive: true });
    writeFileSync(real, '');
    mkdirSync(join(dir, 'npx-cache', '.bin'), { recursive: true });
    symlinkSync(real, join(dir, 'npx-cache', '.bin', 'moco3'));
    process.argv[1] = join(dir, 'npx-cache', '.bin', 'moco3');
    const r = await cli(['sweep', 'batch-size', '--preset', 'gpu', '--launcher', 'slurm', '--results', join(dir, 'r'), '--dry-run']);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(` ${real} sweep batch-size `), r.out);
    assert.ok(!r.out.includes('npx-cache'), 'the link is not in the script');
  } finally {
    process.argv[1] = argv1;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two scripts written in the same second keep both; a jobs.json entry without its job id is said, not read', () => {
  const dir = tempDir('moco3-launch-jobs-');
  try {
    const plan = planSweep(loadSweep('batch-size'), { preset: 'gpu', results: dir });
    const at = new Date('2026-01-02T03:04:05Z');
    const first = writeScript(plan, 'first\n', at);
    const second = writeScript(plan, 'second\n', at);
    assert.deepEqual([first, second].map((p) => p.slice(join(dir, 'batch-size', 'slurm').length + 1)), ['20260102-030405.sbatch', '20260102-030405-2.sbatch']);
    assert.equal(readFileSync(first, 'utf8'), 'first\n');
    writeFileSync(join(dir, 'batch-size', 'slurm', 'jobs.json'), JSON.stringify({ sweep: 'batch-size', submissions: [{ job_id: '7', runs: { 1: 'a' } }, { runs: { 2: 'b' } }] }));
    assert.throws(() => readJobs(plan), /jobs\.json: submissions\[1\]: expected \{job_id, submitted, script, runs: \{index: run id\}\}, got \{"runs":\{"2":"b"\}\}; it records the Slurm jobs/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the runs' Slurm states: a run's newest task, squeue's live state before sacct's, a failed squeue said in its first line", () => {
  const dir = tempDir('moco3-launch-states-');
  const path = process.env.PATH;
  try {
    const plan = planSweep(loadSweep('batch-size'), { preset: 'gpu', results: dir });
    const [a, b] = plan.runs;
    mkdirSync(slurmDir(plan), { recursive: true });
    // run 1 submitted again after its first task failed; run 2 once
    recordSubmission(plan, { job_id: '101', submitted: '', script: 'a.sbatch', runs: { 1: a!.id, 2: b!.id } });
    recordSubmission(plan, { job_id: '102', submitted: '', script: 'b.sbatch', runs: { 1: a!.id } });
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'squeue'), '#!/bin/sh\necho "102_1|RUNNING"\n', { mode: 0o755 });
    // accounting lags the controller: its PENDING of a task squeue shows running is not taken
    writeFileSync(join(bin, 'sacct'), '#!/bin/sh\nprintf "101_1|FAILED\\n101_2|COMPLETED\\n102_1|PENDING\\n"\n', { mode: 0o755 });
    process.env.PATH = `${bin}:${path}`;
    const { jobs, queueError } = runJobs(plan);
    assert.deepEqual(jobs.slice(0, 3), [{ job: '102_1', state: 'RUNNING' }, { job: '101_2', state: 'COMPLETED' }, null]);
    assert.equal(queueError, null);
    // with squeue answering, a task it does not show is out of the queue, whatever sacct says ended it
    writeFileSync(join(bin, 'sacct'), '#!/bin/sh\nprintf "101_1|FAILED\\n101_2|PREEMPTED\\n102_1|NODE_FAIL\\n"\n', { mode: 0o755 });
    writeFileSync(join(bin, 'squeue'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    assert.deepEqual(runJobs(plan).jobs.slice(0, 2), [{ job: '102_1', state: 'NODE_FAIL' }, { job: '101_2', state: 'PREEMPTED' }]);
    writeFileSync(join(bin, 'squeue'), '#!/bin/sh\necho "squeue: error: Unable to contact slurm controller" >&2\necho "(more detail)" >&2\nexit 1\n', { mode: 0o755 });
    assert.equal(runJobs(plan).queueError, 'squeue: error: Unable to contact slurm controller');
  } finally {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
});
