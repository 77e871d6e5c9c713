/**
 * The checkpoint folders of a run (their tensors are written by src/train/checkpoint.ts):
 *   checkpoints/step-<N>/{model,optimizer}.safetensors, state.json   one folder per checkpoint
 *   checkpoints/last.json                                             {step, dir}: the newest complete one
 * A folder is written under a temporary name `.step-<N>.<pid>.tmp` and renamed; state.json is written
 * last, so a folder without it is incomplete.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { pidAlive, writeJsonAtomic } from '../engine/files.ts';
import { readJsonObject, runPath, samePath } from './paths.ts';
import { InputError } from '../config/errors.ts';

/** A checkpoint that cannot be read as asked (the CLI reports it as bad input). */
export class CheckpointError extends InputError {
  override name = 'CheckpointError';
}

/**
 * Every tensor of a checkpoint's model.safetensors (of `names`, those `mine` says the model reads) has a
 * place in the model built from the run's config: a file of a deeper model, copied in from another run,
 * would otherwise load its first blocks and leave the rest unread.
 */
export function checkNoStrayTensors(dir: string, names: Iterable<string>, has: (name: string) => boolean, mine: (name: string) => boolean = () => true): void {
  for (const name of names) {
    if (mine(name) && !has(name)) {
      throw new CheckpointError(`${dir}/model.safetensors: holds ${name}, which the run's model has no place for: the file is of another model (copied in from another run?)`);
    }
  }
}

export const stepDirName = (step: number) => `step-${String(step).padStart(7, '0')}`;

export function checkpointsDir(runDir: string): string {
  return runPath(runDir, 'checkpoints');
}

