/**
 * Where a resume starts, checked before a backend starts or a file is written: the checkpoint folder
 * (state.json, model.safetensors, optimizer.safetensors, checkpoints/last.json) and the config it was
 * trained with. Damage is one line naming the file, what is wrong and what to do; when the newest
 * checkpoint is damaged and an older complete one exists, the line offers it. No TensorFlow.js here.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import YAML from 'yaml';
import { canonicalJson, configHash, UNHASHED_KEYS } from '../config/load.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { checkSafetensorsFile, SafetensorsError } from '../engine/safetensors.ts';
import { CheckpointError, lastPointer, listCheckpoints, stepDirName, stepOfDir } from './checkpoints.ts';
import { metricsPath, readMetrics } from './metrics.ts';
import { isObj, readJsonObject, samePath } from './paths.ts';
import { readRunConfigRaw } from './records.ts';
import { readFailure } from '../config/errors.ts';
import { sha256OfFile } from '../engine/files.ts';

/** state.json of a checkpoint as moco3 writes it (the training loop's state at its step; src/train/checkpoint.ts). */
export interface CheckpointState {
  step: number;
  epoch: number;
  wall_s: number;
  train_s: number;
  images_seen: number;
  best_knn_top1: number | null;
  last_knn_top1: number | null;
  last_knn_top5?: number | null;
  last_loss?: number | null;
  config_hash: string;
  optimizer: Record<string, unknown>;
  /** the resolved config the checkpoint was trained with (checkpoints written before it was kept lack it) */
  config?: Record<string, unknown>;
  /** the images of the train split it was trained on (checkpoints written before it was kept lack it) */
  train_images?: number;
  /** each tensor file's size and SHA-256 as written (checkpoints written before they were kept lack them) */
  files?: Record<string, FileDigest>;
}

export interface FileDigest {
  bytes: number;
  sha256: string;
}

/** The tensor files of a checkpoint folder, whose digests state.json keeps. */
export const CHECKPOINT_FILES = ['model.safetensors', 'optimizer.safetensors'] as const;

