/**
 * `moco3 sweep` beyond one process: `--launcher slurm` (submit the plan as a Slurm array job,
 * src/sweep/slurm.ts), `--run-index N` (train one planned run: what each array task runs) and `--agent`
 * (take runs from a results folder shared with other agents until none is left, src/runfolder/lock.ts).
 */
import { Command, Option } from 'commander';
import { intFlag, positiveFlag } from './numbers.ts';
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { notInputFault } from '../config/errors.ts';
import { SweepError } from '../sweep/file.ts';
import { LAUNCHER_FLAGS, parseLauncherFlags, resolveLauncher, type LauncherKey, type LauncherSettings } from '../sweep/launcher.ts';
import { acquireLock, describeHolder, LOCK_NAME, releaseLock, setLockTimeout, staleAfterS } from '../runfolder/lock.ts';
import { missingAncestors, removeEmptyFolders, shellQuote, writeFileAtomic } from '../engine/files.ts';
import type { SweepPlan } from '../sweep/plan.ts';
import { writeResolvedSweep } from '../sweep/resolved.ts';
import type { RunSweepOptions, SweepResult } from '../sweep/runner.ts';
import {
  arraySpec,
  logTask,
  QUEUED_STATES,
  recordSubmission,
  commandFailure,
  requeueTask,
  runJobs,
  sbatchScript,
  slurmDir,
  slurmTask,
  SubmissionUnsure,
  submitScript,
  queuedJobOf,
  jobName,
  taskName,
  writeScript,
  type TaskContext,
} from '../sweep/slurm.ts';
import { isDone, readRunState } from '../runfolder/state.ts';
import type { SweepFlags } from './plan.ts';
import { jsonLine } from '../runfolder/metrics.ts';

export interface LaunchFlags {
  launcher?: string;
  partition?: string;
  gpusPerRun?: string;
  cpusPerRun?: string;
  mem?: string;
  time?: string;
  maxParallel?: string;
  signalS?: string;
  sbatchArg: string[];
  runIndex?: string;
  expectHash?: string;
  agent?: boolean;
  lockTimeout?: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function addLaunchOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--launcher <name>', 'where the runs train: here (local) or as a Slurm array job (slurm)').choices(['local', 'slurm']))
    .option(`${LAUNCHER_FLAGS.partition} <name>`, 'slurm: partition')
    .option(`${LAUNCHER_FLAGS.gpus_per_run} <n>`, 'slurm: GPUs of each run (--gres=gpu:n)')
    .option(`${LAUNCHER_FLAGS.cpus_per_run} <n>`, 'slurm: CPUs of each run')
    .option(`${LAUNCHER_FLAGS.mem} <size>`, 'slurm: memory of each run, e.g. 64G')
    .option(`${LAUNCHER_FLAGS.time} <limit>`, 'slurm: time limit of each task, e.g. 24:00:00 (a run that needs longer is requeued and resumes)')
    .option(`${LAUNCHER_FLAGS.max_parallel} <n>`, 'slurm: at most n runs at a time (%n)')
    .option(`${LAUNCHER_FLAGS.signal_s} <s>`, 'slurm: USR1 this many seconds before the time limit: checkpoint and requeue (default 300)')
    .option(`${LAUNCHER_FLAGS.sbatch_args} <option>`, 'slurm: another sbatch option for the script, e.g. --sbatch-arg=--account=vision; repeatable', collect, [])
    .option('--run-index <n>', 'train only the run with this index in the plan (what each Slurm array task runs)')
    .addOption(new Option('--expect-hash <hash>', 'with --run-index: refuse when the run resolves to another config').hideHelp())
    .option('--agent', 'take the next run that is neither completed nor locked, until none is left (several agents may share a results folder)')
    .option('--lock-timeout <s>', 'a lock of another host is stale when its heartbeat is older than this (default 600, or MOCO3_LOCK_TIMEOUT)');
}

const fail = (m: string) => new SweepError(m);


/** The flags that make the plan (`moco3 plan` takes them all; a task resolves the same plan from them). */
function planFlags(f: SweepFlags): string[] {
  const out: string[] = [];
  if (f.preset !== undefined) out.push('--preset', f.preset);
  if (f.optimizer !== undefined) out.push('--optimizer', f.optimizer);
  for (const s of f.set) out.push('--set', s);
  if (f.seeds !== undefined) out.push('--seeds', f.seeds);
  if (f.data !== undefined) out.push('--data', f.data);
  if (f.backend !== undefined) out.push('--backend', f.backend);
  out.push('--results', f.results);
  return out;
}