/** A fresh temporary folder for the checkpoint of `step`; commitCheckpoint puts it in place. */
export function checkpointTempDir(ckptRoot: string, step: number): string {
  mkdirSync(ckptRoot, { recursive: true });
  const tmp = join(ckptRoot, `.${stepDirName(step)}.${process.pid}.tmp`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  return tmp;
}

/** state.json of a checkpoint folder, written last. */
export function writeCheckpointState(dir: string, state: object): void {
  writeJsonAtomic(join(dir, 'state.json'), state);
}

/**
 * A resume from an older checkpoint than the newest (`train --resume --checkpoint step-N`): last.json is
 * pointed back at it, so that the run, killed before its next checkpoint, resumes on the steps it is taking
 * (its metrics were cut at N), not on the newer checkpoint of the steps it left. The newer folders go at the
 * run's next checkpoint (pruneCheckpoints), as any the cadence does not keep; until then `--checkpoint` refuses
 * them (resumeCheckpoint). A checkpoint folder outside the run's is not named.
 */
export function rewindLast(ckptRoot: string, dir: string, step: number): void {
  if (!samePath(dirname(resolve(dir)), ckptRoot)) return;
  const last = lastPointer(ckptRoot);
  if (last?.dir === basename(dir)) return;
  // the folders it goes back from, named: neither the metrics (a kNN row can sit within log_every steps of
  // one, or the rows trained again pass one before the next checkpoint removes it) nor their steps tell them
  const left = listCheckpoints(ckptRoot).map((c) => c.step).filter((s) => s > step);
  writeJsonAtomic(join(ckptRoot, 'last.json'), { step, dir: basename(dir), ...(left.length ? { left } : {}) });
}

/** `step-0000012` -> 12; anything else -> null. */
export function stepOfDir(name: string): number | null {
  const m = /^step-(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** The step-N folders of a checkpoints folder, oldest first. */
export function listCheckpoints(root: string): { dir: string; step: number }[] {
  if (!existsSync(root)) return [];
  if (!statSync(root).isDirectory()) throw new CheckpointError(`${root}: is a file, where moco3 keeps the run's checkpoints: move it away`);
  return readdirSync(root)
    .map((d) => ({ dir: join(root, d), step: stepOfDir(d) }))
    .filter((x): x is { dir: string; step: number } => x.step !== null)
    .sort((a, b) => a.step - b.step);
}

/** Rename a complete temporary folder to step-<N> and point last.json at it; returns the final folder. */
export function commitCheckpoint(ckptRoot: string, tmp: string, step: number): string {
  const name = stepDirName(step);
  const final = join(ckptRoot, name);
  // a folder of the same step (a run stopped right after its checkpoint) is moved aside, not removed, until
  // the new one and last.json are in place; a failure puts it back
  const aside = join(ckptRoot, `.${name}.old.${process.pid}.tmp`);
  const replacing = existsSync(final);
  let placed = false;
  try {
    if (replacing) renameSync(final, aside);
    renameSync(tmp, final);
    placed = true;
    // the folders a rewind left that are still there (the cadence may keep one until it is trained again)
    const left = (lastPointer(ckptRoot)?.left ?? []).filter((s) => s > step && existsSync(join(ckptRoot, stepDirName(s))));
    writeJsonAtomic(join(ckptRoot, 'last.json'), { step, dir: name, ...(left.length ? { left } : {}) });
  } catch (e) {
    // last.json still names the previous checkpoint: no folder newer than it is left behind
    if (placed) rmSync(final, { recursive: true, force: true });
    if (replacing && existsSync(aside)) {
      rmSync(final, { recursive: true, force: true });
      renameSync(aside, final);
    }
    throw e;
  }
  if (replacing) rmSync(aside, { recursive: true, force: true });
  return final;
}

/** The step a checkpoint folder holds (its state.json), or null when it has no readable one. */
export function checkpointFolderStep(dir: string): number | null {
  const s = readJsonObject(join(dir, 'state.json'));
  return typeof s?.step === 'number' ? s.step : null;
}

/** last.json: the newest checkpoint, and `left`: the steps of folders a rewind went back from (rewindLast). */
export function lastPointer(ckptRoot: string): { step: number | null; dir: string; left: number[] } | null {
  const p = readJsonObject(join(ckptRoot, 'last.json'));
  if (!p || typeof p.dir !== 'string') return null;
  const left = Array.isArray(p.left) ? p.left.filter((s): s is number => Number.isSafeInteger(s) && (s as number) >= 0) : [];
  return { step: typeof p.step === 'number' ? p.step : null, dir: p.dir, left };
}

/** The newest complete checkpoint folder (last.json, else the highest step-<N> with a state.json), or null. */
export function findLastCheckpoint(ckptRoot: string): string | null {
  if (!existsSync(ckptRoot)) return null;
  const last = lastPointer(ckptRoot);
  if (last && existsSync(join(ckptRoot, last.dir, 'state.json'))) return join(ckptRoot, last.dir);
  // by step, as listCheckpoints orders them: past step 9,999,999 the names are longer and sort first as text
  const complete = listCheckpoints(ckptRoot).filter((c) => existsSync(join(c.dir, 'state.json')));
  return complete.at(-1)?.dir ?? null;
}

/** The step of the checkpoint last.json names, when it is complete; null otherwise (where a resume starts). */
export function checkpointStep(runDir: string): number | null {
  const root = checkpointsDir(runDir);
  const last = lastPointer(root);
  return last && existsSync(join(root, last.dir, 'state.json')) ? last.step : null;
}

/**
 * Put back a checkpoint that commitCheckpoint moved aside (`.step-<N>.old.<pid>.tmp`) to replace it with
 * one of the same step, when its process was killed before the new folder took the name: last.json still
 * names step-<N>, and the folder aside is the run's only complete copy of it. One whose replacement did
 * take its place is left for the cleanup of dead processes' temporary folders.
 */
export function restoreAsideCheckpoints(ckptRoot: string): void {
  if (!existsSync(ckptRoot)) return;
  for (const d of readdirSync(ckptRoot)) {
    const m = /^\.(step-\d+)\.old\.(\d+)\.tmp$/.exec(d);
    if (!m) continue;
    const pid = Number(m[2]);
    // this process's own (a pid reused by a container started again is this one too) is in the middle of
    // no replacement here: commitCheckpoint moves a folder aside and renames the new one in without a turn
    if (pid !== process.pid && pidAlive(pid)) continue;
    const aside = join(ckptRoot, d);
    const final = join(ckptRoot, m[1]!);
    if (existsSync(join(final, 'state.json')) || !existsSync(join(aside, 'state.json'))) continue;
    rmSync(final, { recursive: true, force: true });
    renameSync(aside, final);
  }
}

/** Remove temporary folders of interrupted writes and older rolling checkpoints not in `keep`. */
export function pruneCheckpoints(ckptRoot: string, keep: (step: number) => boolean, current: string): void {
  if (!existsSync(ckptRoot)) return;
  restoreAsideCheckpoints(ckptRoot);
  for (const d of readdirSync(ckptRoot)) {
    const full = join(ckptRoot, d);
    if (d.startsWith('.') && d.endsWith('.tmp')) {
      const pid = Number(d.split('.').at(-2));
      if (pid === process.pid || !pidAlive(pid)) rmSync(full, { recursive: true, force: true });
      continue;
    }
    const m = /^step-(\d+)$/.exec(d);
    if (m && full !== current && !keep(Number(m[1]))) rmSync(full, { recursive: true, force: true });
  }
}
