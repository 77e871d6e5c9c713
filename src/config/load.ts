/** Config assembly: defaults <- preset <- YAML file <- --set overrides, then strict validation. */
import { createHash } from 'node:crypto';
import { constants } from 'node:buffer';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { ARCHS, type ArchName } from './archs.ts';
import { PRESETS, PRESET_NAMES, type PresetName } from './presets.ts';
import { DEFAULTS, RunConfigSchema, recipeBlurSigma, type ResolvedRunConfig, type RunConfig } from './schema.ts';
import { firstLine, readFailure, SetupError } from './errors.ts';

/** Bad input in a config: the message is one line naming the file (or flag), the key and what was expected. */
export class ConfigError extends SetupError {
  override name = 'ConfigError';
  /** a rule across keys: the keys it reads (dotted), for a caller that says where their values came from */
  keys?: string[];
}

/** A ConfigError of a rule across `keys`, named as sourceOf names it. */
export function ruleError(blame: Blame, keys: string[], text: string): ConfigError {
  const e = new ConfigError(`${sourceOf(blame, keys)}: ${keys[0]}: ${text}`);
  e.keys = keys;
  return e;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** {a: {b: 1}, c: [1, 2]} -> a.b = 1, c = [1, 2] (arrays are leaves): a config object by its dotted keys. */
export function flatten(obj: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (isObj(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out.set(prefix, obj);
  }
  return out;
}

/** Deep merge: objects merge key by key, everything else (arrays included) replaces. */
export function deepMerge<T>(base: T, over: unknown): T {
  if (!isObj(base) || !isObj(over)) return (over === undefined ? base : over) as T;
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = k in out && isObj(out[k]) && isObj(v) ? deepMerge(out[k], v) : v;
  }
  return out as T;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** `a.b.c=value` -> {a: {b: {c: value}}}; the value is read as YAML (numbers, booleans, null, lists). */
export function parseSet(expr: string): Obj {
  const eq = expr.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--set ${expr}: expected key=value with a dotted key, e.g. optim.base_lr=1e-4`);
  const key = expr.slice(0, eq).trim();
  const raw = expr.slice(eq + 1);
  if (!/^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$/.test(key)) {
    throw new ConfigError(`--set ${expr}: '${key}' is not a dotted key such as optim.base_lr`);
  }
  // names an object's own machinery, not a config key: assigned, it would vanish instead of being refused
  const odd = key.split('.').find((p) => OBJECT_KEYS.has(p));
  if (odd) throw new ConfigError(`--set ${expr}: unknown key ${key}`);
  return nest(key, raw.trim() === '' ? '' : setValue(expr, key, raw));
}

/**
 * A --set value read as YAML (without YAML's warnings on stderr); text YAML cannot read is taken as the
 * string it is. What YAML would read otherwise than written is refused: a comment (` #` cuts `/data/run #2`
 * to `/data/run`), or a tag or directive it cannot resolve (`!foo` read as an empty string).
 */
function setValue(expr: string, key: string, raw: string): unknown {
  const doc = YAML.parseDocument(raw);
  if (doc.errors.length > 0) return raw;
  const quoted = `quote the value: --set '${key}="${raw.trim().replace(/["\\]/g, '\\$&')}"'`;
  if (doc.warnings.length > 0) throw new ConfigError(`--set ${expr}: ${doc.warnings[0]!.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}; ${quoted}`);
  let comment = Boolean(doc.comment || doc.commentBefore);
  let anchor = false;
  YAML.visit(doc, {
    Node(_, n) {
      if ((n as { comment?: string | null }).comment || (n as { commentBefore?: string | null }).commentBefore) comment = true;
      if ((n as { anchor?: string | null }).anchor) anchor = true;
    },
  });
  if (comment) throw new ConfigError(`--set ${expr}: a blank then # starts a YAML comment, which would cut the value short; ${quoted}`);
  if (anchor) throw new ConfigError(`--set ${expr}: a leading & names a YAML anchor, which is not part of the value; ${quoted}`);
  const odd = yamlSurprise(doc);
  if (odd) throw new ConfigError(`--set ${expr}: ${[key, odd[0]].filter(Boolean).join('.')}: ${odd[1]}`);
  try {
    return doc.toJS();
  } catch {
    return raw; // an alias to nothing (`*imgs`): no YAML value, the text as it is
  }
}

/** Names of an object's own machinery: assigned as a key, one would vanish (or set a prototype) instead of being refused. */
const OBJECT_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** The keys of the mappings above a node in a YAML visit, outermost first. */
const keysOf = (path: readonly unknown[]): string[] =>
  path
    .filter((p) => YAML.isPair(p))
    .map((p) => (p as YAML.Pair<YAML.Scalar>).key?.value ?? (p as YAML.Pair).key)
    // a merge key (`<<: {...}`) is a symbol to the YAML library: named as written
    .map((k) => (typeof k === 'symbol' ? '<<' : String(k)));

/**
 * What a parsed YAML document would read otherwise than written, as `[dotted key, why]`, or null: a key that
 * names an object's machinery (`__proto__:` would vanish in the merge, not be refused as unknown) or is a
 * list or mapping, or a number beyond a float's range (`1e-400` would read as 0, `1e400` as infinity).
 */
function yamlSurprise(doc: YAML.Document): [string, string] | null {
  let found: [string, string] | null = null;
  YAML.visit(doc, {
    Pair(_, pair, path) {
      // a list or mapping as a key (`? [a]`) names no config key; YAML would stringify it, with a warning of Node's
      if (YAML.isCollection(pair.key)) {
        found = [[...keysOf(path), String(pair.key)].join('.'), 'a list or mapping as a key: expected a key name'];
        return YAML.visit.BREAK;
      }
      return undefined;
    },
    Scalar(key, node, path) {
      const name = keysOf(path).join('.');
      if (key === 'key' && OBJECT_KEYS.has(String(node.value))) found = [name, 'unknown key'];
      else if (typeof node.value === 'number' && node.source !== undefined) {
        const text = String(node.source);
        if (node.value === 0 && /^[-+]?(\d*\.)?\d*[1-9]/.test(text)) found = [name, `${text} is too small for a float: it would read as 0`];
        else if (!Number.isFinite(node.value) && !/^[-+]?\.(inf|nan)$/i.test(text)) found = [name, `${text} is too large for a float: it would read as infinity`];
      }
      return found ? YAML.visit.BREAK : undefined;
    },
  });
  return found;
}

/** `a.b.c`, v -> {a: {b: {c: v}}} */
export function nest(key: string, value: unknown): Obj {
  const parts = key.split('.');
  const root: Obj = {};
  let cur = root;
  parts.forEach((p, i) => {
    if (i === parts.length - 1) cur[p] = value;
    else cur = cur[p] = {} as Obj;
  });
  return root;
}

/**
 * A YAML file's bytes as text; null when they are not UTF-8 (read leniently, a byte of another encoding would
 * become U+FFFD, and a path written in Latin-1 would name a folder that is not there).
 */
export function utf8Text(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** Where bytes that are not UTF-8 first go wrong, for the message that refuses them: `byte N`. */
export function notUtf8At(bytes: Uint8Array): string {
  const lenient = new TextDecoder('utf-8').decode(bytes);
  const at = lenient.indexOf('\uFFFD');
  return `byte ${at < 0 ? 0 : Buffer.byteLength(lenient.slice(0, at))}`;
}

export function loadConfigFile(path: string): Obj {
  if (!existsSync(path)) throw new ConfigError(`${path}: config file not found`);
  // a run folder for its config (`--config <run>`, where `--config <run>/config.yaml` was meant): named
  if (statSync(path).isDirectory() && existsSync(join(path, 'config.yaml'))) {
    throw new ConfigError(`${path}: a run folder, not a config file: give its config, ${join(path, 'config.yaml')}`);
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new ConfigError(`${path}: ${readFailure(e)}`);
  }
  const text = utf8Text(bytes);
  if (text === null) throw new ConfigError(`${path}: not UTF-8 text (${notUtf8At(bytes)}); save it as UTF-8`);
  const doc = parseYaml(text, path);
  // empty, or comments alone: no settings (a run's config.yaml cut to nothing would read as the defaults)
  if (doc === null || doc === undefined) throw new ConfigError(`${path}: empty: expected a YAML mapping of config sections (seed, data, model, ...)`);
  if (!isObj(doc)) throw new ConfigError(`${path}: expected a YAML mapping of config sections (seed, data, model, ...)`);
  return checkSections(doc, DEFAULTS as unknown as Obj, path);
}

/**
 * A YAML file's value; its errors, and its warnings (a tag YAML does not know, `!dataset x`, would be read
 * as a plain string), are one line naming the file.
 */
export function parseYaml(text: string, path: string): unknown {
  let doc: YAML.Document.Parsed;
  try {
    doc = YAML.parseDocument(text, { merge: true }); // `<<: *anchor` merge keys, as YAML 1.1 (and PyYAML) read them
  } catch (e) {
    throw new ConfigError(`${path}: not valid YAML: ${firstLine(e)}`);
  }
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) throw new ConfigError(`${path}: not valid YAML: ${firstLine(problem).replace(/:$/, '')}`);
  const odd = yamlSurprise(doc);
  if (odd) throw new ConfigError(`${path}: ${odd[0]}: ${odd[1]}`);
  try {
    return doc.toJS();
  } catch (e) {
    throw new ConfigError(`${path}: not valid YAML: ${firstLine(e)}`);
  }
}

/**
 * A config file's sections as mappings: a section whose keys are all commented out (`optim:` alone, null)
 * is left out, as if absent; a list or a value where a section goes is refused here, naming it (merged with
 * a flag's keys, it would be reported as the keys it lacks).
 */
function checkSections(obj: Obj, defaults: Obj, path: string, prefix = ''): Obj {
  const out: Obj = { ...obj };
  for (const [k, v] of Object.entries(obj)) {
    const d = defaults[k];
    if (!isObj(d)) continue;
    const key = `${prefix}${k}`;
    if (v === null) delete out[k];
    else if (!isObj(v)) throw new ConfigError(`${path}: ${key}: expected a mapping of ${key} keys (${Object.keys(d).join(', ')}), got ${JSON.stringify(v)}`);
    else out[k] = checkSections(v, d, path, `${key}.`);
  }
  return out;
}

export interface ConfigSources {
  preset?: string | null;
  /** a config file path, or an already-parsed object with a label naming where it came from */
  file?: string | null;
  fileObject?: { label: string; value: Obj } | null;
  sets?: string[];
  /** overrides applied after the file, from code (e.g. CLI flags such as --data); --set comes last */
  overrides?: Obj[];
  /** the flag each override came from (`--data cifar10`), as errors name it; 'command line' otherwise */
  overrideLabels?: string[];
  /**
   * a sweep over datasets: a data.path given for the others is none of the synthetic dataset's, which reads
   * no files (dropped there, where elsewhere it is refused)
   */
  pathOfOtherDatasets?: boolean;
}

function hasPath(obj: unknown, path: PropertyKey[]): boolean {
  let cur: unknown = obj;
  for (const p of path) {
    // own keys only: `toString` or `valueOf` are in every object by inheritance
    if (!isObj(cur) || !Object.hasOwn(cur, String(p))) return false;
    cur = cur[String(p)];
  }
  return true;
}

function getPath(obj: unknown, path: PropertyKey[]): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (!isObj(cur) && !Array.isArray(cur)) return undefined;
    cur = (cur as Obj)[String(p)];
  }
  return cur;
}

