/**
 * One lock file per run (`<run>/.lock`) so two sweeps never train the same run, also from several hosts on
 * a shared folder. It is created whole (written to a temporary file, then hard-linked into place, which
 * fails when a lock exists). It records host, pid and a heartbeat, which its holder rewrites every
 * `lockTimeoutS() / 10` seconds while it trains. A lock is stale when its process is gone (same host: pid
 * dead or reused) or, for a lock of another host, whose pid cannot be checked, when its heartbeat is older
 * than the lock timeout (MOCO3_LOCK_TIMEOUT seconds, default 600, or --lock-timeout). A lock left by an
 * earlier start of the same Slurm array task (before a requeue) is stale at once. A stale lock is taken over
 * atomically: renamed aside (only one taker's rename succeeds), checked again, then replaced
 * by the taker's own through the same hard link.
 */
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { undoPartialMoveAside } from './aside.ts';
import { restoreAsideCheckpoints } from './checkpoints.ts';
import { RUN_FILES, RunFolderError } from './paths.ts';
import { hostTag, isStaleTemp, pidAlive, removeQuietly, writeJsonAtomic } from '../engine/files.ts';

export interface LockInfo {
  pid: number;
  host: string;
  /** the process's start time from /proc (clock ticks since boot), to tell a reused pid apart */
  proc_start: string | null;
  since: string;
  sweep: string;
  /** ISO time its holder last confirmed it (older locks lack it: taken as live on another host) */
  heartbeat?: string;
  /** the Slurm array task (`<job>_<index>`) of its holder, when it runs in one */
  slurm_task?: string;
  /** which start of that task (SLURM_RESTART_COUNT: 0 the first, 1 after a requeue, ...) */
  slurm_restart?: number;
  /** its holder's lock timeout, which sets its heartbeat's pace (older locks lack it) */
  timeout_s?: number;
}

/** The Slurm array task this process runs in, or null. */
function slurmTaskId(): string | null {
  const job = process.env.SLURM_ARRAY_JOB_ID;
  const task = process.env.SLURM_ARRAY_TASK_ID;
  return job && task ? `${job}_${task}` : null;
}

