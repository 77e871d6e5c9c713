/**
 * Sweep files: a subset of the W&B sweep format (`name`, `method: grid`, `parameters: {key: {value | values}}`)
 * plus moco3's `preset`, `seeds`, `by_optimizer` (grids that belong to one optimizer) and `launcher` (Slurm
 * settings, src/sweep/launcher.ts). Keys of `parameters`
 * are dotted keys of the run config; every value is checked against the config schema here, so a bad file
 * stops before anything starts.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, deepMerge, flatten, nest, notUtf8At, parseYaml, utf8Text, validateConfig } from '../config/load.ts';
import { PRESET_NAMES, type PresetName } from '../config/presets.ts';
import { DEFAULTS, OPTIMIZER_NAMES, type OptimizerName } from '../config/schema.ts';
import { InputError, readFailure } from '../config/errors.ts';
import { parseLauncherSection, type LauncherSettings } from './launcher.ts';
import { isFile } from '../engine/files.ts';
import { readYamlObject } from '../runfolder/paths.ts';
import { isRunDir } from '../runfolder/records.ts';

/** Bad input in a sweep file or sweep flags: one line naming the file (or flag) and the key. */
export class SweepError extends InputError {
  override name = 'SweepError';
}

/** dotted config key -> the values it takes (one for `value`, several for `values`) */
export type Grid = Map<string, unknown[]>;

export interface SweepSpec {
  /** the file it came from, as the user named it (used in messages) */
  file: string;
  name: string;
  description: string | null;
  method: 'grid';
  preset: PresetName | null;
  seeds: number[];
  parameters: Grid;
  byOptimizer: Map<OptimizerName, Grid>;
  /** the file's `launcher:` section (keys it sets) */
  launcher: Partial<LauncherSettings>;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const TOP_KEYS = ['name', 'description', 'method', 'preset', 'seeds', 'parameters', 'by_optimizer', 'launcher'] as const;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The folder of the sweeps shipped with moco3 (src/sweep -> ../../sweeps; dist/sweep likewise). */
export const SHIPPED_SWEEPS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'sweeps');

