/** Files that are rewritten are written to a temporary name, flushed, and renamed: a reader sees the old or the new file, never half of one. */
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants, fchmodSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmdirSync, rmSync, readFileSync, statfsSync, statSync, writeFileSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { hostname } from 'node:os';
import { DISK_FAULTS, InputError, notInputFault } from '../config/errors.ts';

/**
 * The name of this process's temporary file for `name`: `.<name>.<host>.<pid>.tmp`. The host is in it
 * because hosts sharing a folder (a results folder on a cluster's network disk) can run the same pid, and
 * whoever cleans up must tell its own dead processes' files from those of live processes elsewhere.
 */
export function tempName(name: string): string {
  return `.${name}.${hostTag()}.${process.pid}.tmp`;
}

/** A temporary file of another host, whose pids this one cannot see, untouched this long was left by a process that died. */
export const FOREIGN_TEMP_STALE_MS = 60 * 60 * 1000;

/**
 * Whether the temporary file or folder `name` in `dir` (`.<...>[.-]<pid>[.stale].tmp`) was left by a
 * process that no longer runs: this host's when its pid is gone; another host's, or one whose name says no
 * host (earlier versions), only once untouched for FOREIGN_TEMP_STALE_MS. `pidOnly`: the pid decides
 * alone, for a folder only the run's lock holder writes in (its checkpoints).
 */
export function isStaleTemp(dir: string, name: string, pidOnly = false): boolean {
  const m = /[.-](\d+)(?:\.stale)?\.tmp$/.exec(name);
  if (!name.startsWith('.') || !m) return false;
  const pid = Number(m[1]);
  if (pidOnly || name.slice(0, m.index).endsWith(`.${hostTag()}`)) return pid !== process.pid && !pidAlive(pid);
  try {
    return Date.now() - statSync(join(dir, name)).mtimeMs > FOREIGN_TEMP_STALE_MS;
  } catch {
    return false;
  }
}

/** The size and SHA-256 of a file, read in pieces (a file of any size; synchronous, for checks that run before a command starts). */
export function sha256OfFile(path: string): { bytes: number; sha256: string } {
  const h = createHash('sha256');
  const piece = Buffer.allocUnsafe(1 << 24);
  const fd = openSync(path, 'r');
  let bytes = 0;
  try {
    for (let n; (n = readSync(fd, piece, 0, piece.length, null)) > 0; bytes += n) h.update(piece.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: h.digest('hex') };
}

/** A word quoted for bash (a path in a command a line tells the user to run, or a script moco3 writes). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Whether `path` is there and a file (not a folder, nor a link to one). */
export const isFile = (path: string): boolean => existsSync(path) && statSync(path).isFile();

/**
 * Remove a file or folder (recursively) on an error path, where the error being raised is the one to say:
 * on a disk gone read-only or failing the removal fails too, and its error would hide the first. What is
 * left is a temporary of this process, which the next run's clean-up removes.
 */
export function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    /* left, as said above */
  }
}

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), tempName(basename(path)));
  // the file it replaces keeps its permissions (a user's chmod 600 of a run's files)
  let mode: number | undefined;
  try {
    mode = statSync(path).mode & 0o7777;
  } catch {
    /* a new file: the default */
  }
  let fd: number | null = null;
  let closed = false;
  try {
    fd = openSync(tmp, 'w', mode);
    if (mode !== undefined) fchmodSync(fd, mode);
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    // a write's or fsync's error (a full disk's ENOSPC) is of the descriptor: it is given the file's path
    withPath(path, () => {
      while (off < buf.length) off += writeSync(fd!, buf, off, buf.length - off);
      fsyncSync(fd!);
    });
    closed = true;
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== null && !closed) closeSync(fd);
    removeQuietly(tmp);
    // the error names the file being written, not its temporary name
    const sys = e as NodeJS.ErrnoException;
    if (sys instanceof Error && sys.path === tmp) sys.path = path;
    throw e;
  }
  syncFolder(dirname(path));
}

/**
 * The folder's entries made durable (a rename into it is on the disk once this returns), where the file
 * system can: one that cannot sync a folder (EINVAL, EISDIR, EPERM, EACCES) keeps its own order.
 */
