/**
 * The sweep runner: trains a plan's runs one after another. A completed or diverged run is a result and
 * is skipped; an interrupted or failed one resumes from its newest checkpoint; a failing run is recorded
 * and the sweep goes on; a run locked by another live sweep is left to it. TensorFlow.js and the training
 * loop are imported here only when a run starts, so planning stays light.
 */
import type { ResolvedRunConfig } from '../config/schema.ts';
import type { Dataset } from '../data/types.ts';
import type { BackendInfo, BackendName } from '../engine/backend.ts';
import { acquireLock, checkLockFile, cleanStaleTemps, clearStale, describeHolder, liveLock, LockLostError, lockLost, mayWrite, releaseLock } from '../runfolder/lock.ts';
import { isDone, readRunState, type RunState, type RunStateInfo } from '../runfolder/state.ts';
import { runPath } from '../runfolder/paths.ts';
import { readCheckpointState } from '../runfolder/resume.ts';
import { itersPerEpoch } from '../data/sampler.ts';
import { isRunDir } from '../runfolder/records.ts';
import { markFailed } from '../runfolder/status.ts';
import type { Summary } from '../runfolder/summary.ts';
import type { TrainEvent } from '../train/loop.ts';
import { SweepError } from './file.ts';
import type { PlannedRun, SweepPlan } from './plan.ts';
import { writeResolvedSweep } from './resolved.ts';
import { checkSweepResumes } from './resume.ts';
import { firstLine, SetupError } from '../config/errors.ts';

export type SweepEvent =
  | { type: 'sweep_start'; sweep: string; dir: string; total: number; todo: number; backend: string; notes?: string[] }
  /** to_train: the run was counted in sweep_start's todo (another process took it or finished it since) */
  | { type: 'run_skip'; run: string; index: number; total: number; state: RunState; reason: string; to_train: boolean; notes?: string[] }
  /** to_train: the run was counted in sweep_start's todo (false: left to another process then, freed since) */
  | { type: 'run_start'; run: string; index: number; total: number; previous: RunState; resume_step: number | null; to_train: boolean; notes?: string[] }
  | { type: 'train'; run: string; index: number; total: number; event: TrainEvent }
  | { type: 'run_end'; run: string; index: number; total: number; status: RunState; summary: Summary }
  | { type: 'run_failed'; run: string; index: number; total: number; error: string }
  | { type: 'sweep_end'; sweep: string; counts: Record<string, number>; failed: string[]; interrupted: boolean; busy: string[] };

export interface SweepResult {
  /** the state of every planned run after this invocation, in plan order */
  states: RunStateInfo[];
  /** runs that failed in this invocation */
  failed: string[];
  /** runs left to another live sweep and not finished when this invocation ended */
  busy: string[];
  /** runs this invocation started training */
  trained: string[];
  interrupted: boolean;
  /** the backend this invocation started or was given (null: none, nothing was trained) */
  backend: BackendInfo | null;
}

export interface RunSweepOptions {
  plan: SweepPlan;
  onEvent?: (e: SweepEvent) => void;
  /** polled between steps and between runs: true checkpoints the current run and stops (Ctrl-C) */
  shouldStop?: () => boolean;
  command?: string[];
  /** an initialised backend (tests); otherwise the runs' train.backend is initialised */
  backend?: BackendInfo;
  /** seconds between automatic checkpoints of runs with train.checkpoint_every null */
  checkpointSeconds?: number;
  /** train only the runs with these plan indices (Slurm tasks, agents); all otherwise */
  only?: number[];
}