/**
 * The script this process runs, by its real path: `npx moco3` runs it through a link in npx's cache, which
 * the tasks should not depend on.
 */
function ownScript(): string {
  const script = resolve(process.argv[1]!);
  try {
    return realpathSync(script);
  } catch {
    return script;
  }
}

/** The plan flags of the submitting command, for each task to resolve the same plan. */
function taskCommand(arg: string, f: SweepFlags & { baselines?: boolean; lockTimeout?: string }): string[] {
  const out = [process.execPath, ...process.execArgv, ownScript(), 'sweep', arg, ...planFlags(f)];
  if (f.baselines === false) out.push('--no-baselines');
  if (f.lockTimeout !== undefined) out.push('--lock-timeout', f.lockTimeout);
  return out;
}

/** The Slurm settings of `--launcher slurm`, its flags checked (before any file is probed or written). */
export function slurmSettings(plan: SweepPlan, f: LaunchFlags): LauncherSettings {
  const flagValues: Partial<Record<LauncherKey, string | string[] | undefined>> = {
    partition: f.partition,
    gpus_per_run: f.gpusPerRun,
    cpus_per_run: f.cpusPerRun,
    mem: f.mem,
    time: f.time,
    max_parallel: f.maxParallel,
    signal_s: f.signalS,
    sbatch_args: f.sbatchArg,
  };
  // the flags of one task or agent belong to the command the array job runs, not to the submission
  if (f.runIndex !== undefined) throw fail(`--run-index ${f.runIndex}: a Slurm task's own flag (the array job gives each task its index); not with --launcher slurm`);
  if (f.expectHash !== undefined) throw fail(`--expect-hash ${f.expectHash}: a Slurm task's own flag; not with --launcher slurm`);
  if (f.agent) throw fail('--agent: takes runs itself on this machine; not with --launcher slurm');
  // the submission lock's staleness on another host, as the runs' locks take it (prepareLaunch's, locally)
  if (f.lockTimeout !== undefined) setLockTimeout(positiveFlag('--lock-timeout', f.lockTimeout));
  return resolveLauncher(plan.spec.launcher, parseLauncherFlags(flagValues, fail), fail, plan.spec.file);
}

/** How long a submission waits for another submission of the same sweep to finish (its squeue, sacct and sbatch take up to 15 s each). */
export const SUBMIT_WAIT_S = 120;

/**
 * `--launcher slurm`: write the array job's script for the runs neither done nor running nor queued, and submit
 * it. Two submissions of one sweep at once (a command run twice, from two shells or hosts) would each see no
 * task of the other's queued and submit every run twice: a submission holds the sweep's `.submit` lock from its
 * read of the queue to its record in jobs.json, and another waits for it (up to SUBMIT_WAIT_S). A dry run
 * writes nothing and takes no lock.
 */
export async function submitSlurm(arg: string, plan: SweepPlan, f: SweepFlags & LaunchFlags & { baselines?: boolean }, settings: LauncherSettings): Promise<void> {
  if (f.dryRun) return submitUnlocked(arg, plan, f, settings);
  const dir = submitLockDir(plan);
  // the folders the lock makes (the sweep's too, at its first submission): removed with the rest of what a
  // failed submission made
  const made = missingAncestors(join(dir, LOCK_NAME));
  const t0 = Date.now();
  let said = false;
  for (let held = acquireLock(dir, `${plan.id} submission`); held !== null; held = acquireLock(dir, `${plan.id} submission`)) {
    if (Date.now() - t0 > SUBMIT_WAIT_S * 1000) {
      removeEmptyFolders(made);
      throw new SweepError(
        `sweep ${plan.id}: another submission of it, ${describeHolder(held, dir)}, has not finished in ${SUBMIT_WAIT_S} s; run this command again once it has ` +
          `(its runs are then queued, and this one submits the rest; a submission killed on another host holds ${join(dir, LOCK_NAME)} until ${staleAfterS(held)} s after its last heartbeat, --lock-timeout)`,
      );
    }
    if (!said) process.stderr.write(`sweep ${plan.id}: waiting for another submission of it to finish (${describeHolder(held, dir)})\n`);
    said = true;
    await new Promise((r) => setTimeout(r, 250));
  }
  let done = false;
  try {
    await submitUnlocked(arg, plan, f, settings);
    done = true;
  } finally {
    releaseLock(dir);
    if (!done) removeEmptyFolders(made);
  }
}

/** The folder of a sweep's submission lock: `<sweep>/.submit/.lock` (a hidden folder, which reports pass over). */
export const submitLockDir = (plan: Pick<SweepPlan, 'dir'>): string => join(plan.dir, '.submit');