function syncFolder(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    withPath(dir, () => fsyncSync(fd));
  } catch (e) {
    if (!['EINVAL', 'EISDIR', 'EPERM', 'EACCES', 'EBADF', 'ENOTSUP'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    closeSync(fd);
  }
}

export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** An output location that cannot take a run's files (a file where a folder goes, no write access, a full disk). */
export class OutputError extends InputError {
  override name = 'OutputError';
}

/** The free space an output folder needs before anything starts; a checkpoint write that still fails is handled where it happens. */
export const MIN_FREE_BYTES = 16 * 2 ** 20;

/**
 * Checks that `dir` is (or can be made) a folder moco3 can write to, creating nothing that stays: every
 * existing part of the path is a folder, the nearest existing one takes a file, and its disk has room.
 * `label` names the flag (e.g. `--out results/x`), and `named` the path it gives (default `dir`): a file
 * found at another path (the sweep's folder under --results) is named. With `write: false` (a --dry-run,
 * which touches nothing) write access is asked of the file system instead of shown by creating a file; with
 * `access: false` (a command that only reads there) only the folders of the path are checked; with
 * `space: false` (a command that writes a small result file) the free space is not.
 */
export function checkOutputDir(dir: string, label: string, named: string = dir, { write = true, access = true, space = true }: { write?: boolean; access?: boolean; space?: boolean } = {}): void {
  if (dir.trim() === '') throw new OutputError(`${label.trim()} '': expected a folder path`);
  const abs = resolve(dir);
  let at = abs;
  // the nearest existing ancestor (or dir itself); each existing part must be a folder
  for (;;) {
    let st: Stats | undefined;
    try {
      st = statSync(at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOTDIR: a file further up; the walk up finds it
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new OutputError(`${label}: cannot be used (${code ?? String(e)}): give another folder`);
    }
    if (st) {
      if (!st.isDirectory()) throw new OutputError(`${label}: ${at === resolve(named) ? 'is a file' : `${at} is a file`}, not a folder: give a folder path`);
      break;
    }
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  if (!access) return;
  // host and pid in its name: another host's probe in a shared folder is never this one's
  const probe = join(at, tempName('moco3-write-test'));
  try {
    if (write) closeSync(openSync(probe, 'wx'));
    else accessSync(at, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EACCES' || code === 'EPERM' ? 'no write access' : code === 'EROFS' ? 'a read-only file system' : code === 'ENOSPC' ? 'the disk is full' : (code ?? String(e));
    const err = new OutputError(`${label}: cannot write in ${at} (${why}): give a folder you can write to`);
    // a full or failing disk is no fault of the folder given (exit 1, src/cli/main.ts); a denied one is (2)
    throw code !== undefined && DISK_FAULTS.has(code) ? notInputFault(err) : err;
  } finally {
    if (write) rmSync(probe, { force: true });
  }
  // a run's start needs room for its checkpoints; a small result file does not
  if (!space) return;
  try {
    const fs = statfsSync(at);
    const free = fs.bavail * fs.bsize;
    if (free < MIN_FREE_BYTES) {
      throw notInputFault(new OutputError(`${label}: the disk of ${at} has ${(free / 2 ** 20).toFixed(1)} MiB free, less than the ${MIN_FREE_BYTES / 2 ** 20} MiB a run needs to start: free some space or give another folder`));
    }
  } catch (e) {
    if (e instanceof OutputError) throw e;
    /* statfs is not everywhere: the writes themselves report a full disk */
  }
}

/**
 * The nearest part of `path` above it that exists and is not a folder (`/a/f` for `/a/f/x/y`, `f` a file), or
 * null: a path below a file, which nothing can be made in (`path` itself is not looked at).
 */
export function fileAbove(path: string): string | null {
  for (let at = dirname(resolve(path)); ; at = dirname(at)) {
    try {
      return statSync(at).isDirectory() ? null : at;
    } catch {
      /* not there (or a file further up): look further up */
    }
    if (dirname(at) === at) return null;
  }
}

/**
 * The folders above `path` that do not exist yet, outermost first: what making `path` would make, so that a
 * command that fails can remove them again (bad input leaves no trace).
 */
export function missingAncestors(path: string): string[] {
  const out: string[] = [];
  for (let d = dirname(resolve(path)); !existsSync(d) && dirname(d) !== d; d = dirname(d)) out.unshift(d);
  return out;
}

/**
 * Remove the folders a failed command made (`missingAncestors` of what it would have made, and that path),
 * deepest first, while they are empty: the first one that holds something stays, and so do those above it.
 */
export function removeEmptyFolders(folders: readonly string[]): void {
  // deepest first by their absolute paths' depth (a relative path's length says nothing of its depth)
  const depth = (d: string) => d.split(sep).length;
  for (const d of folders.map((f) => resolve(f)).sort((a, b) => depth(b) - depth(a))) {
    if (!existsSync(d) || readdirSync(d).length > 0) return;
    rmdirSync(d);
  }
}

/** This machine's name as it goes into a file's name (temporary files that say which host wrote them). */
export function hostTag(): string {
  return hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'host';
}

/** Whether a process of this host with this pid still lives (stale temporary folders, locks and run statuses are told by it). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock of withFileLock untouched this long is a dead holder's: the section it guards takes milliseconds. */
export const FILE_LOCK_STALE_MS = 30_000;

/** Whether a lock file of withFileLock is a dead holder's (false when it is gone: try again). */
function lockStale(lock: string): boolean {
  try {
    const [host, pid] = readFileSync(lock, 'utf8').trim().split(' ');
    return (host === hostTag() && !pidAlive(Number(pid))) || Date.now() - statSync(lock).mtimeMs > FILE_LOCK_STALE_MS;
  } catch {
    return false;
  }
}

/**
 * Removes a stale lock, judged again while holding `<lock>.break` (made with O_EXCL): every removal of the
 * lock happens under it, and while the stale lock is there no one can make a new one, so a waiter that
 * judged the old lock stale cannot remove the lock a faster waiter has made since. A breaker left by a dead
 * process (it is held for microseconds) is removed in turn.
 */
function breakStaleLock(lock: string, me: string): boolean {
  const breaker = `${lock}.break`;
  try {
    writeFileSync(breaker, me, { flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    if (!lockStale(breaker)) return false; // another waiter is breaking it: wait
    rmSync(breaker, { force: true });
    return true;
  }
  try {
    if (lockStale(lock)) rmSync(lock, { force: true });
  } finally {
    removeOwn(breaker, me);
  }
  return true;
}

/** Removes a lock file of this process's, not one another has made in its place. */
function removeOwn(file: string, me: string): void {
  let mine = false;
  try {
    mine = readFileSync(file, 'utf8') === me;
  } catch {
    /* gone */
  }
  if (mine) rmSync(file, { force: true });
}

/**
 * Runs `f` holding the lock file `.<name>.lock` beside `path`, for a read-merge-write of `path` by processes
 * that may run on several hosts sharing the folder (the lock is made with O_EXCL, as on a network disk). A
 * lock left by a dead process of this host, or untouched for FILE_LOCK_STALE_MS, is taken over.
 */
export function withFileLock<T>(path: string, f: () => T): T {
  mkdirSync(dirname(path), { recursive: true });
  const lock = join(dirname(path), `.${basename(path)}.lock`);
  const me = `${hostTag()} ${process.pid}\n`;
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      writeFileSync(lock, me, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    // a lock that is not stale, or one another waiter is breaking: wait for it, without spinning
    if (!lockStale(lock) || !breakStaleLock(lock, me)) Atomics.wait(wait, 0, 0, 20);
  }
  try {
    return f();
  } finally {
    // its own lock only: one taken over meanwhile (this process frozen past FILE_LOCK_STALE_MS) is the new holder's
    removeOwn(lock, me);
  }
}

/**
 * Runs `f`, and gives a system error it throws without a path (a write on an open file: ENOSPC, EIO) the
 * path of the file it was writing, so that the one-line error names it (src/cli/main.ts).
 */
export function withPath<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const sys = e as NodeJS.ErrnoException;
    if (sys instanceof Error && typeof sys.code === 'string' && sys.path === undefined) sys.path = path;
    throw e;
  }
}