function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CheckpointError(`${path}: ${readFailure(e)}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new CheckpointError(`${path}: ${text.trim() ? `${what} is not valid JSON (truncated?)` : 'empty'}`);
  }
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isCount = (v: unknown): v is number => isNum(v) && Number.isSafeInteger(v) && v >= 0;

/**
 * A checkpoint's state.json, validated key by key. `complete`: every key moco3 writes is required (a
 * resume); otherwise only step and optimizer (what loading weights needs, e.g. the PyTorch reference's
 * checkpoints), the others checked when present.
 */
export function readCheckpointState(dir: string, complete = true): CheckpointState {
  const path = join(dir, 'state.json');
  const s = readJsonFile(path, 'state');
  const wrong = (key: string, expected: string, got: unknown) => new CheckpointError(`${path}: ${key}: expected ${expected}, got ${JSON.stringify(got) ?? 'nothing'}`);
  if (!isObj(s)) throw new CheckpointError(`${path}: expected a JSON object, got ${JSON.stringify(s)}`);
  const need = (k: string) => complete || s[k] !== undefined;
  if (!isCount(s.step)) throw wrong('step', 'a non-negative integer', s.step);
  if (!isObj(s.optimizer)) throw wrong('optimizer', 'an object', s.optimizer);
  if (need('images_seen') && !isCount(s.images_seen)) throw wrong('images_seen', 'a non-negative integer', s.images_seen);
  for (const k of ['epoch', 'wall_s', 'train_s'] as const) if (need(k) && (!isNum(s[k]) || s[k] < 0)) throw wrong(k, 'a non-negative number', s[k]);
  for (const k of ['best_knn_top1', 'last_knn_top1', 'last_knn_top5', 'last_loss'] as const) {
    if (s[k] !== undefined && s[k] !== null && !isNum(s[k])) throw wrong(k, 'a number or null', s[k]);
  }
  if (need('config_hash') && (typeof s.config_hash !== 'string' || !s.config_hash)) throw wrong('config_hash', 'a string', s.config_hash);
  if (s.train_images !== undefined && !isCount(s.train_images)) throw wrong('train_images', 'a non-negative integer', s.train_images);
  if (s.files !== undefined) {
    const files = s.files;
    if (!isObj(files)) throw wrong('files', 'an object', files);
    for (const f of CHECKPOINT_FILES) {
      const d = files[f];
      if (!isObj(d) || !isCount(d.bytes) || typeof d.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(d.sha256)) {
        throw wrong(`files.${f}`, '{"bytes": N, "sha256": 64 hex digits}', d);
      }
    }
  }
  const named = stepOfDir(dir.split(/[\\/]/).filter(Boolean).at(-1) ?? '');
  if (named !== null && named !== s.step) throw new CheckpointError(`${path}: step ${s.step} does not match its folder (step ${named})`);
  return s as unknown as CheckpointState;
}

/**
 * Every file of a checkpoint folder, validated without reading the tensors' data: its state (see
 * readCheckpointState for `complete`). `modelOnly`: an evaluation's, which reads model.safetensors alone: the
 * optimizer's file is not asked to be whole.
 */
export function checkCheckpoint(dir: string, complete = true, digests = true, modelOnly = false): CheckpointState {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: no such checkpoint folder`);
  const state = readCheckpointState(dir, complete);
  const files = modelOnly ? (['model.safetensors'] as const) : CHECKPOINT_FILES;
  const [model, slots] = files.map((f) => {
    try {
      return checkSafetensorsFile(join(dir, f)).shapes;
    } catch (e) {
      if (e instanceof SafetensorsError) throw new CheckpointError(e.message);
      throw e;
    }
  }) as [Map<string, number[]>, Map<string, number[]> | undefined];
  checkShapes(dir, model, slots ?? new Map());
  if (digests) checkDigests(dir, state, files);
  return state;
}

/**
 * Files whose digest this process found as state.json records it, by path: with their size, times and inode
 * then, and when. Not read again within VERIFIED_MS unchanged (a resume's check and its load, moments apart);
 * a checkpoint loaded later (a sweep's run hours after the sweep checked it) is read again.
 */
const verified = new Map<string, { key: string; at: number }>();
const VERIFIED_MS = 60_000;

/**
 * A checkpoint's tensor files are the bytes that were written: damage that leaves a file's header whole (a bad
 * disk, a copy gone wrong) would load as weights, a NaN among them trained on as a divergence of the run.
 * Checked against state.json's digests where it has them (checkpoints written before they were kept have not).
 */
function checkDigests(dir: string, state: CheckpointState, files: readonly (typeof CHECKPOINT_FILES)[number][] = CHECKPOINT_FILES): void {
  if (!state.files) return;
  for (const f of files) {
    const path = join(dir, f);
    const want = state.files[f]!;
    const st = statSync(path);
    const key = `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}:${want.sha256}`;
    const seen = verified.get(resolve(path));
    if (seen?.key === key && performance.now() - seen.at < VERIFIED_MS) continue;
    const damaged = `the file changed after it was written (damaged on the disk, or copied in from elsewhere)`;
    if (st.size !== want.bytes) throw new CheckpointError(`${path}: ${st.size} bytes where ${join(dir, 'state.json')} records ${want.bytes}: ${damaged}`);
    let got: string;
    try {
      got = sha256OfFile(path).sha256;
    } catch (e) {
      throw new CheckpointError(`${path}: ${readFailure(e)}`);
    }
    if (got !== want.sha256) throw new CheckpointError(`${path}: its SHA-256 is not the one ${join(dir, 'state.json')} records: ${damaged}`);
    verified.set(resolve(path), { key, at: performance.now() });
  }
}

/**
 * The tensors of a checkpoint's two files agree with each other (read from their headers): each momentum
 * encoder tensor has its base encoder tensor's shape, and each optimizer slot (`<param>.<slot>`) its
 * parameter's. A file copied in from a run of another model size is found here, where an older checkpoint
 * can be offered, not once the model is built.
 */
