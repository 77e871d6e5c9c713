/** Flags shared by the commands that build run configs. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { intFlag } from './numbers.ts';
import { buildConfig, ConfigError, loadConfigFile, parseSet } from '../config/load.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { DATASET_NAMES, BACKEND_CHOICES } from '../config/schema.ts';
import { PRESET_NAMES } from '../config/presets.ts';
import { UsageError } from '../config/errors.ts';
import { numClassesProblem } from '../data/classes.ts';

export interface RunFlags {
  preset?: string;
  config?: string;
  set: string[];
  data?: string;
  backend?: string;
  results: string;
  seed?: string;
  dryRun?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** A path flag or argument: an empty one ('' from a script's unset variable) is refused, not read as the current folder. */
export function nonEmptyPath(v: string): string {
  if (v.trim() === '') throw new InvalidArgumentError('expected a path, got an empty string.');
  return v;
}

export function addRunOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('-p, --preset <name>', `scale preset (${PRESET_NAMES.join(', ')})`))
    .option('-c, --config <file>', 'a run config in YAML')
    .option('-s, --set <key=value>', 'override a config key (dotted, e.g. optim.base_lr=1e-4); repeatable', collect, [])
    .option('--data <name[:path]>', `dataset (${DATASET_NAMES.join(', ')}), optionally with its path`)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices([...BACKEND_CHOICES]))
    .option('--results <dir>', 'results directory', nonEmptyPath, 'results')
    .option('--dry-run', 'validate, resolve and print the config; train nothing');
}

export function parseDataFlag(v: string): { name: string; path: string | null } {
  const i = v.indexOf(':');
  const name = i < 0 ? v : v.slice(0, i);
  const path = i < 0 ? null : v.slice(i + 1);
  // 'name:' (a script's unset variable after the colon) is not the default location
  if (path !== null && path.trim() === '') throw new UsageError(`--data ${v}: an empty PATH after ':'; give the path, or --data ${v.slice(0, i)} for the default location`);
  if (!(DATASET_NAMES as readonly string[]).includes(name)) {
    throw new UsageError(`--data ${v}: unknown dataset '${name}' (expected one of: ${DATASET_NAMES.join(', ')})`);
  }
  if (name === 'synthetic' && path !== null) throw new UsageError(`--data ${v}: the synthetic dataset is built in and reads no PATH (give --data synthetic)`);
  return { name, path };
}

export function configFromFlags(f: RunFlags, extra: Record<string, unknown>[] = []): ResolvedRunConfig {
  const overrides: Record<string, unknown>[] = [];
  if (f.data) {
    const d = parseDataFlag(f.data);
    // --data NAME is the dataset's default location: a data.path from a config file (another dataset's
    // folder, or the same one's elsewhere) is not kept
    overrides.push({ data: { name: d.name, path: d.path } });
  }
  if (f.backend) overrides.push({ train: { backend: f.backend } });
  if (f.seed !== undefined) {
    const s = intFlag('--seed', f.seed, 0);
    overrides.push({ seed: s });
  }
  const c = buildConfig({ preset: f.preset ?? null, file: f.config ?? null, sets: f.set, overrides: [...overrides, ...extra] });
  // data.num_classes against the dataset's own classes: said here, where the key's source is known
  const classes = numClassesProblem(c.data.name, c.data.num_classes);
  if (classes !== null) throw new ConfigError(`${sourceOf(f, ['data.num_classes', 'data.name'])}: data.num_classes: ${classes}`);
  return c;
}

/**
 * The source that set one of `keys` (dotted) last, named as the config errors name it (src/config/load.ts): the
 * last --set that gives one, then --data (for data.name), then the --config file, then the preset.
 */
function sourceOf(f: RunFlags, keys: string[]): string {
  const has = (obj: unknown, key: string) =>
    key.split('.').every((p) => {
      if (typeof obj !== 'object' || obj === null || !(p in obj)) return false;
      obj = (obj as Record<string, unknown>)[p];
      return true;
    });
  for (let i = f.set.length - 1; i >= 0; i--) {
    const set = parseSet(f.set[i]!);
    if (keys.some((k) => has(set, k))) return `--set ${f.set[i]}`;
  }
  if (f.data && keys.includes('data.name')) return `--data ${f.data}`;
  if (f.config && keys.some((k) => has(loadConfigFile(f.config!), k))) return f.config;
  return f.preset ? `preset ${f.preset}` : (f.config ?? 'config');
}
