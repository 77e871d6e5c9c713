/**
 * status.json: where a run stands, rewritten atomically at every change and as a heartbeat while it runs.
 *
 *   (none yet) -> running -> completed | diverged | interrupted | failed ('pending' is read, never written)
 *   interrupted | failed -> running (resume)
 *
 * summary.json is written before a final completed/diverged status, so a final status always has one.
 */
import { hostname } from 'node:os';
import { writeJsonAtomic } from '../engine/files.ts';
import { mayWrite } from './lock.ts';
import { readJsonChecked, RunFolderError, runPath } from './paths.ts';

export const RUN_STATUSES = ['pending', 'running', 'completed', 'diverged', 'failed', 'interrupted'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export interface StatusFile {
  status: RunStatus;
  step: number;
  total_steps: number | null;
  pid?: number;
  host?: string;
  heartbeat?: string;
  error?: string;
  diverged_at?: number | null;
}

export function writeStatus(runDir: string, status: RunStatus, step: number, totalSteps: number | null, extra: { error?: string; diverged_at?: number } = {}): void {
  writeJsonAtomic(runPath(runDir, 'status'), {
    status,
    step,
    total_steps: totalSteps,
    pid: process.pid,
    host: hostname(),
    heartbeat: new Date().toISOString(),
    ...extra,
  });
}

const STATUS_TODO = 'remove it (`moco3 train --resume` or the sweep then continues from the run\'s checkpoints) or train the run again with `moco3 train --force`';

/** status.json, or null when there is none; a damaged one (not JSON, an unknown status, a step that is no count) is a RunFolderError. */
export function readStatus(runDir: string): StatusFile | null {
  const path = runPath(runDir, 'status');
  const s = readJsonChecked(path, STATUS_TODO);
  if (!s) return null;
  if (typeof s.status !== 'string' || !(RUN_STATUSES as readonly string[]).includes(s.status)) {
    throw new RunFolderError(`${path}: status: expected one of ${RUN_STATUSES.join(', ')}, got ${JSON.stringify(s.status) ?? 'nothing'}; ${STATUS_TODO}`);
  }
  if (!(typeof s.step === 'number' && Number.isSafeInteger(s.step) && s.step >= 0)) {
    throw new RunFolderError(`${path}: step: expected a non-negative integer, got ${JSON.stringify(s.step) ?? 'nothing'}; ${STATUS_TODO}`);
  }
  return s as unknown as StatusFile;
}

/**
 * The status writer of one run: `running` heartbeats, then one final status. The loop holds one and
 * writes status.json through nothing else.
 */
export class StatusWriter {
  constructor(
    private readonly runDir: string,
    private readonly totalSteps: number,
  ) {}

  running(step: number): void {
    writeStatus(this.runDir, 'running', step, this.totalSteps);
  }

  final(status: Exclude<RunStatus, 'pending' | 'running' | 'failed'>, step: number, divergedAt: number | null): void {
    writeStatus(this.runDir, status, step, this.totalSteps, divergedAt !== null ? { diverged_at: divergedAt } : {});
  }

  failed(step: number, error: string): void {
    writeStatus(this.runDir, 'failed', step, this.totalSteps, { error });
  }
}

/**
 * A run this process was training, left at once (a second Ctrl-C): its `running` status, written by this
 * process, says interrupted at the step it holds (the checkpoint and metrics say how far the run got; the
 * readers take the furthest). Nothing where the status is final or another process's, or the run's lock is
 * no longer this process's; never throws.
 */
export function markInterrupted(runDir: string): void {
  try {
    const st = readStatus(runDir);
    if (!st || st.status !== 'running' || st.pid !== process.pid || st.host !== hostname() || !mayWrite(runDir)) return;
    writeStatus(runDir, 'interrupted', st.step, st.total_steps);
  } catch {
    /* quitting at once: a status that cannot be read or written stays as it is */
  }
}

/**
 * A run that failed outside its loop (the sweep records it): failed at the step it reached. The loop's own
 * failed status of this error is kept; one of an earlier attempt's error is replaced (the error is this one).
 */
export function markFailed(runDir: string, error: string): void {
  let prev: StatusFile | null = null;
  try {
    prev = readStatus(runDir);
  } catch {
    /* a damaged status.json is replaced by the failed one */
  }
  if (prev?.status === 'failed' && prev.error === error) return;
  writeStatus(runDir, 'failed', prev?.step ?? 0, prev?.total_steps ?? null, { error });
}
