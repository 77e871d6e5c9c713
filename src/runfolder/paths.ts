/**
 * A run folder's files (docs/ARCHITECTURE.md "The run folder"). src/runfolder/ names them all and is the only
 * code that reads or writes their records (the tensors of checkpoints and dumped views are written by src/train/
 * at these paths); it loads no TensorFlow.js.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { InputError, readFailure } from '../config/errors.ts';

export const RUN_FILES = {
  config: 'config.yaml',
  meta: 'meta.json',
  status: 'status.json',
  summary: 'summary.json',
  metrics: 'metrics.jsonl',
  knn: 'knn.json',
  linear: 'linear.json',
  views: 'views.safetensors',
  checkpoints: 'checkpoints',
  lock: '.lock',
} as const;

export type RunFile = keyof typeof RUN_FILES;

export function runPath(runDir: string, file: RunFile): string {
  return join(runDir, RUN_FILES[file]);
}

export type Obj = Record<string, unknown>;
/** Whether two paths name the same file or folder: symbolic links resolved where the path exists. */
export function samePath(a: string, b: string): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  return real(a) === real(b);
}

export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function readObject(path: string, parse: (text: string) => unknown): Obj | null {
  try {
    const v = parse(readFileSync(path, 'utf8'));
    return isObj(v) ? v : null;
  } catch {
    return null;
  }
}

/** A JSON object file, or null when it is missing, unreadable, torn or not an object. */
export const readJsonObject = (path: string): Obj | null => readObject(path, JSON.parse);

/** A YAML mapping file, or null when it is missing, unreadable or not a mapping. */
export const readYamlObject = (path: string): Obj | null => readObject(path, (t) => YAML.parse(t));

/** A damaged file of a run folder (one line: the file, what is wrong, what to do). */
export class RunFolderError extends InputError {
  override name = 'RunFolderError';
}

/**
 * A JSON object (YAML mapping) file of a run or sweep folder, validated: null when it is missing; a
 * RunFolderError naming the file, what is wrong and `todo` when it cannot be read, does not parse, or is
 * not an object.
 */
function readChecked(path: string, todo: string, format: 'JSON' | 'YAML'): Obj | null {
  if (!existsSync(path)) return null;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new RunFolderError(`${path}: ${readFailure(e)}; ${todo}`);
  }
  let v: unknown;
  try {
    v = format === 'JSON' ? JSON.parse(text) : YAML.parse(text);
  } catch {
    throw new RunFolderError(`${path}: ${text.trim() ? `not valid ${format} (truncated?)` : 'empty'}; ${todo}`);
  }
  if (!isObj(v)) throw new RunFolderError(`${path}: expected a ${format === 'JSON' ? 'JSON object' : 'YAML mapping'}, got ${JSON.stringify(v ?? null)}; ${todo}`);
  return v;
}

export const readJsonChecked = (path: string, todo: string): Obj | null => readChecked(path, todo, 'JSON');
export const readYamlChecked = (path: string, todo: string): Obj | null => readChecked(path, todo, 'YAML');