function checkShapes(dir: string, model: Map<string, number[]>, slots: Map<string, number[]>): void {
  const fmt = (s: number[]) => `[${s.join(', ')}]`;
  const differ = (a: string, sa: number[], b: string, sb: number[]) =>
    new CheckpointError(`${dir}: ${a} has shape ${fmt(sa)} but ${b} has ${fmt(sb)}: the files are of different models (one copied in from another run?)`);
  for (const [name, shape] of model) {
    if (!name.startsWith('momentum_encoder.')) continue;
    const base = `base_encoder.${name.slice('momentum_encoder.'.length)}`;
    const want = model.get(base);
    if (want && want.join(',') !== shape.join(',')) throw differ(`model.safetensors ${base}`, want, name, shape);
  }
  for (const [key, shape] of slots) {
    const param = key.slice(0, key.lastIndexOf('.'));
    const want = model.get(param);
    if (want && want.join(',') !== shape.join(',')) throw differ(`model.safetensors ${param}`, want, `optimizer.safetensors ${key}`, shape);
  }
}

/**
 * How a command names a checkpoint to the user (train: `--checkpoint step-N`; eval: the folder). `c.which`:
 * 'previous' (before the damaged one), or 'newest complete' (where the pointer to the newest was damaged).
 */
export type Offer = (c: { dir: string; step: number; which: string }) => string;
export const trainOffer: Offer = (c) => `resume from the ${c.which} checkpoint with --checkpoint step-${c.step} (the later steps are trained again), or start again with --force`;
const trainNone = ': start again with --force';

/** Whether a checkpoint folder is whole (checkCheckpoint finds nothing wrong; its files' digests unless `digests` is false; the model's file alone where `modelOnly`). */
const isComplete = (dir: string, digests = true, modelOnly = false): boolean => {
  try {
    checkCheckpoint(dir, true, digests, modelOnly);
    return true;
  } catch {
    return false;
  }
};

/** The newest complete checkpoint older than `step` and not of steps the run left (`left`), or null (a damaged one: look further back). */
function olderComplete(root: string, step: number, left: (step: number) => boolean, digests = true, modelOnly = false): { dir: string; step: number } | null {
  return listCheckpoints(root).reverse().find((c) => c.step < step && !left(c.step) && isComplete(c.dir, digests, modelOnly)) ?? null;
}

/**
 * The last step metrics.jsonl records (null: no file, or one that cannot be read); a file of no rows
 * reaches step 0, where every run starts (its first row may come only at step log_every).
 */
function lastMetricsStep(runDir: string): number | null {
  const path = metricsPath(runDir);
  if (!existsSync(path) && !existsSync(`${path}.gz`)) return null;
  let rows;
  try {
    rows = readMetrics(path, () => {});
  } catch {
    return null; // unreadable: the resume's own checks say so
  }
  return rows.reduce<number>((m, r) => (Number.isFinite(Number(r.step)) && Number(r.step) > m ? Number(r.step) : m), 0);
}

/**
 * Whether a checkpoint at a step is of steps the run left when it went back to an older checkpoint (its
 * metrics were cut there, and the folders of the later steps stay until the run's next checkpoint), or one
 * whose rows were lost. The folders a rewind left are named in last.json (`left`, src/runfolder/checkpoints.ts
 * rewindLast). Without that (no last.json, a damaged one, or an older moco3's rewind), the metrics tell: a
 * checkpoint they reach is the run's own (a rewind cuts every row after the step it goes back to); past
 * them, the run writes a row at every multiple of train.log_every (and at kNN steps) before that step's
 * checkpoint, so a checkpoint of its own has the metrics reach within log_every - 1 steps of it, and reach
 * the last multiple of log_every before it when that comes after the checkpoint before it (the process
 * that wrote it trained from there at the latest; before, another log_every may have been in effect).
 * The log_every is the one the checkpoint was written with (its state.json keeps the config; log_every is
 * free to change on a resume); for a checkpoint that does not say, the larger of config.yaml's and the
 * caller's (a run called left wrongly would be cut back and trained again). `reached`: the last metrics
 * step (null: no metrics to tell by).
 *
 * With no metrics to tell by, a checkpoint newer than last.json's is left. `pointer`: last.json's step;
 * `named`: the steps last.json names left.
 */