async function submitUnlocked(arg: string, plan: SweepPlan, f: SweepFlags & LaunchFlags & { baselines?: boolean }, settings: LauncherSettings): Promise<void> {
  const states = plan.runs.map((r) => readRunState(r.dir));
  const { jobs, queueError } = runJobs(plan);
  const skipped: string[] = [];
  const indices: number[] = [];
  const unknown: string[] = [];
  plan.runs.forEach((r, i) => {
    const s = states[i]!;
    const job = jobs[i];
    if (isDone(s.state) || s.state === 'running') skipped.push(`${r.index} ${s.state}`);
    else if (job?.state && QUEUED_STATES.has(job.state)) skipped.push(`${r.index} ${job.state.toLowerCase()} as ${job.job}`);
    else {
      // submitted before, and squeue could not say whether that task is still queued: submitting it again
      // could train the run twice (two tasks taking turns on its lock, each holding a node)
      if (job && job.state === null && queueError) unknown.push(`${r.index} as ${job.job}`);
      indices.push(r.index);
    }
  });
  if (unknown.length) {
    const one = unknown.length === 1;
    const them = one ? 'it' : 'them';
    const what = `${queueError}: whether the task${one ? '' : 's'} submitted before for run${one ? '' : 's'} ${unknown.join(', ')} ${one ? 'is' : 'are'} still queued is unknown`;
    // a dry run shows the script all the same, saying so
    if (!f.dryRun) throw notInputFault(new SweepError(`sweep ${plan.id}: ${what}, and submitting ${them} again could train ${them} twice: submit again once squeue answers (nothing was submitted)`));
    process.stderr.write(`moco3: note: ${what}; the script below submits ${them} again\n`);
  }
  if (!indices.length) {
    // no script: an array of no task is no job
    process.stderr.write(`sweep ${plan.id}: nothing to submit: every run is completed, running or queued (${skipped.join(', ')})\n`);
    // --json: no job (and for a dry run, no script)
    if (f.json) process.stdout.write(`${jsonLine(f.dryRun ? { type: 'sbatch', script: null, skipped } : { type: 'submitted', job_id: null, script: null, runs: {}, skipped })}\n`);
    // the task that ends a sweep computes its baselines; one killed meanwhile (its time limit) leaves them to this
    if (f.baselines !== false && states.every((s) => isDone(s.state) || s.state === 'failed')) {
      const { missingBaselineSeeds } = await import('../sweep/baselines.ts');
      const missing = missingBaselineSeeds(plan);
      if (missing.length) {
        process.stderr.write(
          `  baselines.json lacks seed${missing.length === 1 ? '' : 's'} ${missing.join(', ')}: the same command without --launcher slurm computes ${missing.length === 1 ? 'it' : 'them'} here (it trains nothing: every run is done)\n`,
        );
      }
    }
    return;
  }
  // a run to resume whose checkpoint is damaged stops the submission, as it stops a sweep run here, before
  // anything is written (its task would stop on it on the cluster, the way out in its log alone)
  const { checkSweepResumes } = await import('../sweep/resume.ts');
  checkSweepResumes(indices.map((i) => ({ run: plan.runs[i - 1]!, before: states[i - 1]! })));
  const script = sbatchScript({ plan, indices, settings, command: taskCommand(arg, f), cwd: process.cwd() });
  if (f.dryRun) {
    // what the submission would say of the folder's earlier runs, said here too
    const { plannedPresetNote } = await import('../sweep/resolved.ts');
    const note = plannedPresetNote(plan);
    if (note) process.stderr.write(`moco3: note: ${note}\n`);
    process.stdout.write(f.json ? `${jsonLine({ type: 'sbatch', script, skipped })}\n` : script);
    return;
  }
  // a submission that fails leaves nothing behind: what it wrote is removed (a sweep folder it made, too),
  // and a sweep.yaml it replaced is put back as it was
  const resolved = join(plan.dir, 'sweep.yaml');
  // the folders above the sweep's (results/) too, when this submission makes them
  const made = [...missingAncestors(plan.dir), plan.dir, slurmDir(plan), resolved].filter((p) => !existsSync(p));
  const previous = existsSync(resolved) ? readFileSync(resolved) : null;
  const notes = writeResolvedSweep(plan);
  let path: string | null = null;
  let jobId: string;
  // a submission that timed out may be in the queue all the same: what it wrote is then kept
  let keep = false;
  try {
    path = writeScript(plan, script);
    try {
      const sub = submitScript(path);
      jobId = sub.id;
      // sbatch's warnings (a time limit cut to the partition's, a deprecated option) are the user's to see
      for (const line of sub.said.split('\n').filter(Boolean)) process.stderr.write(`moco3: ${line.startsWith('sbatch') ? line : `sbatch: ${line}`}\n`);
    } catch (e) {
      if (!(e instanceof SubmissionUnsure)) throw e;
      // found in the queue, it is recorded as any other; else the user looks before submitting the runs twice
      const found = queuedJobOf(plan, path);
      if (found === null) {
        keep = true;
        // no fault of the command (exit 1, not 2): it was right, and what it wrote is kept
        throw notInputFault(new SweepError(`${e.message}; the job may have been queued all the same: look with \`squeue -r --name ${jobName(plan)}\` before submitting again (the script ${path} is kept)`));
      }
      process.stderr.write(`moco3: ${e.message}; the queue holds it all the same, as job ${found}\n`);
      jobId = found;
    }
  } catch (e) {
    if (!keep) {
      if (path) rmSync(path, { force: true });
      if (previous) writeFileAtomic(resolved, previous);
      for (const p of [...made].reverse()) if (existsSync(p) && (!statSync(p).isDirectory() || readdirSync(p).length === 0)) rmSync(p, { recursive: true, force: true });
      // the line names the script sbatch refused, which is gone now
      if (path && e instanceof SweepError && e.message.startsWith(`sbatch ${path}: `)) throw new SweepError(`${e.message} (nothing was submitted; the script is removed)`);
    }
    throw e;
  }
  const runs: Record<string, string> = {};
  for (const i of indices) runs[String(i)] = plan.runs[i - 1]!.id;
  recordSubmission(plan, { job_id: jobId, submitted: new Date().toISOString(), script: path, runs });
  const logs = slurmDir(plan);
  // stdout: the job id alone, for a script (--json: an object of it, the script and the runs by array index)
  process.stdout.write(f.json ? `${jsonLine({ type: 'submitted', job_id: jobId, script: path, runs, skipped })}\n` : `${jobId}\n`);
  process.stderr.write(
    [
      `sweep ${plan.id}: submitted Slurm array job ${jobId}: runs ${arraySpec(indices, null)} of ${plan.runs.length}` +
        `${settings.max_parallel !== null ? `, at most ${settings.max_parallel} at a time` : ''}${skipped.length ? ` (not submitted: ${skipped.join(', ')})` : ''}`,
      ...notes.map((n) => `  note: ${n}`),
      `  script: ${path}`,
      `  follow: squeue -r -j ${jobId}    sacct -j ${jobId}    tail -f ${shellQuote(`${logs}/${jobId}_<run index>.log`)}`,
      // the plan of this submission: the same flags (the slurm column shows each task)
      `  status: ${['moco3', 'plan', arg, ...planFlags(f)].map(shellQuote).join(' ')}`,
      '',
    ].join('\n'),
  );
}

