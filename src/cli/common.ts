/** Flags shared by the commands that build run configs. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { intFlag } from './numbers.ts';
import { assembleConfig, flatten, parseSet, ruleError } from '../config/load.ts';
import { numClassesProblem } from '../data/classes.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { DATASET_NAMES, BACKEND_CHOICES } from '../config/schema.ts';
import { PRESET_NAMES } from '../config/presets.ts';
import { UsageError } from '../config/errors.ts';

export interface RunFlags {
  preset?: string;
  config?: string;
  set: string[];
  data?: string;
  /** how the user gave `data`, where not as --data (data preview's dataset argument and --data-path) */
  dataLabel?: string;
  backend?: string;
  results: string;
  seed?: string;
  dryRun?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** A flag's value parser that refuses an empty one ('' from a script's unset variable). */
const nonEmpty =
  (what: string) =>
  (v: string): string => {
    if (v.trim() === '') throw new InvalidArgumentError(`expected ${what}, got an empty string.`);
    return v;
  };
/** A path flag or argument: an empty one is refused, not read as the current folder. */
export const nonEmptyPath = nonEmpty('a path');
/** A name flag (--preset, --data): an empty one is refused, not read as no flag. */
export const nonEmptyName = nonEmpty('a name');
/** --checkpoint: an empty one is refused, not looked up as a checkpoint named ''. */
export const nonEmptyCheckpoint = nonEmpty('step-N, N or a checkpoint folder');

/** The flags of a command that builds a run config (train, bench); `results`: whether it writes under a results folder (bench does not). */
export function addRunOptions(cmd: Command, { results = true } = {}): Command {
  cmd
    .addOption(new Option('-p, --preset <name>', `scale preset (${PRESET_NAMES.join(', ')})`).argParser(nonEmptyName))
    .option('-c, --config <file>', 'a run config in YAML', nonEmptyPath)
    .option('-s, --set <key=value>', 'override a config key (dotted, e.g. optim.base_lr=1e-4); repeatable', collect, [])
    .option('--data <name[:path]>', `dataset (${DATASET_NAMES.join(', ')}), optionally with its path`, nonEmptyName)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices([...BACKEND_CHOICES]));
  if (results) cmd.option('--results <dir>', 'results directory', nonEmptyPath, 'results');
  return cmd.option('--dry-run', 'validate, resolve and print the config; train nothing');
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

/** A flag's values in the config: its label for errors, the values, and the keys it gives a value of its own. */
export interface FlagOverride {
  label: string;
  value: Record<string, unknown>;
  /** a --set of one of these is refused beside the flag (refuseFlagAndSet) */
  keys: string[];
}

/** An override of a flag that gives every key it sets. */
export const flagOverride = (label: string, value: Record<string, unknown>): FlagOverride => ({ label, value, keys: [...flatten(value).keys()] });

/**
 * The overrides of `--data` and `--backend`, as train, bench, data preview, plan and sweep read them. --data NAME
 * is the dataset's default location: a data.path from a config or sweep file (another dataset's folder, or the
 * same one's elsewhere) is not kept, and a --set of data.path gives it one; NAME:PATH gives the path itself.
 */
export function dataBackendOverrides(f: { data?: string; dataLabel?: string; backend?: string }): FlagOverride[] {
  const out: FlagOverride[] = [];
  if (f.data !== undefined) {
    const d = parseDataFlag(f.data);
    out.push({ label: f.dataLabel ?? `--data ${f.data}`, value: { data: { name: d.name, path: d.path } }, keys: d.path === null ? ['data.name'] : ['data.name', 'data.path'] });
  }
  if (f.backend) out.push(flagOverride(`--backend ${f.backend}`, { train: { backend: f.backend } }));
  return out;
}

/**
 * A flag and a --set of a key the flag gives: the --set (applied last) would win without a word. `keys`: the
 * keys the flag gives a value of its own. A --set that cannot be read is left to the config's own check.
 */
export function refuseFlagAndSet(flags: { label: string; keys: readonly string[] }[], sets: string[]): void {
  // each --set's keys read once, not once a flag
  const read = sets.flatMap((expr) => {
    try {
      return [{ expr, setKeys: [...flatten(parseSet(expr)).keys()] }];
    } catch {
      return [];
    }
  });
  for (const { label, keys } of flags) {
    for (const { expr, setKeys } of read) {
      const both = setKeys.find((k) => keys.includes(k));
      if (both !== undefined) throw new UsageError(`${label}: --set ${expr} sets ${both} too; give one of them`);
    }
  }
}

/**
 * The run config the flags give, with what can be checked before the data is read. `trains`: the command
 * trains on it (train, bench), so its train split must fill one batch; `data preview` trains nothing.
 */
export function configFromFlags(f: RunFlags, extra: { label: string; value: Record<string, unknown> }[] = [], { trains = true }: { trains?: boolean } = {}): ResolvedRunConfig {
  const overrides = dataBackendOverrides(f);
  if (f.seed !== undefined) overrides.push(flagOverride(`--seed ${f.seed}`, { seed: intFlag('--seed', f.seed, 0) }));
  const all = [...overrides, ...extra.map((o) => flagOverride(o.label, o.value))];
  refuseFlagAndSet(all, f.set ?? []);
  const { config: c, blame } = assembleConfig({
    preset: f.preset ?? null,
    file: f.config ?? null,
    sets: f.set,
    overrides: all.map((o) => o.value),
    overrideLabels: all.map((o) => o.label),
  });
  // data.num_classes against the dataset's own classes
  const classes = numClassesProblem(c.data.name, c.data.num_classes);
  if (classes !== null) throw ruleError(blame, ['data.num_classes', 'data.name'], classes);
  // a train split that cannot fill one batch (batches are never partial), said before the data is read
  const n = c.data.train_size;
  if (trains && n !== null && n < c.optim.batch_size) {
    throw ruleError(blame, ['data.train_size', 'optim.batch_size'], `${n} images cannot fill one batch of optim.batch_size ${c.optim.batch_size}: use more images or a smaller batch`);
  }
  return c;
}