function leftBy(runDir: string, logEvery?: number): { reached: number | null; pointer: number | null; named: Set<number>; left: (step: number) => boolean } {
  const reached = lastMetricsStep(runDir);
  const root = join(runDir, 'checkpoints');
  const ptr = lastPointer(root);
  const pointer = ptr?.step ?? null;
  const named = new Set(ptr?.left ?? []);
  const steps = listCheckpoints(root).map((c) => c.step);
  const known = [logOf(readRunConfigRaw(runDir)), logEvery ?? null].filter((n): n is number => n !== null);
  const fallback = known.length ? Math.max(...known) : null;
  const cadence = (step: number): number | null => logOf(readJsonObject(join(runDir, 'checkpoints', stepDirName(step), 'state.json'))?.config) ?? fallback;
  return {
    reached,
    pointer,
    named,
    left: (step) => {
      if (named.has(step)) return true;
      if (reached === null) return pointer !== null && step > pointer;
      if (step <= reached) return false;
      const n = cadence(step);
      if (n === null) return false;
      if (step >= reached + n) return true;
      const multiple = Math.floor(step / n) * n;
      const before = steps.filter((s) => s < step).at(-1);
      return before !== undefined && multiple > before && reached < multiple;
    },
  };
}

/** train.log_every of a config object, or null. */
function logOf(config: unknown): number | null {
  const train = isObj(config) ? config.train : null;
  return isObj(train) && isCount(train.log_every) && train.log_every > 0 ? train.log_every : null;
}

export interface ResumeOptions {
  /** how a damaged checkpoint's line offers an older one (default: train's `--checkpoint step-N`) */
  offer?: Offer;
  /** what that line says after "no older complete checkpoint" when there is none */
  none?: string;
  /** told when the newest checkpoint gives way to an older one, or leaves a gap in the curves */
  note?: (text: string) => void;
  /** an evaluation: the newest checkpoint's weights are read as they are, whatever rows were lost; its model file alone is checked (the optimizer's is not read) */
  evaluate?: boolean;
  /** the run's train.log_every as the caller has it, for checkpoints that do not keep their config (see leftBy) */
  logEvery?: number;
  /** read the tensor files through to check their digests (default); false: their headers only (`moco3 plan`, a preview) */
  digests?: boolean;
}

/**
 * The checkpoint a resume of `runDir` starts from, validated; null when the run has none. `choice` (the
 * --checkpoint flag) is a folder, `step-N` or `N`. A damaged newest checkpoint fails with one line that
 * offers the newest older complete one (`offer`), or says to start again (`none`). A newest checkpoint
 * whose metrics rows were lost (the machine went down before they reached the disk, the checkpoint after
 * them already there) gives way to the newest complete one the rows reach, so that the steps after it are
 * trained and logged again; `note` is told so (or, with no such checkpoint, that the curves have a gap).
 */