export interface Launch {
  /** run the sweep the way the flags say (all runs, one run, or as an agent) */
  run(once: (extra: Partial<RunSweepOptions>) => Promise<SweepResult>): Promise<SweepResult>;
  /** USR1: checkpoint, then requeue this Slurm task */
  onUsr1: (() => void) | null;
  /** the work after the runs (the baselines) was stopped: a Slurm task warned by USR1 requeues itself for it */
  afterStopped?: () => void;
  /** whether this Slurm task has requeued itself: Slurm starts it again, no command is for the user to run */
  requeued?: () => boolean;
}

/** The plan's run of --run-index, checked against --expect-hash. */
function runIndex(plan: SweepPlan, f: LaunchFlags): number {
  const i = intFlag('--run-index', f.runIndex!, 1);
  const run = plan.runs[i - 1];
  if (run === undefined && f.expectHash === undefined) throw fail(`--run-index ${f.runIndex}: the sweep ${plan.id} has ${plan.runs.length} runs`);
  if (f.expectHash !== undefined && f.expectHash !== run?.hash) {
    const now = run ? `now resolves to config ${run.hash} (${run.id})` : `is gone: the sweep has ${plan.runs.length} runs now`;
    const e = fail(
      `--expect-hash ${f.expectHash}: run ${i} of ${plan.id} ${now}, not the one submitted; ` +
        'the sweep file, its flags or moco3 changed since: submit again',
    );
    // a Slurm task of the submission records its refusal beside the others' start, requeue and end (the one
    // write of a refused command: the record of the job); a record that cannot be written leaves the refusal its line
    const task = slurmTask();
    try {
      if (task && existsSync(slurmDir(plan))) {
        logTask(plan, task, 'refused', { index: i, run: run?.id ?? null, submitted_hash: f.expectHash, hash: run?.hash ?? null, error: e.message });
      }
    } catch {
      /* the Slurm log has the line */
    }
    throw e;
  }
  return i;
}

