/**
 * Where a run stands, read from its folder (status.json, summary.json, checkpoints/last.json,
 * the lock) without TensorFlow.js.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { ASIDE_NOTE } from './aside.ts';
import { checkpointStep } from './checkpoints.ts';
import { isOwnLock, liveLock, type LockInfo } from './lock.ts';
import { metricsPath } from './metrics.ts';
import { runPath } from './paths.ts';
import { readStatus } from './status.ts';
import { readSummary } from './summary.ts';

export type RunState = 'new' | 'completed' | 'interrupted' | 'diverged' | 'failed' | 'running';

export interface RunStateInfo {
  state: RunState;
  /** the step the run reached, when known */
  step: number | null;
  total_steps: number | null;
  /** the step of the newest checkpoint (where a resume starts), when there is one */
  checkpoint_step: number | null;
  error: string | null;
  /** the live lock of another process training it (state 'running') */
  lock: LockInfo | null;
  /** set by withResumePoint (src/sweep/resume.ts): why the checkpoint a resume would start from cannot be used */
  resume_error?: string;
}

export function readRunState(runDir: string): RunStateInfo {
  const st = readStatus(runDir);
  const ckpt = checkpointStep(runDir);
  const info: RunStateInfo = {
    state: 'new',
    // a status.json that could not be written (a full disk) lags behind: the run got at least as far as its checkpoint
    step: st?.step !== undefined && st.step !== null && (ckpt === null || st.step >= ckpt) ? st.step : ckpt,
    total_steps: st?.total_steps ?? null,
    checkpoint_step: ckpt,
    error: st?.error ?? null,
    lock: null,
  };
  const lock = liveLock(runDir);
  // a live lock of another process: of another pid, or of this one's pid on another host (a results folder
  // shared over the network) or of another start (containers numbering their pids alike)
  if (lock && !isOwnLock(lock)) return { ...info, state: 'running', lock };
  // a `train --force` killed while it moved the run aside (src/runfolder/aside.ts): whatever its files say,
  // the run is not whole until the lock's next holder (train, a sweep) has put them back
  if (existsSync(join(runDir, ASIDE_NOTE))) return { ...info, state: 'interrupted' };
  // summary.json is written before the final status: a final status without it cannot happen, but a
  // folder copied by hand might have one; it then counts as interrupted and is resumed
  // read, not only seen: a damaged one is said (one line: remove it and the resume writes it again), never
  // taken for a finished run's (plan and sweep saw it completed while report and eval refused it)
  const hasSummary = existsSync(runPath(runDir, 'summary')) && readSummary(runDir) !== null;
  if (st?.status === 'completed' && hasSummary) return { ...info, state: 'completed' };
  if (st?.status === 'diverged' && hasSummary) return { ...info, state: 'diverged' };
  if (st?.status === 'failed') return { ...info, state: 'failed' };
  if (st || ckpt !== null) return { ...info, state: 'interrupted' };
  return info;
}

/** The tail of metrics.jsonl that reachedState reads: a row is a few hundred bytes. */
const TAIL_BYTES = 64 * 1024;

/**
 * The step of the last whole row of a metrics.jsonl, read from its tail (a torn last line skipped); null if none.
 * What a user is shown; a resume judges its checkpoint by the whole file (src/runfolder/resume.ts lastMetricsStep).
 */
function tailMetricsStep(path: string): number | null {
  let fd: number | null = null;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const n = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    const lines = buf.toString('utf8').split('\n');
    // the first line may be cut by the tail, the last torn by a kill: the last that parses as a row
    for (let i = lines.length - 1; i >= (n < size ? 1 : 0); i--) {
      try {
        const step = (JSON.parse(lines[i]!) as { step?: unknown }).step;
        if (typeof step === 'number') return step;
      } catch {
        /* torn or empty: the line before */
      }
    }
    return null;
  } catch {
    return null;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/**
 * A run's state with the step it reached: status.json's step is its heartbeat's (every 10 steps), up to 9 behind
 * the last metrics row of an unfinished run (its file's tail read, a torn last line skipped; none readable
 * leaves the heartbeat's). For what a user reads (plan, a crash line), not what a resume does: that goes by
 * the checkpoint.
 */
export function reachedState(runDir: string): RunStateInfo {
  const state = readRunState(runDir);
  if (isDone(state.state) || state.state === 'new') return state;
  const last = tailMetricsStep(metricsPath(runDir));
  return last !== null && (state.step === null || last > state.step) ? { ...state, step: last } : state;
}

/** Final states: the sweep does not train these again. */
export const isDone = (s: RunState): boolean => s === 'completed' || s === 'diverged';