/** The config keys that hold a pair of numbers, as an error says what they take. */
const PAIRS: Record<string, string> = {
  'optim.betas': 'a pair [beta1, beta2], e.g. [0.9, 0.999]',
  'augment.blur_sigma': 'a pair [min, max] of pixels, e.g. [0.1, 2], or null (from the image size)',
};

function describeIssue(issue: z.core.$ZodIssue, value: unknown): { key: string; text: string } {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const parent = issue.path.length ? `${key}.` : '';
    const section = getPath(DEFAULTS, issue.path);
    const known = isObj(section) ? Object.keys(section).join(', ') : '';
    // a null key (`~: 1`) reads as the empty name: said, not left blank
    const keys = issue.keys.map((k) => `${parent}${k === '' ? '"" (an empty or null key)' : k}`);
    // `optim.base_lr: 1e-3` in a file: a key --set and sweep files write dotted, a file nests
    const dotted = issue.keys.find((k) => k.includes('.') && getPath(DEFAULTS, [...issue.path, ...k.split('.')]) !== undefined);
    if (dotted !== undefined) {
      const [head, ...rest] = dotted.split('.');
      return { key: `${parent}${dotted}`, text: `${parent}${dotted}: a dotted key (as --set and sweep files write them); in a config file nest it: ${head}: {${rest.join('.')}: ...}` };
    }
    return { key: keys[0] ?? key, text: `unknown key${keys.length > 1 ? 's' : ''} ${keys.join(', ')}${known ? ` (expected one of: ${known})` : ''}` };
  }
  // NaN and the infinities have no JSON: say them as they are, not as null
  const got = value === undefined ? 'nothing' : typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value);
  let expected = issue.message.replace(/^Invalid input: /, '').replace(/, received \S+$/, '');
  if (issue.code === 'invalid_value' && 'values' in issue) {
    expected = `expected one of ${(issue.values as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  } else if (issue.code === 'too_small' || issue.code === 'too_big') {
    expected = issue.message.replace(/^Too (small|big): /, '');
  }
  // a pair of numbers (zod's "tuple", or its "array to have >=2 items"): said as the pair it is
  if (PAIRS[key] !== undefined && (issue.code === 'invalid_type' || ((issue.code === 'too_small' || issue.code === 'too_big') && issue.origin === 'array'))) {
    expected = `expected ${PAIRS[key]}`;
  }
  return { key, text: `${key}: ${expected}, got ${got}` };
}

/**
 * The source a key (a path) came from, as errors name it (`--set optim.base_lr=1`, `--data cifar10`, a file,
 * `preset cpu`); `order` ranks the labels of --set by their place on the command line.
 */
export type Blame = ((path: PropertyKey[]) => string) & { order?: (label: string) => number };

/** Validate a merged config object; `blame` tells which source a key came from. */
export function validateConfig(merged: unknown, blame: (path: PropertyKey[]) => string): RunConfig {
  const r = RunConfigSchema.safeParse(merged);
  if (r.success) return positiveZeros(r.data);
  const issue = r.error.issues[0]!;
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
  const { text } = describeIssue(issue, getPath(merged, issue.path));
  const more = r.error.issues.length > 1 ? ` (+${r.error.issues.length - 1} more)` : '';
  throw new ConfigError(`${blame(path)}: ${text}${more}`);
}

/** -0 (YAML's `-0`, `-0.0`) read as the 0 it means: a `seed: -0` would be written back as `-0`, a name as `-0`. */
function positiveZeros<T>(v: T): T {
  if (Object.is(v, -0)) return 0 as T;
  if (Array.isArray(v)) return v.map(positiveZeros) as T;
  if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, positiveZeros(x)])) as T;
  return v;
}

/**
 * Which source to name for a rule across several keys (dotted): the one the user set last, a --set, then
 * another flag (--data, --batch, ...), then a file (a config or sweep file), and a preset only when none
 * of the keys came from the user.
 */
export function sourceOf(blame: Blame, keys: string[]): string {
  const sources = keys.map((k) => blame(k.split('.')));
  const sets = sources.filter((b) => b.startsWith('--set '));
  const order = blame.order;
  return (
    (order ? sets.reduce<string | undefined>((a, b) => (a === undefined || order(b) > order(a) ? b : a), undefined) : sets[0]) ??
    sources.find((b) => b.startsWith('-') || b === 'command line') ??
    sources.find((b) => !b.startsWith('preset ')) ??
    sources[0]!
  );
}

/** The most elements a typed array may hold in this Node (a Float32Array's length). */
const MAX_ARRAY = constants.MAX_LENGTH;

/** Fill the model sizes left null from the arch, and check what depends on several keys. */
export function resolveConfig(cfg: RunConfig, blame: Blame = () => 'config'): ResolvedRunConfig {
  const out = clone(cfg);
  const arch = ARCHS[out.model.arch as ArchName];
  out.model.patch_size ??= arch.patch_size;
  out.model.dim ??= arch.dim;
  out.model.depth ??= arch.depth;
  out.model.heads ??= arch.heads;
  out.model.mlp_ratio ??= arch.mlp_ratio;
  const m = out.model as ResolvedRunConfig['model'];
  // a check of several keys blames the one the user set last (sourceOf)
  const fail = (path: string, text: string, also: string[] = []) => {
    throw ruleError(blame, [path, ...also], text);
  };
  if (m.dim % m.heads !== 0) fail('model.heads', `dim ${m.dim} must be divisible by heads ${m.heads}`, ['model.dim', 'model.arch']);
  if (m.dim % 4 !== 0) fail('model.dim', `must be divisible by 4 for the 2-D sin-cos position embedding, got ${m.dim}`);
  if (!Number.isInteger(m.dim * m.mlp_ratio)) {
    fail('model.mlp_ratio', `must give a whole MLP width (dim ${m.dim} x mlp_ratio), got ${m.mlp_ratio}`, ['model.dim', 'model.arch']);
  }
  if (out.data.image_size % m.patch_size !== 0) {
    fail('data.image_size', `must be a multiple of model.patch_size ${m.patch_size}, got ${out.data.image_size}`, ['model.patch_size', 'model.arch']);
  }
  // a weight past the largest typed array (Node 20: 2^32 elements) fails only after minutes of building the
  // others: said up front (a mistyped size: dim 4000000000)
  const hidden = m.dim * m.mlp_ratio;
  const tokens = (out.data.image_size / m.patch_size) ** 2 + 1;
  const { proj_hidden: ph, proj_dim: pd, pred_hidden: qh } = out.moco;
  const weights: [string, number, string[]][] = [
    ['the attention qkv weight (3 x dim x dim)', 3 * m.dim * m.dim, ['model.dim']],
    ['the MLP weight (dim x dim x mlp_ratio)', m.dim * hidden, ['model.dim', 'model.mlp_ratio']],
    ['the patch projection (dim x 3 x patch_size^2)', m.dim * 3 * m.patch_size ** 2, ['model.dim', 'model.patch_size']],
    ['the position embedding (tokens x dim)', tokens * m.dim, ['model.dim', 'data.image_size', 'model.patch_size']],
    ["the projector's weights", Math.max(m.dim * ph, ph * ph, ph * pd), ['moco.proj_hidden', 'moco.proj_dim', 'model.dim']],
    ["the predictor's weights", Math.max(pd * qh, qh * pd), ['moco.pred_hidden', 'moco.proj_dim']],
  ];
  for (const [what, n, keys] of weights) {
    if (n > MAX_ARRAY) fail(keys[0]!, `makes ${what} of ${n} elements, more than one array holds (${MAX_ARRAY})`, [...keys.slice(1), 'model.arch']);
  }
  if (out.optim.warmup_epochs > out.optim.epochs) {
    fail('optim.warmup_epochs', `must not exceed optim.epochs ${out.optim.epochs}, got ${out.optim.warmup_epochs}`, ['optim.epochs']);
  }
  // the lrs used, base x batch / 256 (the linear scaling rule, src/optim/schedule.ts scaledLr, a layer above),
  // must be numbers
  if (!Number.isFinite((out.optim.base_lr * out.optim.batch_size) / 256)) {
    fail('optim.base_lr', `${out.optim.base_lr} x optim.batch_size ${out.optim.batch_size} / 256 (the lr used) is beyond a float`, ['optim.batch_size']);
  }
  if (!Number.isFinite((out.eval.linear.base_lr * out.eval.linear.batch_size) / 256)) {
    fail('eval.linear.base_lr', `${out.eval.linear.base_lr} x eval.linear.batch_size ${out.eval.linear.batch_size} / 256 (the lr used) is beyond a float`, ['eval.linear.batch_size']);
  }
  // the projector's and predictor's BatchNorm normalise over the batch (the micro-batch): one image cannot
  if (out.optim.batch_size < 2) fail('optim.batch_size', `must be at least 2 (the heads' BatchNorm needs two images), got ${out.optim.batch_size}`);
  if (out.train.micro_batch !== null && out.train.micro_batch < 2) {
    fail('train.micro_batch', `must be at least 2 (the heads' BatchNorm needs two images), got ${out.train.micro_batch}`);
  }
  out.augment.blur_sigma ??= recipeBlurSigma(out.data.image_size);
  if (out.augment.blur_sigma[0] > out.augment.blur_sigma[1]) fail('augment.blur_sigma', 'expected [min, max] with min <= max');
  if (out.train.micro_batch !== null && out.train.micro_batch > out.optim.batch_size) {
    fail('train.micro_batch', `must not exceed optim.batch_size ${out.optim.batch_size}, got ${out.train.micro_batch}`, ['optim.batch_size']);
  }
  if (out.train.micro_batch !== null && out.optim.batch_size % out.train.micro_batch !== 0) {
    fail('train.micro_batch', `must divide optim.batch_size ${out.optim.batch_size}, got ${out.train.micro_batch}`, ['optim.batch_size']);
  }
  return out as ResolvedRunConfig;
}

/** Build a run config from its sources, in order: defaults, preset, file, overrides, --set. */
export function buildConfig(src: ConfigSources): ResolvedRunConfig {
  return assembleConfig(src).config;
}

/** buildConfig, with the source each key came from (`blame`, for checks made later: ruleError names it). */
export function assembleConfig(src: ConfigSources): { config: ResolvedRunConfig; blame: Blame } {
  let merged: Obj = clone(DEFAULTS) as unknown as Obj;
  let presetObj: Obj = {};
  if (src.preset) {
    if (!(PRESET_NAMES as readonly string[]).includes(src.preset)) {
      throw new ConfigError(`--preset ${src.preset}: unknown preset (expected one of: ${PRESET_NAMES.join(', ')})`);
    }
    presetObj = PRESETS[src.preset as PresetName].config as Obj;
    merged = deepMerge(merged, clone(presetObj));
  }
  let fileObj: Obj = {};
  let fileLabel = 'config';
  if (src.file) {
    fileObj = loadConfigFile(src.file);
    fileLabel = src.file;
  } else if (src.fileObject) {
    fileObj = src.fileObject.value;
    fileLabel = src.fileObject.label;
  }
  merged = deepMerge(merged, fileObj);
  const overrides = src.overrides ?? [];
  for (const o of overrides) merged = deepMerge(merged, o);
  const setObjs = (src.sets ?? []).map((s) => ({ expr: s, obj: parseSet(s) }));
  for (const s of setObjs) merged = deepMerge(merged, s.obj);
  // a preset's subset sizes and class count belong to its own dataset: another dataset (from the file, a
  // flag or a --set) starts from the defaults (null: all images, the dataset's classes) unless those name them too
  const presetData = isObj(presetObj.data) ? presetObj.data : {};
  const mergedData = merged.data;
  if (isObj(mergedData) && presetData.name !== undefined && mergedData.name !== presetData.name) {
    for (const k of ['train_size', 'test_size', 'num_classes']) {
      const given = [fileObj, ...overrides, ...setObjs.map((x) => x.obj)].some((o) => hasPath(o, ['data', k]));
      if (k in presetData && !given) mergedData[k] = (DEFAULTS.data as unknown as Obj)[k];
    }
  }
  // the kNN monitor's cadence is one of two keys: the later source that gives one (not both) sets the other
  // to null, so `--set train.knn_every=10` under a preset of `knn_every_epochs` is obeyed, not outranked
  let cadence: string | null = null;
  for (const layer of [presetObj, fileObj, ...overrides, ...setObjs.map((x) => x.obj)]) {
    const t = isObj(layer.train) ? layer.train : {};
    const steps = t.knn_every !== undefined && t.knn_every !== null;
    const epochs = t.knn_every_epochs !== undefined && t.knn_every_epochs !== null;
    // a source that gives both chooses nothing to clear (knn_every_epochs then counts, as it always did)
    if (steps || epochs) cadence = steps === epochs ? null : steps ? 'knn_every_epochs' : 'knn_every';
  }
  if (cadence && isObj(merged.train)) merged.train[cadence] = null;
  dropDerived(merged, [presetObj, fileObj, ...overrides, ...setObjs.map((x) => x.obj)]);

  const blame: Blame = (full: PropertyKey[]): string => {
    // an element of a list (optim.betas.1) comes from where the list was set
    let path = full;
    while (typeof path.at(-1) === 'number') path = path.slice(0, -1);
    for (let i = setObjs.length - 1; i >= 0; i--) if (hasPath(setObjs[i]!.obj, path)) return `--set ${setObjs[i]!.expr}`;
    for (let i = overrides.length - 1; i >= 0; i--) if (hasPath(overrides[i], path)) return src.overrideLabels?.[i] ?? 'command line';
    if (hasPath(fileObj, path)) return fileLabel;
    if (hasPath(presetObj, path)) return `preset ${src.preset}`;
    return src.file ?? fileLabel;
  };
  blame.order = (label) => setObjs.map((x) => `--set ${x.expr}`).lastIndexOf(label);
  const config = resolveConfig(validateConfig(merged, blame), blame);
  checkLambKeys(config, blame);
  if (src.pathOfOtherDatasets && config.data.name === 'synthetic') config.data.path = null;
  checkDataPath(config, blame);
  return { config, blame };
}

/**
 * A path beside the built-in synthetic dataset reads nothing, yet would be recorded in config.yaml and its
 * hash (another run's name for the same images). Refused as `--data synthetic:PATH` is; checked on a config
 * being built, as checkLambKeys is.
 */
function checkDataPath(c: ResolvedRunConfig, blame: Blame): void {
  if (c.data.name !== 'synthetic' || c.data.path === null) return;
  throw ruleError(blame, ['data.path', 'data.name'], `the synthetic dataset is built in and reads no path (got ${JSON.stringify(c.data.path)}): set it to null, or data.name to a dataset read from files`);
}

/**
 * LAMB's own keys set for another optimizer: they would be recorded in config.yaml (and its hash) and do
 * nothing. Checked on a config being built, not on a run's config.yaml read back (a run of an older moco3
 * that recorded one still reads).
 */
function checkLambKeys(c: ResolvedRunConfig, blame: Blame): void {
  if (c.optim.name === 'lamb') return;
  if (c.optim.max_grad_norm !== null) {
    throw ruleError(blame, ['optim.max_grad_norm', 'optim.name'], `clips LAMB's gradients only (optim.name is ${c.optim.name}): set it to null, or optim.name to lamb`);
  }
  if (c.optim.lamb_exclude_bias_norm) {
    throw ruleError(blame, ['optim.lamb_exclude_bias_norm', 'optim.name'], `applies to LAMB only (optim.name is ${c.optim.name}; LARS always exempts biases and norms, AdamW and SGD decay every parameter): set it to false, or optim.name to lamb`);
  }
}

const SIZE_KEYS = ['patch_size', 'dim', 'depth', 'heads', 'mlp_ratio'] as const;

/**
 * Values that only restate what another key derives are derived again when a later source changes that key:
 * the model sizes of an arch (a run's config.yaml holds them resolved) once a later source names another
 * arch, and the recipe's blur σ of an image size once a later source gives another size. Without this,
 * `--config <run>/config.yaml --set model.arch=vit-smoke` trained the old arch's sizes under the new name.
 * A value that is not the derived one (a preset's patch 7, a σ of the user's) was chosen, and stays.
 */
function dropDerived(merged: Obj, layers: Obj[]): void {
  const get = (o: Obj, section: string, key: string): unknown => (isObj(o[section]) ? (o[section] as Obj)[key] : undefined);
  /** the value of section.key after layers 0..upTo, from the defaults on */
  const at = (section: string, key: string, upTo: number): unknown => {
    let v = get(DEFAULTS as unknown as Obj, section, key);
    for (let i = 0; i <= upTo; i++) if (get(layers[i]!, section, key) !== undefined) v = get(layers[i]!, section, key);
    return v;
  };
  const lastGiving = (section: string, key: string) => layers.map((l) => get(l, section, key) !== undefined).lastIndexOf(true);
  const model = merged.model;
  const finalArch = at('model', 'arch', layers.length - 1);
  if (isObj(model)) {
    for (const k of SIZE_KEYS) {
      const i = lastGiving('model', k);
      if (i < 0) continue;
      // only a source that gives the arch with its sizes (a run's config.yaml) restates them; a size given
      // alone (a --set) was chosen, whatever the arch
      const own = get(layers[i]!, 'model', 'arch');
      const arch = ARCHS[own as ArchName] as Record<string, unknown> | undefined;
      if (own !== undefined && own !== finalArch && arch !== undefined && get(layers[i]!, 'model', k) === arch[k]) model[k] = null;
    }
  }
  const augment = merged.augment;
  const i = lastGiving('augment', 'blur_sigma');
  if (isObj(augment) && i >= 0) {
    // as for the sizes: only a source that gives the image size with its σ restates the recipe's
    const size = get(layers[i]!, 'data', 'image_size');
    const given = get(layers[i]!, 'augment', 'blur_sigma');
    const same = (a: unknown, b: number) => typeof a === 'number' && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
    if (size !== at('data', 'image_size', layers.length - 1) && typeof size === 'number' && Array.isArray(given) && given.length === 2) {
      const derived = recipeBlurSigma(size);
      if (same(given[0], derived[0]) && same(given[1], derived[1])) augment.blur_sigma = null;
    }
  }
}

/** Canonical JSON (sorted keys) for hashing. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isObj(v)) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * 8 hex digits of SHA-256 over the resolved config. The backend and logging cadence are left out:
 * they change how a run is watched, not what it computes.
 */
/** Keys that do not change what a run computes (where it runs, how often it logs): its hash leaves them out. */
export const UNHASHED_KEYS = ['train.backend', 'train.log_every'] as const;

/**
 * Keys added after runs were made, with the value a run folder without them stands for: they hash as absent
 * at that value, so older run folders keep their names and resume.
 */
export const LATER_KEYS: Readonly<Record<string, unknown>> = { 'train.knn_every_epochs': null, 'eval.linear.train_views': 'augmented' };

/**
 * The mapping that holds a dotted key in a nested config, and the key's last part: `train.log_every` ->
 * [config.train, 'log_every']; null when a section on the way is missing or not a mapping.
 */
export function sectionOf(obj: Obj, key: string): [Obj, string] | null {
  const parts = key.split('.');
  const section = parts.slice(0, -1).reduce<Obj | null>((o, p) => (o && isObj(o[p]) ? (o[p] as Obj) : null), obj);
  return section ? [section, parts.at(-1)!] : null;
}

export function configHash(cfg: RunConfig): string {
  const c = clone(cfg) as unknown as Obj;
  const drop = (key: string, when?: (v: unknown) => boolean) => {
    const at = sectionOf(c, key);
    if (at && at[1] in at[0] && (!when || when(at[0][at[1]]))) delete at[0][at[1]];
  };
  for (const k of UNHASHED_KEYS) drop(k);
  for (const [k, v] of Object.entries(LATER_KEYS)) drop(k, (x) => x === v);
  return createHash('sha256').update(canonicalJson(c)).digest('hex').slice(0, 8);
}

export function configToYaml(cfg: RunConfig): string {
  return YAML.stringify(cfg, { lineWidth: 0 });
}
