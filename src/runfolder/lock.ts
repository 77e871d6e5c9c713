/**
 * One lock file per run (`<run>/.lock`) so two sweeps never train the same run. It is created whole
 * (written to a temporary file, then hard-linked into place, which fails when a lock exists), and a
 * lock whose process is gone (same host, pid dead or reused) is stale and taken over.
 */
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { RUN_FILES } from './paths.ts';

export interface LockInfo {
  pid: number;
  host: string;
  /** the process's start time from /proc (clock ticks since boot), to tell a reused pid apart */
  proc_start: string | null;
  since: string;
  sweep: string;
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

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readLock(runDir: string): LockInfo | null {
  try {
    return JSON.parse(readFileSync(join(runDir, LOCK_NAME), 'utf8')) as LockInfo;
  } catch {
    return null;
  }
}

/** True when the lock's process still runs (another host's lock is taken as live). */
export function lockIsLive(l: LockInfo): boolean {
  if (l.host !== hostname()) return true;
  if (l.pid === process.pid) return true;
  if (!pidAlive(l.pid)) return false;
  const start = procStart(l.pid);
  return l.proc_start === null || start === null || start === l.proc_start;
}

/** The live lock on a run, or null. */
export function liveLock(runDir: string): LockInfo | null {
  const l = readLock(runDir);
  return l && lockIsLive(l) ? l : null;
}

/**
 * Take the run's lock. Returns null on success, or the live lock that holds it.
 */
export function acquireLock(runDir: string, sweep: string): LockInfo | null {
  mkdirSync(runDir, { recursive: true });
  const path = join(runDir, LOCK_NAME);
  const mine: LockInfo = { pid: process.pid, host: hostname(), proc_start: procStart(process.pid), since: new Date().toISOString(), sweep };
  const tmp = join(runDir, `.lock.${process.pid}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(mine)}\n`);
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(tmp, path);
        return null;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const held = readLock(runDir);
      if (held && lockIsLive(held)) return held;
      // stale (or unreadable): move it aside under our pid, then check we moved the one we judged
      const aside = join(runDir, `.lock.${process.pid}.stale.tmp`);
      try {
        renameSync(path, aside);
      } catch {
        continue; // someone else moved it first
      }
      let moved: LockInfo | null = null;
      try {
        moved = JSON.parse(readFileSync(aside, 'utf8')) as LockInfo;
      } catch {
        /* unreadable: stale */
      }
      if (moved && lockIsLive(moved)) {
        // we raced another taker and moved its fresh lock: put it back
        try {
          linkSync(aside, path);
        } catch {
          /* a third process holds it now */
        }
        rmSync(aside, { force: true });
        return moved;
      }
      rmSync(aside, { force: true });
    }
    return readLock(runDir) ?? { pid: -1, host: '?', proc_start: null, since: '?', sweep: '?' };
  } finally {
    rmSync(tmp, { force: true });
  }
}

export function releaseLock(runDir: string): void {
  const l = readLock(runDir);
  if (l && l.pid === process.pid && l.host === hostname()) rmSync(join(runDir, LOCK_NAME), { force: true });
}

/**
 * Remove what a killed process left behind in a run folder: temporary files `.<name>.<pid>.tmp`
 * (atomic writes) and `.<step>.<pid>.tmp` checkpoint folders of dead processes.
 */
export function cleanStaleTemps(dir: string): void {
  for (const d of [dir, join(dir, RUN_FILES.checkpoints)]) {
    if (!existsSync(d)) continue;
    for (const name of readdirSync(d)) {
      const m = /^\..*\.(\d+)(?:\.stale)?\.tmp$/.exec(name);
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid !== process.pid && !pidAlive(pid)) rmSync(join(d, name), { recursive: true, force: true });
    }
  }
}

/** A finished run's leftovers: a stale lock and temporary files of dead processes. */
export function clearStale(runDir: string): void {
  const l = readLock(runDir);
  if (existsSync(join(runDir, LOCK_NAME)) && !(l && lockIsLive(l))) rmSync(join(runDir, LOCK_NAME), { force: true });
  cleanStaleTemps(runDir);
}