export function resumeCheckpoint(runDir: string, choice?: string, opts: ResumeOptions = {}): string | null {
  const { offer = trainOffer, none = trainNone, note, evaluate = false, digests = true } = opts;
  const root = join(runDir, 'checkpoints');
  const { reached, pointer, named, left } = leftBy(runDir, opts.logEvery);
  const fail = (e: unknown, step: number): never => {
    if (!(e instanceof CheckpointError)) throw e;
    const older = olderComplete(root, step, left, digests, evaluate);
    // the pointer to the newest damaged (step Infinity): no checkpoint is "older" than one it names
    const newest = step === Infinity;
    throw new CheckpointError(`${e.message}; ${older ? offer({ ...older, which: newest ? 'newest complete' : 'previous' }) : `no ${newest ? '' : 'older '}complete checkpoint${none}`}`);
  };
  if (choice !== undefined) {
    const n = /^(step-)?(\d+)$/.exec(choice);
    // a relative path as the results name it (checkpoints/step-N: from the run folder), wherever moco3 runs
    const inRun = !n && !isAbsolute(choice) && !existsSync(choice) && existsSync(join(runDir, choice));
    const dir = n ? join(root, stepDirName(Number(n[2]))) : inRun ? join(runDir, choice) : choice;
    const have = () => {
      const steps = listCheckpoints(root).map((c) => `step-${c.step}`);
      return steps.length ? `${root} holds ${steps.join(', ')}` : `${root} holds none`;
    };
    if (!existsSync(dir)) throw new CheckpointError(`--checkpoint ${choice}: no such checkpoint (${have()})`);
    // a file of a checkpoint, the checkpoints folder or the run folder itself: what to give instead
    const at = resolve(dir);
    if (statSync(dir).isFile() && samePath(dirname(dirname(at)), root) && stepOfDir(basename(dirname(at))) !== null) {
      throw new CheckpointError(`--checkpoint ${choice}: a file of checkpoint ${basename(dirname(at))}; give its folder (or ${basename(dirname(at))})`);
    }
    if (samePath(at, root) || samePath(at, runDir)) {
      throw new CheckpointError(`--checkpoint ${choice}: the run's ${samePath(at, root) ? 'checkpoints folder' : 'folder'}, not one checkpoint; give step-N (${have()})`);
    }
    // another run's checkpoint would be trained on or evaluated, and its results filed, as this run's
    if (!samePath(dirname(resolve(dir)), root)) throw new CheckpointError(`--checkpoint ${choice}: not a checkpoint of ${runDir} (${have()})`);
    // a file of checkpoints/ (last.json), or a folder not named as a step's: nothing to offer in its place
    if (stepOfDir(basename(resolve(dir))) === null || !statSync(dir).isDirectory()) {
      throw new CheckpointError(`--checkpoint ${choice}: not a checkpoint folder (step-N) (${have()})`);
    }
    try {
      checkCheckpoint(dir, true, digests, evaluate);
    } catch (e) {
      fail(e, stepOfDir(dir.split(/[\\/]/).filter(Boolean).at(-1) ?? '') ?? Infinity);
    }
    // a checkpoint of steps the run left when it went back to an older one (its metrics cut there): the run
    // has no record of them, so they are nobody's to resume or evaluate
    const step = stepOfDir(basename(resolve(dir)));
    // an evaluation may read the newest checkpoint (last.json's) past rows that were lost: its weights are the run's
    if (step !== null && (named.has(step) || (reached === null && left(step)))) {
      throw new CheckpointError(
        `--checkpoint ${choice}: step ${step} is of steps the run left when it went back to step ${pointer ?? '?'} (${join(root, 'last.json')}); ` +
          `its next checkpoint removes it (${have()}; give one up to step ${pointer ?? '?'}, or resume without --checkpoint)`,
      );
    }
    if (step !== null && left(step) && !(evaluate && pointer === step)) {
      throw new CheckpointError(
        `--checkpoint ${choice}: step ${step} is ahead of the run's metrics, which end at step ${reached}: it is of steps the run left when it ` +
          `went back to an older checkpoint, or its rows were lost (${have()}; give one up to step ${reached})`,
      );
    }
    return dir;
  }
  if (!existsSync(root)) return null;
  const all = listCheckpoints(root);
  const ptr = join(root, 'last.json');
  let dir: string;
  let step: number;
  if (existsSync(ptr)) {
    try {
      const last = readJsonFile(ptr, 'the pointer to the newest checkpoint');
      if (!isObj(last) || typeof last.dir !== 'string' || stepOfDir(last.dir) === null || !isCount(last.step) || stepOfDir(last.dir) !== last.step) {
        throw new CheckpointError(`${ptr}: expected {"step": N, "dir": "step-N"}, got ${JSON.stringify(last)}`);
      }
      dir = join(root, last.dir);
      step = last.step;
      if (!existsSync(dir)) throw new CheckpointError(`${ptr}: names ${last.dir}, which is missing`);
    } catch (e) {
      return fail(e, Infinity);
    }
    // the run's newest checkpoint, ahead of its metrics by a whole logging interval: rows it wrote before
    // that checkpoint are gone (a rewind points last.json back, so this is not a checkpoint of steps left)
    if (reached !== null && left(step) && !evaluate) {
      const lost = `${metricsPath(runDir)} ${reached ? `ends at step ${reached}` : 'holds no row past step 0'}, before the newest checkpoint (step ${step}): the rows of the steps between were lost`;
      const older = olderComplete(root, step, left, digests);
      if (older) {
        note?.(`${lost}; resuming from step ${older.step}, the newest checkpoint they reach, so that the later steps are trained and logged again`);
        return older.dir;
      }
      // none the rows reach: the complete one nearest after them leaves the smallest gap
      const nearest = listCheckpoints(root).find((c) => c.step < step && c.step > reached && isComplete(c.dir, digests));
      if (nearest) ({ dir, step } = nearest);
      const gap = step > reached + 1 ? `steps ${reached + 1}-${step}` : `step ${step}`;
      note?.(`${lost}, and no complete checkpoint is one they reach: resuming from step ${step}; the curves have no rows of ${gap}`);
    }
  } else {
    // no pointer: a run killed before its first checkpoint, or an older layout; the newest folder of the
    // run's own steps (not one it left when it went back to an older checkpoint)
    const newest = all.filter((c) => existsSync(join(c.dir, 'state.json')) && !left(c.step)).at(-1);
    if (!newest) return null;
    ({ dir, step } = newest);
  }
  try {
    checkCheckpoint(dir, true, digests, evaluate);
  } catch (e) {
    fail(e, step);
  }
  return dir;
}