/** Which start of its Slurm task this process is: 0 the first, 1 after a requeue, ... */
function slurmRestarts(): number {
  const n = Number(process.env.SLURM_RESTART_COUNT ?? 0);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

const DEFAULT_TIMEOUT_S = 600;
let timeoutS: number | null = null;

/** Seconds without a heartbeat after which another host's lock is stale. */
export function lockTimeoutS(): number {
  if (timeoutS !== null) return timeoutS;
  const env = Number(process.env.MOCO3_LOCK_TIMEOUT);
  return Number.isFinite(env) && env > 0 ? env : DEFAULT_TIMEOUT_S;
}

export function setLockTimeout(s: number | null): void {
  timeoutS = s;
}

export const LOCK_NAME = RUN_FILES.lock;

export function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the command name, which may hold spaces; starttime is field 22
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

let own: string | null | undefined;
/** This process's start time as /proc gives it (procStart), read once. */
const ownStart = (): string | null => (own === undefined ? (own = procStart(process.pid)) : own);

export function readLock(runDir: string): LockInfo | null {
  return readLockFile(join(runDir, LOCK_NAME));
}

/** A lock file's holder; null when it cannot be read or names no holder (`{}`, a list): such a lock is stale, it holds no run forever. */
function readLockFile(path: string): LockInfo | null {
  let l: unknown;
  try {
    l = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
  const ok = typeof l === 'object' && l !== null && !Array.isArray(l) && Number.isInteger((l as LockInfo).pid) && typeof (l as LockInfo).host === 'string';
  return ok ? (l as LockInfo) : null;
}

/** The most of a holder's own timeout a taker honours: a lock written with an absurd one is not kept for ever. */
const MAX_HONOURED_TIMEOUT_S = 24 * 3600;

/**
 * Seconds without a heartbeat after which a lock of another host is stale: this process's timeout, or the
 * holder's where longer (it may beat less often; honoured up to a day).
 */
export function staleAfterS(l: LockInfo): number {
  const own = typeof l.timeout_s === 'number' && Number.isFinite(l.timeout_s) && l.timeout_s > 0 ? Math.min(l.timeout_s, MAX_HONOURED_TIMEOUT_S) : 0;
  return Math.max(lockTimeoutS(), own);
}

/** This process's own lock: its pid and host, and its start time where both are known (a pid reused is another process). */
export function isOwnLock(l: LockInfo): boolean {
  return l.host === hostname() && l.pid === process.pid && (l.proc_start == null || ownStart() === null || l.proc_start === ownStart());
}

/** True when the lock's process still runs; for another host's lock, when its heartbeat is recent. */
export function lockIsLive(l: LockInfo, now = Date.now()): boolean {
  const fresh = () => {
    if (typeof l.heartbeat !== 'string') return true;
    const t = Date.parse(l.heartbeat);
    return Number.isFinite(t) && now - t < staleAfterS(l) * 1000;
  };
  // this process's own lock. Of this pid and host but another start time: an earlier process given the same
  // pid (a container started again, with its hostname and pids as before), or a process of another pid
  // namespace (two containers sharing the host's name, each agent pid 1), which /proc here cannot see: told
  // apart by the heartbeat, as another host's lock is
  if (l.host === hostname() && l.pid === process.pid) return isOwnLock(l) || fresh();
  // an earlier start of this very Slurm task (its node failed, Slurm started it again elsewhere): Slurm runs
  // one start of a task at a time, so that holder is gone. Not a lock of the same start: a task's script may
  // run several agents at once (one per GPU), each holding its own run
  const task = slurmTaskId();
  if (task !== null && l.slurm_task === task && (l.slurm_restart ?? 0) < slurmRestarts()) return false;
  if (l.host !== hostname()) return fresh();
  if (!pidAlive(l.pid)) return false;
  const start = procStart(l.pid);
  return l.proc_start === null || start === null || start === l.proc_start;
}

/**
 * Who holds a run, for the line that says it is taken: pid, host and since, and, for another host's lock
 * without a heartbeat (an older moco3 wrote it, which never goes stale here), how to free the run once
 * that process is gone.
 */
export function describeHolder(l: LockInfo, runDir: string): string {
  const who = `pid ${l.pid} on ${l.host} (since ${l.since})`;
  if (l.host === hostname() || typeof l.heartbeat === 'string') return who;
  return `${who}, whose lock has no heartbeat (an older moco3 wrote it) and so never goes stale: once that process has ended, remove ${join(runDir, LOCK_NAME)}`;
}

/** The live lock on a run, or null. */
export function liveLock(runDir: string): LockInfo | null {
  const l = readLock(runDir);
  return l && lockIsLive(l) ? l : null;
}

/**
 * Take the run's lock. Returns null on success, or the live lock that holds it.
 */
/** A `.lock` that is not a file (a folder): no lock moco3 wrote; it would be judged stale, moved aside and then fail to be removed. */
export function checkLockFile(runDir: string): void {
  const path = join(runDir, LOCK_NAME);
  if (existsSync(path) && !statSync(path).isFile()) throw new RunFolderError(`${path}: is not a file, where moco3 keeps the run's lock: remove it`);
}

export function acquireLock(runDir: string, sweep: string): LockInfo | null {
  mkdirSync(runDir, { recursive: true });
  const path = join(runDir, LOCK_NAME);
  checkLockFile(runDir);
  const now = new Date().toISOString();
  const task = slurmTaskId();
  const mine: LockInfo = {
    pid: process.pid,
    host: hostname(),
    proc_start: procStart(process.pid),
    since: now,
    sweep,
    heartbeat: now,
    timeout_s: lockTimeoutS(),
    ...(task ? { slurm_task: task, slurm_restart: slurmRestarts() } : {}),
  };
  // host and pid in the temporary names: two hosts may run processes with the same pid
  const me = `${hostTag()}-${process.pid}`;
  const tmp = join(runDir, `.lock.${me}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(mine)}\n`);
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(tmp, path);
        startHeartbeat(runDir, mine);
        return null;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const held = readLock(runDir);
      if (held && lockIsLive(held)) return held;
      // stale (or unreadable): removed, unless the one moved aside is another taker's fresh lock
      const raced = removeStaleLock(runDir);
      if (raced) return raced;
    }
    return readLock(runDir) ?? { pid: -1, host: '?', proc_start: null, since: '?', sweep: '?' };
  } finally {
    rmSync(tmp, { force: true });
  }
}

const isMine = (l: LockInfo | null, mine: LockInfo) => l !== null && l.pid === mine.pid && l.host === mine.host && l.since === mine.since;

const beats = new Map<string, { timer: NodeJS.Timeout; lost: boolean; mine: LockInfo }>();

/** This process held a run's lock, and another process has taken the run over (see assertLockHeld). */
export class LockLostError extends Error {
  override name = 'LockLostError';
}

/**
 * Rewrite the lock's heartbeat every tenth of the timeout while this process holds it. A holder that
 * finds another process's lock in place (it was frozen past the timeout and taken over) has lost the run.
 */
function startHeartbeat(runDir: string, mine: LockInfo): void {
  stopHeartbeat(runDir);
  const entry = { timer: undefined as unknown as NodeJS.Timeout, lost: false, mine };
  const beat = () => {
    if (entry.lost) return;
    if (!isMine(readLock(runDir), mine)) {
      entry.lost = true;
      return;
    }
    try {
      writeJsonAtomic(join(runDir, LOCK_NAME), { ...mine, heartbeat: new Date().toISOString() });
    } catch {
      /* a missed beat; the next one retries */
    }
  };
  // a tenth of the timeout, at most a minute (a timer's delay past 2^31 ms would fire at once, every ms)
  entry.timer = setInterval(beat, Math.min(60_000, Math.max(50, (lockTimeoutS() * 1000) / 10)));
  entry.timer.unref();
  beats.set(runDir, entry);
}