/** `beforeRequeue`: told just before a Slurm task requeues itself (Slurm then ends this start of it). */
export function prepareLaunch(plan: SweepPlan, f: LaunchFlags, requestStop: () => void, beforeRequeue: () => void = () => {}): Launch {
  const slurmOnly: [string, unknown][] = [
    [LAUNCHER_FLAGS.partition, f.partition],
    [LAUNCHER_FLAGS.gpus_per_run, f.gpusPerRun],
    [LAUNCHER_FLAGS.cpus_per_run, f.cpusPerRun],
    [LAUNCHER_FLAGS.mem, f.mem],
    [LAUNCHER_FLAGS.time, f.time],
    [LAUNCHER_FLAGS.max_parallel, f.maxParallel],
    [LAUNCHER_FLAGS.signal_s, f.signalS],
    [LAUNCHER_FLAGS.sbatch_args, f.sbatchArg.length ? f.sbatchArg : undefined],
  ];
  for (const [flag, v] of slurmOnly) if (v !== undefined) throw fail(`${flag} ${Array.isArray(v) ? v.join(' ') : v}: only with --launcher slurm`);
  if (f.expectHash !== undefined && f.runIndex === undefined) throw fail(`--expect-hash ${f.expectHash}: only with --run-index`);
  if (f.agent && f.runIndex !== undefined) throw fail('--agent: takes runs itself; not with --run-index');
  if (f.lockTimeout !== undefined) setLockTimeout(positiveFlag('--lock-timeout', f.lockTimeout));
  if (f.runIndex !== undefined) {
    const index = runIndex(plan, f);
    const task: TaskContext | null = slurmTask();
    let requeue = false;
    let requeued = false;
    /** `scontrol requeue` this task; when it fails, says so with `then` (what the user does instead), exit 1 */
    const requeueSelf = (t: TaskContext, then: string) => {
      try {
        beforeRequeue();
        requeueTask(t);
        requeued = true;
      } catch (e) {
        const msg = commandFailure(e);
        // the requeue row went first (a requeue that works ends this process at once): this one says it did not
        logTask(plan, t, 'requeue_failed', { index, run: plan.runs[index - 1]!.id, error: msg });
        process.stderr.write(`moco3: scontrol requeue ${taskName(t)} failed: ${msg}; ${then}\n`);
        process.exitCode = 1;
      }
    };
    return {
      onUsr1: task
        ? () => {
            if (!requeue) process.stderr.write(`\nmoco3: USR1: checkpointing the current run, then requeueing Slurm task ${taskName(task)}\n`);
            requeue = true;
            requestStop();
          }
        : null,
      async run(once) {
        const run = plan.runs[index - 1]!;
        if (task) logTask(plan, task, 'start', { index, run: run.id });
        const r = await once({ only: [index] });
        const state = r.states[index - 1]!.state;
        if (task) {
          if (requeue && r.interrupted) {
            logTask(plan, task, 'requeue', { index, run: run.id, step: r.states[index - 1]!.checkpoint_step });
            process.stderr.write(`moco3: checkpointed; requeueing Slurm task ${taskName(task)}\n`);
            requeueSelf(task, 'the run is checkpointed: submit the sweep again to continue it');
          } else {
            logTask(plan, task, 'end', { index, run: run.id, state });
          }
        }
        return r;
      },
      afterStopped() {
        if (!task || !requeue) return;
        logTask(plan, task, 'requeue', { index, run: plan.runs[index - 1]!.id, baselines: true });
        process.stderr.write(`moco3: requeueing Slurm task ${taskName(task)} for the baselines\n`);
        requeueSelf(task, 'submit the sweep again for the baselines');
      },
      requeued: () => requeued,
    };
  }
  if (f.agent) {
    return {
      onUsr1: null,
      async run(once) {
        // passes over the plan while runs are left to other agents and the last pass trained one: runs freed
        // in the meantime (a stale lock) are taken too; a run that failed under this agent is not tried again
        // by it; a pass that left no run to another agent leaves nothing for a next one
        const failed = new Set<string>();
        for (;;) {
          const only = plan.runs.filter((r) => !failed.has(r.id)).map((r) => r.index);
          const r = await once({ only });
          for (const id of r.failed) failed.add(id);
          if (r.interrupted || r.trained.length === 0 || r.busy.length === 0 || only.length === 0) return { ...r, failed: [...failed] };
        }
      },
    };
  }
  return { onUsr1: null, run: (once) => once({}) };
}
