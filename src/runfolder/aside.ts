/**
 * `moco3 train --force` moves a previous run's files aside, to `<run>.old-<time>` beside the run folder,
 * one rename per file (the folder itself holds the new run's lock). A process killed in the middle would
 * leave the run split between the two folders, so the move is written down first: `<run>/.aside.json`
 * names the folder the files go to, and is removed once they are all there. Whoever takes the run's lock
 * next (train or a sweep, through cleanStaleTemps in lock.ts) finds the note and puts the moved files
 * back: the killed command is undone, as any failed command leaves a run, and can be given again.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { writeJsonAtomic } from '../engine/files.ts';
import { RUN_FILES, RunFolderError } from './paths.ts';

export const ASIDE_NOTE = '.aside.json';

/** The end of the name moveRunAside gives a run moved aside: `<run>.old-<YYYYMMDDTHHMMSS>[-N]`. */
export const ASIDE_STAMP = String.raw`\.old-\d{8}T\d{6}(-\d+)?`;
export const ASIDE_RUN = new RegExp(`${ASIDE_STAMP}$`);

/** Whether `to` (a note's) names a folder moveRunAside makes for this run: its sibling `<run>.old-<time>`. */
const asideOf = (runDir: string, to: unknown): to is string =>
  typeof to === 'string' && !to.includes('/') && ASIDE_RUN.test(to) && to.replace(ASIDE_RUN, '') === basename(resolve(runDir));

/**
 * The run's `.aside.json`: null when there is none; else the folder it names (`aside`, null when that is no
 * folder of this run's) and the name as written (`to`).
 */
function readNote(runDir: string): { to: unknown; aside: string | null } | null {
  const path = join(runDir, ASIDE_NOTE);
  if (!existsSync(path)) return null;
  let to: unknown;
  try {
    to = (JSON.parse(readFileSync(path, 'utf8')) as { to?: unknown }).to;
  } catch {
    to = undefined;
  }
  return { to, aside: asideOf(runDir, to) ? join(dirname(resolve(runDir)), to) : null };
}

/** The entries of a run folder that a move aside carries: all but the lock and the note. */
const movable = (dir: string) => readdirSync(dir).filter((e) => !e.startsWith(RUN_FILES.lock) && e !== ASIDE_NOTE);

/**
 * A free name for something moved aside: `<base>.old-<YYYYMMDDTHHMMSS>[-N]<ext>` (UTC), N from 2 when the
 * second is taken. Run folders (`ext` '') and a sweep's earlier baselines.json (`.json`) are named alike.
 */
export function asidePath(base: string, ext: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  let aside = `${base}.old-${stamp}${ext}`;
  for (let i = 2; existsSync(aside); i++) aside = `${base}.old-${stamp}-${i}${ext}`;
  return aside;
}

/**
 * Moves the run's files (not its lock) to a new `<run>.old-<time>[-N]` folder beside it; returns that
 * folder. The caller holds the run's lock.
 */
export function moveRunAside(runDir: string, now = new Date()): string {
  const aside = asidePath(resolve(runDir), '', now);
  try {
    // the folder's name only: a run folder moved elsewhere later still finds nothing of another run's
    writeJsonAtomic(join(runDir, ASIDE_NOTE), { to: basename(aside) });
    mkdirSync(aside);
    for (const e of movable(runDir)) renameSync(join(runDir, e), join(aside, e));
    rmSync(join(runDir, ASIDE_NOTE));
  } catch (e) {
    // a file that cannot be moved (no write access, another file system): what moved goes back, and the
    // run is as it was, not split between two folders and read as interrupted until the next lock holder
    // put it back. Should that fail too, the note stays for the next lock holder.
    let undone = true;
    try {
      undoPartialMoveAside(runDir);
    } catch {
      undone = false;
    }
    const err = e as NodeJS.ErrnoException;
    const why = err.code && err.path ? `${err.code} in ${err.syscall ?? 'a file operation'} of ${err.path}` : err.message;
    const hint = err.code === 'EXDEV' ? ' (the run folder is a symbolic link to another file system? give --out the folder it points to)' : '';
    throw new RunFolderError(
      `${runDir}: --force could not move the previous run aside to ${aside}: ${why}${hint}; ` +
        (undone ? 'the previous run is left as it was' : `the next \`moco3 train\` or sweep on it puts its files back (${ASIDE_NOTE})`),
    );
  }
  return aside;
}

/**
 * Undoes a move aside that a killed process left half done: the files already moved go back into the run
 * folder, the folder they were moved to is removed when that leaves it empty. Returns a line saying what
 * was done, or null when there was nothing to undo. The caller holds the run's lock.
 */
export function undoPartialMoveAside(runDir: string): string | null {
  const note = join(runDir, ASIDE_NOTE);
  const read = readNote(runDir);
  if (!read) return null;
  const { to, aside } = read;
  // only a sibling of the run folder named as moveRunAside names it
  if (aside === null) {
    rmSync(note);
    return `${runDir}: removed ${ASIDE_NOTE}, which named no folder of this run's (${JSON.stringify(to ?? null)})`;
  }
  if (!existsSync(aside)) {
    // killed before the folder was made: nothing had moved yet
    rmSync(note);
    return null;
  }
  const kept: string[] = [];
  for (const e of movable(aside)) {
    if (existsSync(join(runDir, e))) kept.push(e);
    else renameSync(join(aside, e), join(runDir, e));
  }
  if (kept.length === 0) rmdirSync(aside);
  rmSync(note);
  return kept.length === 0
    ? `${runDir}: put back the files of the previous run that an interrupted \`train --force\` had begun to move aside`
    : `${runDir}: put back the files of the previous run that an interrupted \`train --force\` had begun to move aside, ` +
        `except ${kept.join(', ')}, which the run folder also holds: those stay in ${aside}`;
}

/**
 * A move aside of this run that has not ended: null without a note; else `folder`, the folder it has begun to
 * fill, or null where nothing of the run's is elsewhere (a note of no folder of this run's, or of a move killed
 * before it made the folder).
 */
export function pendingMoveAside(runDir: string): { folder: string | null } | null {
  const note = readNote(runDir);
  return note && { folder: note.aside && existsSync(note.aside) ? note.aside : null };
}

/**
 * Where a run's file `name` is while a killed move aside holds it (the folder `.aside.json` names), or null:
 * read-only, for a command that needs it before it takes the lock that puts it back.
 */
export function movedAsideFile(runDir: string, name: string): string | null {
  const aside = readNote(runDir)?.aside;
  return aside && existsSync(join(aside, name)) ? join(aside, name) : null;
}