function stopHeartbeat(runDir: string): void {
  const b = beats.get(runDir);
  if (b) clearInterval(b.timer);
  beats.delete(runDir);
}

/** True when this process's lock on the run was taken over by another (see startHeartbeat). */
export function lockLost(runDir: string): boolean {
  return beats.get(runDir)?.lost ?? false;
}

/** Whether this process may still write into the run: its lock is its own, or it took none (assertLockHeld). */
export function mayWrite(runDir: string): boolean {
  try {
    assertLockHeld(runDir);
    return true;
  } catch {
    return false;
  }
}

/**
 * Before a write into a run folder whose lock this process took: the lock is still its own, read from the
 * file now (a process frozen past the lock timeout wakes up with its heartbeat not yet run), or a
 * LockLostError, so that nothing more is written into a run another process is training. A folder this
 * process holds no lock on (a run trained without one, in tests) passes.
 */
export function assertLockHeld(runDir: string): void {
  const b = beats.get(runDir);
  if (!b) return;
  const now = readLock(runDir);
  if (!b.lost && isMine(now, b.mine)) return;
  b.lost = true;
  const by = now ? `pid ${now.pid} on ${now.host} (since ${now.since})` : 'another process';
  throw new LockLostError(
    `${runDir}: taken over by ${by}, which found this process's lock without a heartbeat for longer than the lock timeout (this process stopped or frozen that long, or its heartbeats not reaching the file); this process wrote nothing more to the run, which is the other's now`,
  );
}

/**
 * Remove this process's lock. Best effort: on a disk that has gone read-only or failing (the error a run
 * stops on), a lock that cannot be removed is left, stale once this process has ended (its pid gone; for
 * another host, its heartbeat stopped), and the run's own error is the one said.
 */
export function releaseLock(runDir: string): void {
  // the lock this process took (its start included), not one of the same pid and host taken since by
  // another process (a container's pid 1 beside another's) after this one's went stale
  const mine = beats.get(runDir)?.mine;
  stopHeartbeat(runDir);
  const l = readLock(runDir);
  if (!l || (mine ? !isMine(l, mine) : !isOwnLock(l))) return;
  removeQuietly(join(runDir, LOCK_NAME));
}

/**
 * Remove what a killed process left behind in a run or sweep folder: temporary files
 * `.<name>.<host>.<pid>.tmp` (atomic writes; another host's only when long untouched, src/engine/files.ts
 * isStaleTemp) and `.<step>.<pid>.tmp` checkpoint folders of dead processes; put back a checkpoint
 * moved aside to be replaced and, unless `undoMove` is false, a run half moved aside by `train --force`
 * (src/runfolder/aside.ts; only the lock's holder may). Returns lines telling the user what was put back.
 */
export function cleanStaleTemps(dir: string, undoMove = true): string[] {
  const notes: string[] = [];
  const undone = undoMove ? undoPartialMoveAside(dir) : null;
  if (undone) notes.push(undone);
  restoreAsideCheckpoints(join(dir, RUN_FILES.checkpoints));
  for (const d of [dir, join(dir, RUN_FILES.checkpoints)]) {
    if (!existsSync(d)) continue;
    // checkpoints are written by the run's lock holder alone: there its pid decides (isStaleTemp)
    const pidOnly = d !== dir;
    for (const name of readdirSync(d)) if (isStaleTemp(d, name, pidOnly)) rmSync(join(d, name), { recursive: true, force: true });
  }
  return notes;
}

/**
 * A finished run's leftovers: a stale lock and temporary files of dead processes. It takes no lock, so a
 * half-done move aside is left to the next process that does (a live one may be making that move now).
 */
export function clearStale(runDir: string): void {
  const l = readLock(runDir);
  // as a taker does (acquireLock): a lock another process put in place since this one was read (a train
  // --force of the run took the stale one over) is put back, not removed
  if (existsSync(join(runDir, LOCK_NAME)) && !(l && lockIsLive(l))) removeStaleLock(runDir);
  cleanStaleTemps(runDir, false);
}

/**
 * Removes a lock judged stale: moved aside under this process's name, then read again, since another
 * process may have put its own in place after the judgement. One that proves live is put back and returned;
 * null when the stale one is gone, or was not there to move (another process moved it first).
 */
function removeStaleLock(runDir: string): LockInfo | null {
  const path = join(runDir, LOCK_NAME);
  const aside = join(runDir, `.lock.${hostTag()}-${process.pid}.stale.tmp`);
  try {
    renameSync(path, aside);
  } catch {
    return null;
  }
  try {
    const moved = readLockFile(aside); // null: unreadable, stale
    if (!moved || !lockIsLive(moved)) return null;
    try {
      linkSync(aside, path);
    } catch {
      /* a third process holds it now */
    }
    return moved;
  } finally {
    rmSync(aside, { force: true });
  }
}