export async function runSweep(opts: RunSweepOptions): Promise<SweepResult> {
  const { plan } = opts;
  const emit = opts.onEvent ?? (() => {});
  const stop = opts.shouldStop ?? (() => false);
  const total = plan.runs.length;
  const backends = new Set(plan.runs.map((r) => r.config.train.backend));
  if (backends.size > 1) throw new SweepError(`${plan.spec.file}: every run of a sweep must use one train.backend, got ${[...backends].join(', ')}`);

  const runs = opts.only ? plan.runs.filter((r) => opts.only!.includes(r.index)) : plan.runs;
  // a run another live process holds is that process's: not counted to train, nor its data loaded or a backend
  // started for it (it is still taken below if its holder has gone by then)
  const notDone = runs.map((run) => ({ run, before: readRunState(run.dir) })).filter((x) => !isDone(x.before.state));
  for (const { run } of notDone) checkLockFile(run.dir);
  const pending = notDone.filter((x) => liveLock(x.run.dir) === null);
  const todo = pending.map((x) => x.run);
  const counted = new Set(todo.map((r) => r.id));
  // a damaged checkpoint of a run to resume, or a lock that is no file (above), stops the sweep here, before a
  // backend starts or a file is written
  const resumes = checkSweepResumes(pending);

  // TensorFlow.js is loaded only when there is something to train
  let loop = todo.length ? await import('../train/loop.ts') : null;
  let components = todo.length ? await import('../components/index.ts') : null;
  // one dataset in memory at a time, shared by the runs that read the same data
  let cache: { key: string; ds: Dataset } | null = null;
  const dataFor = async (c: ResolvedRunConfig): Promise<Dataset> => {
    // the dataset depends on the data section alone (not the run seed): runs that differ in seed share it
    const key = JSON.stringify(components!.dataOptionsOf(c));
    if (cache?.key !== key) {
      cache = null;
      cache = { key, ds: await components!.loadRunData(c) };
    }
    return cache.ds;
  };

  // data that cannot serve a run stops the sweep here, before anything is written: each data section of the
  // runs to train is loaded once and checked against each of its runs' batch (missing files, a split smaller
  // than a batch, a channel of one value; a run to resume whose checkpoint was trained on other data), the
  // first run's last so that it stays loaded; other errors are that run's failure, below
  const byData = new Map<string, PlannedRun[]>();
  for (const run of todo) {
    const key = JSON.stringify(components!.dataOptionsOf(run.config));
    byData.set(key, [...(byData.get(key) ?? []), run]);
  }
  for (const sameData of [...byData.values()].reverse()) {
    // Ctrl-C between two sections (each may build an image cache for hours): the run loop below stops at once
    if (stop()) break;
    let ds: Dataset;
    try {
      ds = await dataFor(sameData[0]!.config);
    } catch (e) {
      if (e instanceof SetupError) throw e;
      continue;
    }
    for (const run of sameData) {
      const B = run.config.optim.batch_size;
      loop!.checkRunData(ds, B);
      const from = resumes.get(run.id);
      if (from) loop!.checkResumeData(run.dir, readCheckpointState(from), itersPerEpoch(ds.train.n, B), B, ds.train.n);
    }
  }
  // the backend starts (and says which) once the data has checked out: missing data is its one line alone
  let backend = opts.backend;
  const startBackend = async () => {
    const { initBackend } = await import('../engine/backend.ts');
    return initBackend(plan.runs[0]!.config.train.backend as BackendName);
  };
  if (!backend && todo.length) backend = await startBackend();
  cleanStaleTemps(plan.dir);
  const notes = writeResolvedSweep(plan);
  emit({ type: 'sweep_start', sweep: plan.id, dir: plan.dir, total, todo: todo.length, backend: todo.length ? (backend?.name ?? '-') : '-', ...(notes.length ? { notes } : {}) });

  const failed: string[] = [];
  const busy: string[] = [];
  const trained: string[] = [];
  let interrupted = false;
  for (const run of runs) {
    const base = { run: run.id, index: run.index, total };
    const before = readRunState(run.dir);
    if (isDone(before.state)) {
      // a process killed between the run's last write and its unlock leaves a stale lock behind
      clearStale(run.dir);
      // a result the report cannot read without its config: said now, not only when the report stops on it
      const lost = isRunDir(run.dir)
        ? []
        : [`${runPath(run.dir, 'config')} is missing: \`moco3 report\` stops on this run until it is put back (each checkpoint's state.json keeps the run's config)`];
      emit({ type: 'run_skip', ...base, state: before.state, reason: before.state, to_train: counted.has(run.id), ...(lost.length > 0 ? { notes: lost } : {}) });
      continue;
    }
    // a signal handler runs only when the event loop gets a turn; training steps may never give it one
    await new Promise<void>((r) => setImmediate(r));
    if (stop()) {
      interrupted = true;
      break;
    }
    const held = acquireLock(run.dir, plan.id);
    if (held) {
      busy.push(run.id);
      emit({ type: 'run_skip', ...base, state: 'running', reason: `trained by ${describeHolder(held, run.dir)}`, to_train: counted.has(run.id) });
      continue;
    }
    try {
      // what killed processes left, put back or removed before the run's state is read
      const notes = cleanStaleTemps(run.dir);
      // another sweep may have finished it between the look above and the lock
      const now = readRunState(run.dir);
      if (isDone(now.state)) {
        emit({ type: 'run_skip', ...base, state: now.state, reason: now.state, to_train: counted.has(run.id), ...(notes.length > 0 ? { notes } : {}) });
        continue;
      }
      // a run left to another process at the start, whose holder has gone since: what it needs is loaded now
      loop ??= await import('../train/loop.ts');
      components ??= await import('../components/index.ts');
      backend ??= await startBackend();
      trained.push(run.id);
      emit({ type: 'run_start', ...base, previous: now.state, resume_step: now.checkpoint_step, to_train: counted.has(run.id), ...(notes.length > 0 ? { notes } : {}) });
      let summary: Summary;
      try {
        let ds: Dataset;
        try {
          ds = await dataFor(run.config);
        } catch (e) {
          if (e instanceof SetupError) throw Object.assign(e, { stopSweep: true });
          throw e;
        }
        summary = await loop!.trainRun({
          config: run.config,
          runDir: run.dir,
          backend: backend!,
          resume: true,
          command: opts.command,
          dataset: ds,
          onEvent: (event) => emit({ type: 'train', ...base, event }),
          // a lock taken over by another host (this process was frozen past the lock timeout): stop
          shouldStop: () => stop() || lockLost(run.dir),
          ...(opts.checkpointSeconds !== undefined ? { checkpointSeconds: opts.checkpointSeconds } : {}),
        });
      } catch (e) {
        if ((e as { stopSweep?: boolean }).stopSweep) throw e;
        if (!mayWrite(run.dir)) {
          // taken over by another process while this one was frozen: the run is that process's to finish
          busy.push(run.id);
          emit({ type: 'run_skip', ...base, state: 'running', reason: e instanceof LockLostError ? e.message : `${run.dir}: taken over by another process`, to_train: counted.has(run.id) });
          continue;
        }
        const msg = firstLine(e);
        // best effort, as in the loop: on a full disk this write fails too, and the run's error is the one to report
        try {
          markFailed(run.dir, msg);
        } catch {
          /* the run_failed event below says what happened */
        }
        failed.push(run.id);
        emit({ type: 'run_failed', ...base, error: msg });
        continue;
      }
      if (summary.status === 'interrupted') {
        interrupted = true;
        emit({ type: 'run_end', ...base, status: 'interrupted', summary });
        break;
      }
      emit({ type: 'run_end', ...base, status: summary.status as RunState, summary });
    } finally {
      releaseLock(run.dir);
    }
  }
  const states = plan.runs.map((r) => readRunState(r.dir));
  const counts: Record<string, number> = {};
  for (const s of states) counts[s.state] = (counts[s.state] ?? 0) + 1;
  // of the runs left to another sweep, those it has not finished by now (one seen locked early may be done)
  const unfinished = busy.filter((id) => !isDone(states[plan.runs.findIndex((r) => r.id === id)]!.state));
  emit({ type: 'sweep_end', sweep: plan.id, counts, failed, interrupted, busy: unfinished });
  return { states, failed, busy: unfinished, trained, interrupted, backend: backend ?? null };
}
