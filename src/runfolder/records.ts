/** The run folder's descriptive files: config.yaml, meta.json, and the evaluation results knn.json / linear.json. */
import { existsSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { canonicalJson, configHash, LATER_KEYS, loadConfigFile, sectionOf, resolveConfig, validateConfig, ConfigError } from '../config/load.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { writeFileAtomic, writeJsonAtomic } from '../engine/files.ts';
import { asidePath } from './aside.ts';
import { isObj, readJsonObject, readYamlObject, runPath, type Obj } from './paths.ts';

/** A folder is a run folder when it holds a config.yaml. */
export function isRunDir(dir: string): boolean {
  return existsSync(runPath(dir, 'config'));
}

/** A folder that holds a sweep: run folders, or the plan of one (sweep.yaml); not a run folder itself. */
export function isSweepDir(dir: string): boolean {
  return existsSync(dir) && statSync(dir).isDirectory() && !isRunDir(dir) && (existsSync(join(dir, 'sweep.yaml')) || readdirSync(dir).some((e) => isRunDir(join(dir, e))));
}

export function writeRunConfig(runDir: string, yaml: string): void {
  writeFileAtomic(runPath(runDir, 'config'), yaml);
}

/** config.yaml as written (nested, not validated), or null when missing or unreadable. */
export function readRunConfigRaw(runDir: string): Obj | null {
  return readYamlObject(runPath(runDir, 'config'));
}

/** The resolved config a run folder was trained with (its config.yaml, validated). */
export function loadRunConfig(runDir: string): ResolvedRunConfig {
  const path = runPath(runDir, 'config');
  if (!existsSync(path)) {
    // a run's folder that lost it is not "not a run folder"
    const ran = [runPath(runDir, 'status'), runPath(runDir, 'metrics'), join(runDir, 'checkpoints')].some((p) => existsSync(p));
    throw new ConfigError(ran ? `${path}: missing: put the run's config back (each checkpoint's state.json keeps it)` : `${runDir}: no config.yaml (not a run folder)`);
  }
  const blame = () => path;
  // a config.yaml written before a key existed stands for that key's old value (as its hash does)
  const raw = loadConfigFile(path);
  for (const [key, old] of Object.entries(LATER_KEYS)) {
    // in the section config.yaml has (a config without the section fails as before)
    const at = sectionOf(raw, key);
    if (at && !(at[1] in at[0])) at[0][at[1]] = old;
  }
  return resolveConfig(validateConfig(raw, blame), blame);
}

/**
 * A line when config.yaml no longer hashes to the config the run was trained with (meta.json's
 * config_hash, written at each start): edited by hand since, it would have the run read as what it never
 * trained (a report's column, an evaluation's data). Null when it matches, or nothing records the hash.
 */
export function editedConfigNote(runDir: string): string | null {
  let trained: unknown;
  let now: string;
  try {
    trained = readJsonObject(runPath(runDir, 'meta'))?.config_hash;
    now = configHash(loadRunConfig(runDir));
  } catch {
    return null; // a damaged meta.json or config.yaml: the commands that read them say so
  }
  if (typeof trained !== 'string' || trained === now) return null;
  return `${runPath(runDir, 'config')}: not the config the run was trained with (it hashes to ${now}; meta.json records ${trained}): edited since? it is read as it is now`;
}

/** The fields of meta.json that describe one start of a run (where, on what, by which command, from which step). */
const START_KEYS = ['started', 'host', 'backend', 'device', 'command', 'resumed_from_step'] as const;

/**
 * meta.json: the latest start's fields at the top, and `starts`, every start of the run in order. A resume
 * appends its own to the ones meta.json holds (a file older than `starts` counts as one start), so a run
 * resumed on another host or backend still says where its first steps ran.
 */
export function writeMeta(runDir: string, meta: Obj, resumed = false): string | null {
  const startOf = (m: Obj) => Object.fromEntries(START_KEYS.filter((k) => k in m).map((k) => [k, m[k]]));
  const path = runPath(runDir, 'meta');
  let earlier: Obj[] = [];
  let note: string | null = null;
  if (resumed) {
    const prev = readJsonObject(path);
    if (prev) earlier = Array.isArray(prev.starts) ? (prev.starts as Obj[]) : [startOf(prev)];
    else if (existsSync(path) && statSync(path).isFile()) {
      // damaged (a full disk, an edit): its earlier starts cannot be read; kept beside it, not written over
      const kept = asidePath(path.replace(/\.json$/, ''), '.json');
      renameSync(path, kept);
      note = `${path}: damaged, so this start is the first it lists; the damaged file is kept as ${basename(kept)}`;
      meta = { ...meta, earlier_starts: `unknown: meta.json was damaged, kept as ${basename(kept)}` };
    }
  }
  writeJsonAtomic(path, { ...meta, starts: [...earlier, startOf(meta)] });
  return note;
}

/** What tells two evaluation results apart besides how long they took and where they were run from. */
const sameEval = (a: unknown, b: unknown): boolean => {
  const drop = (v: unknown) => (isObj(v) ? Object.fromEntries(Object.entries(v).filter(([k]) => !['seconds', 'checkpoint', 'wrote'].includes(k))) : v);
  return canonicalJson(drop(a)) === canonicalJson(drop(b));
};

/**
 * knn.json / linear.json (or, `step` given, knn-step-N.json / linear-step-N.json: an earlier checkpoint's):
 * the full result of a run-folder evaluation. One there already of another result (the run's own probe,
 * evaluated again with other settings) is kept as `<name>.old-<time>.json`, whose name is returned; null
 * when there was none, or the same result again.
 */
export function writeEvalResult(runDir: string, kind: 'knn' | 'linear', result: object, step?: number | string): string | null {
  const name = step === undefined ? kind : `${kind}-step-${step}`;
  const path = join(runDir, `${name}.json`);
  let kept: string | null = null;
  if (existsSync(path)) {
    let earlier: unknown = null;
    try {
      earlier = JSON.parse(readFileSync(path, 'utf8'));
    } catch {
      /* unreadable: kept as it is, beside the new one */
    }
    if (!sameEval(earlier, JSON.parse(JSON.stringify(result)))) {
      kept = asidePath(join(runDir, name), '.json');
      renameSync(path, kept);
    }
  }
  writeJsonAtomic(path, result);
  return kept === null ? null : basename(kept);
}
