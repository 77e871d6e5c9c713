/**
 * Slurm: a sweep's runs as one array job. The script (results/<sweep>/slurm/<time>.sbatch) has one array
 * task per planned run still to train, its task id the run's index in the plan; each task runs
 * `moco3 sweep <sweep> --run-index $SLURM_ARRAY_TASK_ID` with the submitting command's plan flags, and
 * refuses to train when its plan resolves the run to another config than the one submitted (the config
 * hashes are written into the script). Slurm sends USR1 `signal_s` seconds before the time limit (or on
 * preemption with `scancel --signal=USR1 --batch`); the script passes it to moco3, which checkpoints,
 * requeues the task with `scontrol requeue` and exits; the requeued task resumes from the checkpoint.
 *
 * What was submitted is kept in results/<sweep>/slurm/jobs.json; each task appends its start, requeue and
 * end to results/<sweep>/slurm/tasks.jsonl. squeue (and sacct, where accounting is on) give the live state.
 * No TensorFlow.js here.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { shellQuote, writeFileAtomic, writeJsonAtomic } from '../engine/files.ts';
import { isObj, readJsonChecked, RunFolderError } from '../runfolder/paths.ts';
import { SweepError } from './file.ts';
import type { LauncherSettings } from './launcher.ts';
import type { SweepPlan } from './plan.ts';

export const slurmDir = (plan: SweepPlan): string => join(plan.dir, 'slurm');
export const jobName = (plan: SweepPlan): string => `moco3-${plan.id}`;

/**
 * A value for an `#SBATCH` line. sbatch splits those lines on whitespace, except inside double or single
 * quotes, where a backslash still escapes the next character, and reads an unquoted `#` as the start of a
 * comment: a path with a space (`/home/me/my project`) must be quoted. A newline cannot be: refused.
 */
