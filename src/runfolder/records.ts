/** The run folder's descriptive files: config.yaml, meta.json, and the evaluation results knn.json / linear.json. */
import { existsSync } from 'node:fs';
import { loadConfigFile, resolveConfig, validateConfig, ConfigError } from '../config/load.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { writeFileAtomic, writeJsonAtomic } from '../engine/files.ts';
import { readYamlObject, runPath, type Obj } from './paths.ts';

/** A folder is a run folder when it holds a config.yaml. */
export function isRunDir(dir: string): boolean {
  return existsSync(runPath(dir, 'config'));
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
  if (!existsSync(path)) throw new ConfigError(`${runDir}: no config.yaml (not a run folder)`);
  const blame = () => path;
  return resolveConfig(validateConfig(loadConfigFile(path), blame), blame);
}

export function writeMeta(runDir: string, meta: Obj): void {
  writeJsonAtomic(runPath(runDir, 'meta'), meta);
}

/** knn.json / linear.json: the full result of a run-folder evaluation. */
export function writeEvalResult(runDir: string, kind: 'knn' | 'linear', result: object): void {
  writeJsonAtomic(runPath(runDir, kind), result);
}