export function shippedSweeps(): string[] {
  if (!existsSync(SHIPPED_SWEEPS_DIR)) return [];
  return readdirSync(SHIPPED_SWEEPS_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

/**
 * A sweep argument to a file: an existing path, else `sweeps/<name>.yaml` in the working directory,
 * else the sweeps shipped with moco3.
 */
export function findSweepFile(arg: string): string {
  if (isFile(arg)) return arg;
  // a folder (a sweep's results, which moco3 report takes, or a run's) given for a file: said as such, not "not found"
  // (what the folder holds is read only when it is said: a folder named as a shipped sweep passes to that sweep)
  const folder = existsSync(arg) && statSync(arg).isDirectory();
  const notFile = (hint = '') => (folder ? (folderForSweepFile(arg) ?? `${arg}: is a folder, not a sweep file${hint}`) : `${arg}: sweep file not found`);
  const ext = extname(arg);
  if (ext === '.yaml' || ext === '.yml' || arg.includes('/')) throw new SweepError(notFile());
  for (const cand of [join('sweeps', `${arg}.yaml`), join(SHIPPED_SWEEPS_DIR, `${arg}.yaml`)]) {
    if (isFile(cand)) return cand;
  }
  if (folder) throw new SweepError(notFile(" (a sweep file's path, or the name of a shipped sweep)"));
  const known = shippedSweeps();
  throw new SweepError(`${arg}: no such sweep (a file path, or one of: ${known.join(', ') || 'none shipped'})`);
}

/**
 * A run's or a sweep's results folder given for a sweep file, said with what goes there: a sweep's results
 * folder (it holds the sweep.yaml a sweep writes) names the sweep it ran (that file's `file`), a run folder
 * is for `moco3 eval`. Null for any other folder.
 */
function folderForSweepFile(dir: string): string | null {
  if (isRunDir(dir)) return `${dir}: a run folder, not a sweep file (give a sweep's name or file; moco3 eval takes a run folder)`;
  const plan = join(dir, 'sweep.yaml');
  if (existsSync(plan)) {
    const file = readYamlObject(plan)?.file;
    const which = typeof file === 'string' && file !== '' ? `its sweep, ${file},` : "the sweep's name or file";
    return `${dir}: a sweep's results folder, not a sweep file (give ${which} with the flags it ran with; moco3 report takes the folder)`;
  }
  return null;
}

/** The leaf keys of the run config, dotted (`optim.base_lr`); `seed` is set by `seeds`. */
export function configLeafKeys(): string[] {
  return [...flatten(DEFAULTS).keys()];
}

export { nest };

const SENTINEL = '\u0000';

/** Check one value of one key against the config schema; throws a SweepError naming file and key. */
function checkValue(file: string, where: string, key: string, value: unknown): void {
  try {
    validateConfig(deepMerge(structuredClone(DEFAULTS), nest(key, value)), () => SENTINEL);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    let text = e.message.startsWith(`${SENTINEL}: `) ? e.message.slice(SENTINEL.length + 2) : e.message;
    if (text.startsWith(`${key}: `)) text = text.slice(key.length + 2);
    throw new SweepError(`${file}: ${where}.${key}: ${text}`);
  }
}

function parseGrid(file: string, where: string, raw: unknown, leafKeys: Set<string>): Grid {
  if (!isObj(raw)) throw new SweepError(`${file}: ${where}: expected a mapping of config keys to {value: x} or {values: [x, ...]}, got ${describe(raw)}`);
  const grid: Grid = new Map();
  for (const [key, spec] of Object.entries(raw)) {
    const at = `${where}.${key}`;
    if (key === 'seed') throw new SweepError(`${file}: ${at}: set seeds with the top-level key seeds: [0, 1, ...]`);
    if (!leafKeys.has(key)) {
      const section = key.includes('.') ? key.slice(0, key.lastIndexOf('.')) : '';
      const near = [...leafKeys].filter((k) => section && k.startsWith(`${section}.`));
      throw new SweepError(`${file}: ${at}: unknown key (expected a dotted config key such as ${near.length ? near.join(', ') : 'optim.base_lr, optim.batch_size, model.patch_proj'})`);
    }
    if (!isObj(spec)) throw new SweepError(`${file}: ${at}: expected {value: x} or {values: [x, ...]}, got ${describe(spec)}`);
    const extra = Object.keys(spec).filter((k) => k !== 'value' && k !== 'values');
    if (extra.length) throw new SweepError(`${file}: ${at}.${extra[0]}: unknown key (expected value or values; only grid sweeps are supported)`);
    const hasValue = 'value' in spec;
    const hasValues = 'values' in spec;
    if (hasValue === hasValues) throw new SweepError(`${file}: ${at}: expected exactly one of value or values`);
    let values: unknown[];
    if (hasValues) {
      if (!Array.isArray(spec.values)) throw new SweepError(`${file}: ${at}.values: expected a list, got ${describe(spec.values)}`);
      if (spec.values.length === 0) throw new SweepError(`${file}: ${at}.values: empty grid (expected at least one value)`);
      values = spec.values;
    } else {
      values = [spec.value];
    }
    // each value checked first: NaN and the infinities (no JSON, all written null) are said as what they are
    for (const v of values) {
      try {
        checkValue(file, where, key, v);
      } catch (e) {
        // a list under value (one value) where values (a grid of them) was meant: said with the way to write it
        if (e instanceof SweepError && hasValue && Array.isArray(spec.value)) throw new SweepError(`${e.message} (a grid of several values is written {values: [...]})`);
        throw e;
      }
    }
    const seen = new Set<string>();
    for (const v of values) {
      const k = JSON.stringify(v);
      if (seen.has(k)) throw new SweepError(`${file}: ${at}.values: ${k} is listed twice`);
      seen.add(k);
    }
    grid.set(key, values);
  }
  return grid;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (isObj(v)) return 'a mapping';
  return JSON.stringify(v);
}

/** Parse and check a sweep document. `file` names it in every message. */
export function parseSweep(doc: unknown, file: string): SweepSpec {
  if (!isObj(doc)) throw new SweepError(`${file}: expected a YAML mapping with name, method, parameters, ...`);
  for (const k of Object.keys(doc)) {
    if (!(TOP_KEYS as readonly string[]).includes(k)) throw new SweepError(`${file}: ${k}: unknown key (expected one of: ${TOP_KEYS.join(', ')})`);
  }
  let name = basename(file).replace(/\.ya?ml$/, '');
  if (doc.name !== undefined) {
    if (typeof doc.name !== 'string' || !NAME_RE.test(doc.name)) {
      throw new SweepError(`${file}: name: expected a folder-safe name (letters, digits, ., _, -), got ${describe(doc.name)}`);
    }
    name = doc.name;
  }
  if (!NAME_RE.test(name)) throw new SweepError(`${file}: name: the file name is not folder-safe; add name: <letters, digits, ., _, ->`);
  if (doc.description !== undefined && typeof doc.description !== 'string') {
    throw new SweepError(`${file}: description: expected a string, got ${describe(doc.description)}`);
  }
  const method = doc.method ?? 'grid';
  if (method !== 'grid') throw new SweepError(`${file}: method: expected grid (random and bayes are not supported), got ${describe(method)}`);
  let preset: PresetName | null = null;
  if (doc.preset !== undefined && doc.preset !== null) {
    if (!(PRESET_NAMES as readonly unknown[]).includes(doc.preset)) {
      throw new SweepError(`${file}: preset: expected one of ${PRESET_NAMES.join(', ')}, got ${describe(doc.preset)}`);
    }
    preset = doc.preset as PresetName;
  }
  let seeds = [0];
  if (doc.seeds !== undefined) {
    const s = doc.seeds;
    if (!Array.isArray(s)) throw new SweepError(`${file}: seeds: expected a list of non-negative integers, got ${describe(s)}`);
    if (s.length === 0) throw new SweepError(`${file}: seeds: empty grid (expected at least one seed)`);
    for (const v of s) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new SweepError(`${file}: seeds: expected non-negative integers, got ${describe(v)}`);
    }
    if (new Set(s).size !== s.length) throw new SweepError(`${file}: seeds: a seed is listed twice`);
    seeds = s as number[];
  }
  const leafKeys = new Set(configLeafKeys());
  if (doc.parameters === undefined || doc.parameters === null) throw new SweepError(`${file}: parameters: missing (expected a mapping such as optim.base_lr: {values: [1.0e-4, 1.5e-4]})`);
  const parameters = parseGrid(file, 'parameters', doc.parameters, leafKeys);
  if (parameters.size === 0) throw new SweepError(`${file}: parameters: empty grid (expected at least one key with value or values)`);
  const byOptimizer = new Map<OptimizerName, Grid>();
  if (doc.by_optimizer !== undefined && doc.by_optimizer !== null) {
    if (!isObj(doc.by_optimizer)) throw new SweepError(`${file}: by_optimizer: expected a mapping of optimizer names to grids, got ${describe(doc.by_optimizer)}`);
    for (const [opt, g] of Object.entries(doc.by_optimizer)) {
      if (!(OPTIMIZER_NAMES as readonly string[]).includes(opt)) {
        throw new SweepError(`${file}: by_optimizer.${opt}: unknown optimizer (expected one of: ${OPTIMIZER_NAMES.join(', ')})`);
      }
      const grid = parseGrid(file, `by_optimizer.${opt}`, g, leafKeys);
      if (grid.has('optim.name')) throw new SweepError(`${file}: by_optimizer.${opt}.optim.name: the optimizer is the key of this grid; remove it`);
      if (grid.size === 0) throw new SweepError(`${file}: by_optimizer.${opt}: empty grid (expected at least one key with value or values)`);
      byOptimizer.set(opt as OptimizerName, grid);
    }
  }
  const launcher = parseLauncherSection(file, doc.launcher, (m) => new SweepError(m));
  return { file, name, description: (doc.description as string | undefined) ?? null, method: 'grid', preset, seeds, parameters, byOptimizer, launcher };
}

export function loadSweepFile(path: string): SweepSpec {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    // a file that is there but cannot be read (permissions, a folder, an I/O error) is said as such
    throw new SweepError((e as NodeJS.ErrnoException).code === 'ENOENT' ? `${path}: sweep file not found` : `${path}: ${readFailure(e)}`);
  }
  const text = utf8Text(bytes);
  if (text === null) throw new SweepError(`${path}: not UTF-8 text (${notUtf8At(bytes)}); save it as UTF-8`);
  let doc: unknown;
  try {
    doc = parseYaml(text, path);
  } catch (e) {
    throw e instanceof ConfigError ? new SweepError(e.message) : e;
  }
  return parseSweep(doc, path);
}

/** The sweep a command-line argument names: a shipped name or a file. */
export function loadSweep(arg: string): SweepSpec {
  const file = findSweepFile(arg);
  const spec = loadSweepFile(file);
  return { ...spec, file: displayPath(file) };
}

function displayPath(p: string): string {
  const abs = resolve(p);
  const cwd = process.cwd();
  return abs.startsWith(`${cwd}/`) ? abs.slice(cwd.length + 1) : abs;
}