export function sbatchValue(v: string, what: string): string {
  if (/[\n\r]/.test(v)) throw new SweepError(`${what} ${JSON.stringify(v)}: a line break cannot go into an #SBATCH line`);
  return /[\s"'\\#]/.test(v) ? `"${v.replace(/[\\"]/g, '\\$&')}"` : v;
}

/**
 * An option with its value quoted for an `#SBATCH` line (sbatchValue): `--option=value`, and `--option value`
 * written `--option=value` (sbatch splits the line at blanks and ends it at a blank's `#`: `--comment run #3`
 * would give the comment `run`); `-X value` keeps its blank. `-Xvalue` and bare options as they are.
 */
export function sbatchArg(a: string): string {
  const m = /^(--?[A-Za-z][\w-]*)(=|\s+)([\s\S]*)$/.exec(a);
  if (!m) return a;
  const [, opt, sep, given] = m as unknown as [string, string, string, string];
  // quotes the user put around the value (`--comment "a b"`, as sbatch's own line reads them) are quoting, not
  // part of it: taken off before it is quoted for the line (they were written into it)
  const value = /^"[^"]*"$|^'[^']*'$/.test(given) ? given.slice(1, -1) : given;
  const quoted = sbatchValue(value, `--sbatch-arg ${opt}${sep === '=' ? '=' : ''}`);
  return opt.startsWith('--') ? `${opt}=${quoted}` : `${opt}${sep === '=' ? '=' : ' '}${quoted}`;
}

/** Sorted indices as an sbatch --array value: 1-3,5,7-8 and %N. */
export function arraySpec(indices: number[], maxParallel: number | null): string {
  const xs = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    parts.push(i === j ? String(xs[i]) : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return parts.join(',') + (maxParallel !== null ? `%${maxParallel}` : '');
}

export interface ScriptInput {
  plan: SweepPlan;
  /** plan indices (1-based) to submit */
  indices: number[];
  settings: LauncherSettings;
  /** the moco3 command line each task runs, without --run-index and --expect-hash */
  command: string[];
  /** the working directory of the tasks (the submitting command's) */
  cwd: string;
}

export function sbatchScript(inp: ScriptInput): string {
  const { plan, settings: s } = inp;
  const logs = resolve(inp.cwd, slurmDir(plan));
  // Slurm reads a backslash in --output as "do not expand %A and %a", and drops it: no task could open its log
  if (logs.includes('\\')) throw new SweepError(`${logs}: a backslash in the path of the tasks' logs cannot go to Slurm; give a --results folder without one`);
  const lines = [
    '#!/bin/bash',
    `# moco3 sweep ${plan.id}: runs ${arraySpec(inp.indices, null)} of ${plan.runs.length}, one Slurm array task per run (task id = run index in \`moco3 plan\`)`,
    `#SBATCH --job-name=${jobName(plan)}`,
    `#SBATCH --array=${arraySpec(inp.indices, s.max_parallel)}`,
    // sbatch reads % in --output as a pattern (%A the job, %a the task): one in the folder's own name is %%
    `#SBATCH --output=${sbatchValue(`${logs.replace(/%/g, '%%')}/%A_%a.log`, 'the results folder')}`,
    '#SBATCH --open-mode=append',
    `#SBATCH --chdir=${sbatchValue(inp.cwd, 'the working folder')}`,
    '#SBATCH --nodes=1',
    '#SBATCH --ntasks=1',
    `#SBATCH --signal=B:USR1@${s.signal_s}`,
    '#SBATCH --requeue',
  ];
  if (s.partition !== null) lines.push(`#SBATCH --partition=${sbatchValue(s.partition, '--partition')}`);
  if (s.gpus_per_run !== null && s.gpus_per_run > 0) lines.push(`#SBATCH --gres=gpu:${s.gpus_per_run}`);
  if (s.cpus_per_run !== null) lines.push(`#SBATCH --cpus-per-task=${s.cpus_per_run}`);
  if (s.mem !== null) lines.push(`#SBATCH --mem=${s.mem}`);
  if (s.time !== null) lines.push(`#SBATCH --time=${s.time}`);
  for (const a of s.sbatch_args) lines.push(`#SBATCH ${sbatchArg(a)}`);
  const hashes = ['-'];
  for (const r of plan.runs) hashes[r.index] = r.hash;
  lines.push(
    '',
    '# the config hash of every planned run, by index: a task whose plan resolves otherwise refuses to train',
    `HASHES=(${hashes.join(' ')})`,
    '# USR1 (time limit near, preemption) and TERM (scancel) reach this shell; pass them to moco3, which',
    '# checkpoints and, on USR1, requeues this task (scontrol requeue) before it exits',
    'trap \'kill -USR1 "$child" 2>/dev/null\' USR1',
    'trap \'kill -TERM "$child" 2>/dev/null\' TERM',
    `${inp.command.map(shellQuote).join(' ')} \\`,
    '  --run-index "$SLURM_ARRAY_TASK_ID" --expect-hash "${HASHES[$SLURM_ARRAY_TASK_ID]}" &',
    'child=$!',
    'while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done',
    'exit "$rc"',
    '',
  );
  return lines.join('\n');
}

export interface Submission {
  job_id: string;
  submitted: string;
  script: string;
  /** run index -> run id */
  runs: Record<string, string>;
}

/**
 * The sweep's submissions (slurm/jobs.json); [] when it has none. A damaged file is said, not read as none:
 * the jobs it names would be submitted again and its record overwritten.
 */
export function readJobs(plan: SweepPlan): Submission[] {
  const path = join(slurmDir(plan), 'jobs.json');
  const todo = 'it records the Slurm jobs this sweep submitted: put it back, or remove it (its jobs then show in neither plan nor sweep, which may submit their runs again)';
  const v = readJsonChecked(path, todo);
  if (v === null) return [];
  if (!Array.isArray(v.submissions)) throw new RunFolderError(`${path}: submissions: expected a list, got ${JSON.stringify(v.submissions ?? null)}; ${todo}`);
  v.submissions.forEach((s: unknown, i: number) => {
    const ok = isObj(s) && typeof s.job_id === 'string' && isObj(s.runs) && Object.values(s.runs).every((id) => typeof id === 'string');
    if (!ok) throw new RunFolderError(`${path}: submissions[${i}]: expected {job_id, submitted, script, runs: {index: run id}}, got ${JSON.stringify(s)}; ${todo}`);
  });
  return v.submissions as Submission[];
}

export function recordSubmission(plan: SweepPlan, sub: Submission): void {
  writeJsonAtomic(join(slurmDir(plan), 'jobs.json'), { sweep: plan.id, submissions: [...readJobs(plan), sub] });
}

/** `YYYYMMDD-HHMMSS` (UTC) for the script's file name. */
export function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

export function writeScript(plan: SweepPlan, text: string, d = new Date()): string {
  let path = join(slurmDir(plan), `${stamp(d)}.sbatch`);
  for (let i = 2; existsSync(path); i++) path = join(slurmDir(plan), `${stamp(d)}-${i}.sbatch`);
  writeFileAtomic(path, text);
  return path;
}

/**
 * The environment the Slurm commands get (sbatch passes it on to the tasks): without the libuv pool size
 * bin/moco3.js chose from this machine's cores (each task chooses from its own), unless the user set it.
 */
function slurmEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  const chosen = env.MOCO3_UV_THREADPOOL_DEFAULT;
  if (chosen !== undefined) {
    if (env.UV_THREADPOOL_SIZE === chosen) delete env.UV_THREADPOOL_SIZE;
    delete env.MOCO3_UV_THREADPOOL_DEFAULT;
  }
  return env;
}

/** A Slurm command's stdout, and what it said on stderr when it succeeded (sbatch's warnings). */
function runSaying(cmd: string, args: string[]): { out: string; said: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000, env: slurmEnv() });
  if (r.error || r.status !== 0) {
    // the error execFileSync throws: code (ENOENT, ETIMEDOUT), stderr, message
    throw Object.assign(r.error ?? new Error(`Command failed: ${cmd} ${args.join(' ')}`), { stderr: r.stderr ?? '', status: r.status });
  }
  return { out: r.stdout, said: r.stderr.trim() };
}

const run = (cmd: string, args: string[]): string => runSaying(cmd, args).out;

/** The one line a failed Slurm command is said by: its stderr's first, or its error's. */
export function commandFailure(e: unknown): string {
  const err = e as { stderr?: string; message?: string };
  return (err.stderr || err.message || String(e)).trim().split('\n')[0] ?? '';
}

/**
 * An sbatch that timed out (its own "Socket timed out", or no answer within run's limit): the controller
 * may have queued the job all the same, so what the submission wrote is kept.
 */
export class SubmissionUnsure extends SweepError {}

/**
 * The array job whose script is `path` among the queue's jobs of this sweep (`squeue --name`, the command
 * each job runs): its id, or null when none is seen (or squeue cannot answer).
 */
export function queuedJobOf(plan: SweepPlan, path: string): string | null {
  try {
    for (const line of run('squeue', ['-h', '-r', '--name', jobName(plan), '-o', '%F|%o']).split('\n')) {
      const [id, cmd] = line.trim().split('|');
      if (id && /^\d+$/.test(id) && cmd && resolve(cmd) === resolve(path)) return id;
    }
  } catch {
    /* no squeue, or no controller */
  }
  return null;
}

/**
 * `sbatch --parsable <script>`: the job id, and what sbatch said on stderr (its warnings: a partition's limit).
 * SubmissionUnsure where the job may have been queued all the same (a timeout, an answer of no job id).
 */
export function submitScript(path: string): { id: string; said: string } {
  let out: string;
  let said: string;
  try {
    ({ out, said } = runSaying('sbatch', ['--parsable', path]));
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new SweepError('sbatch: not found; --launcher slurm needs the Slurm client commands on PATH');
    const msg = commandFailure(err);
    if (err.code === 'ETIMEDOUT' || /timed out/i.test(msg)) throw new SubmissionUnsure(`sbatch ${path}: ${msg}`);
    throw new SweepError(`sbatch ${path}: ${msg}`);
  }
  // `<id>` or `<id>;<cluster>`; or sbatch's answer without --parsable (a wrapper that drops the flag)
  const text = out.trim();
  const m = /^(\d+)(;\S*)?$/.exec(text) ?? /^Submitted batch job (\d+)\b/m.exec(text);
  // sbatch succeeded: the job is likely queued, under an id this answer does not give
  if (!m) throw new SubmissionUnsure(`sbatch ${path}: unexpected answer ${JSON.stringify(text)}`);
  return { id: m[1]!, said };
}

/** sacct's states of a task Slurm requeues by itself under --requeue (a node's failure, a preemption). */
const MAYBE_REQUEUED = new Set(['PREEMPTED', 'NODE_FAIL']);

/**
 * Slurm's state of array tasks `<job>_<index>` (squeue, then sacct where accounting is on), and squeue's
 * failure where it could not answer (no controller, a timeout, no squeue): a task it does not show is then
 * not known to be out of the queue (sacct lists a pending array as one line, not by task), nor is one sacct
 * says was preempted or lost with its node.
 */
export function queueStates(plan: SweepPlan, subs: Submission[] = readJobs(plan)): { states: Map<string, string>; error: string | null } {
  const states = new Map<string, string>();
  if (!subs.length) return { states, error: null };
  let error: string | null = null;
  try {
    for (const line of run('squeue', ['-h', '-r', '--name', jobName(plan), '-o', '%i|%T']).split('\n')) {
      const [id, st] = line.trim().split('|');
      if (id && st) states.set(id, st);
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    const why = err.code === 'ENOENT' ? 'not found' : commandFailure(err) || `exit ${String((err as { status?: unknown }).status)}`;
    error = `squeue: ${why.replace(/^squeue: /, '')}`;
  }
  try {
    const ids = subs.map((s) => s.job_id).join(',');
    for (const line of run('sacct', ['-n', '-P', '-X', '-j', ids, '-o', 'JobID,State']).split('\n')) {
      const [id, st] = line.trim().split('|');
      const state = st?.split(' ')[0];
      // with squeue unanswered, a task ended by preemption or a node's failure may be back in the queue
      // (the script asks --requeue): its state is not known
      if (id && state && !states.has(id) && !(error && MAYBE_REQUEUED.has(state))) states.set(id, state);
    }
  } catch {
    /* no sacct, or accounting disabled */
  }
  return { states, error };
}

export type RunJob = { job: string; state: string | null } | null;

/**
 * Per planned run: its newest array task and that task's Slurm state (null when Slurm does not know it), and
 * squeue's failure (queueStates): a null state then says nothing of whether the task is queued.
 */
export function runJobs(plan: SweepPlan): { jobs: RunJob[]; queueError: string | null } {
  const subs = readJobs(plan);
  if (!subs.length) return { jobs: plan.runs.map(() => null), queueError: null };
  const { states, error } = queueStates(plan, subs);
  // a run is found by its id, not by its place in this plan: other --seeds or values number it otherwise, and
  // its task keeps the index it was submitted with
  const jobs = plan.runs.map((r): RunJob => {
    for (const sub of [...subs].reverse()) {
      const task = Object.entries(sub.runs).find(([, id]) => id === r.id)?.[0];
      if (task === undefined) continue;
      const job = `${sub.job_id}_${task}`;
      return { job, state: states.get(job) ?? null };
    }
    return null;
  });
  return { jobs, queueError: error };
}

/** Slurm states in which a task will still train its run. */
export const QUEUED_STATES = new Set(['PENDING', 'RUNNING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'CONFIGURING', 'COMPLETING', 'RESIZING', 'SUSPENDED', 'SIGNALING', 'STAGE_OUT']);

export interface TaskContext {
  arrayJobId: string;
  taskId: number;
  jobId: string;
  restarts: number;
}

/** The Slurm array task this process runs in, from its environment. */
export function slurmTask(env = process.env): TaskContext | null {
  const arr = env.SLURM_ARRAY_JOB_ID;
  const task = env.SLURM_ARRAY_TASK_ID;
  if (!arr || !task) return null;
  return { arrayJobId: arr, taskId: Number(task), jobId: env.SLURM_JOB_ID ?? arr, restarts: Number(env.SLURM_RESTART_COUNT ?? 0) };
}

export const taskName = (t: TaskContext): string => `${t.arrayJobId}_${t.taskId}`;

/** Put this task back in the queue: Slurm ends it now and starts it again later (it resumes from its checkpoint). */
export function requeueTask(t: TaskContext): void {
  run('scontrol', ['requeue', taskName(t)]);
}

/** One line of results/<sweep>/slurm/tasks.jsonl. */
export function logTask(plan: SweepPlan, t: TaskContext, event: string, extra: Record<string, unknown> = {}): void {
  mkdirSync(slurmDir(plan), { recursive: true });
  const row = { time: new Date().toISOString(), task: taskName(t), job_id: t.jobId, restarts: t.restarts, host: hostname(), pid: process.pid, event, ...extra };
  appendFileSync(join(slurmDir(plan), 'tasks.jsonl'), `${JSON.stringify(row)}\n`);
}
