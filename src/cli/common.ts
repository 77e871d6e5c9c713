/** Flags shared by the commands that build run configs. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { intFlag } from './numbers.ts';
import { buildConfig } from '../config/load.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { DATASET_NAMES, BACKEND_CHOICES } from '../config/schema.ts';
import { PRESET_NAMES } from '../config/presets.ts';
import { UsageError } from '../config/errors.ts';

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
  return buildConfig({ preset: f.preset ?? null, file: f.config ?? null, sets: f.set, overrides: [...overrides, ...extra] });
}