/** Dotted keys of a nested object -> canonical JSON of their values. */
function flatten(v: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (isObj(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, canonicalJson(v ?? null));
  }
  return out;
}

/** Keys that do not change a run (configHash leaves them out). */
const FREE_KEYS = new Set<string>(UNHASHED_KEYS);

/** The keys whose values differ between a run's config and another, as `key old -> new`, sorted; free keys left out. */
export function configDiffs(old: unknown, now: unknown): string[] {
  const a = flatten(old);
  const b = flatten(JSON.parse(JSON.stringify(now)));
  const diffs: string[] = [];
  for (const k of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    if (FREE_KEYS.has(k) || a.get(k) === b.get(k)) continue;
    diffs.push(`${k} ${a.get(k) ?? '(unset)'} -> ${b.get(k) ?? '(unset)'}`);
  }
  return diffs;
}

/**
 * Resuming trains on with the config the checkpoint was made with: another config fails with one line
 * naming each key that differs (old -> new) and the ways forward.
 */
export function checkResumeConfig(runDir: string, config: ResolvedRunConfig, state: Pick<CheckpointState, 'config_hash' | 'config'>): void {
  const hash = configHash(config);
  if (state.config_hash === hash) return;
  const ways = 'start again with --force, or drop the changes (or train into another --out)';
  let diffs: string[] = [];
  const path = join(runDir, 'config.yaml');
  try {
    // the checkpoint's own config when it keeps one (config.yaml may have been edited since), else config.yaml
    diffs = configDiffs(isObj(state.config) ? state.config : YAML.parse(readFileSync(path, 'utf8')), config);
  } catch {
    diffs = [];
  }
  if (diffs.length) throw new CheckpointError(`${runDir}: was trained with another config: ${diffs.join(', ')}; to resume it, ${ways}`);
  throw new CheckpointError(`${runDir}: its checkpoint belongs to config ${state.config_hash}, this config is ${hash}; ${ways}`);
}
