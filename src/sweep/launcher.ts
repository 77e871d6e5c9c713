/**
 * Launcher settings of a sweep: where its runs train besides this process. The sweep file's `launcher:`
 * section and the command-line flags give the same keys; a flag wins over the file. No TensorFlow.js here.
 *
 *   launcher:
 *     partition: gpu          # --partition
 *     gpus_per_run: 1         # --gpus-per-run
 *     cpus_per_run: 8         # --cpus-per-run
 *     mem: 64G                # --mem
 *     time: "24:00:00"        # --time
 *     max_parallel: 4         # --max-parallel (the array's %N)
 *     signal_s: 300           # --signal-s: USR1 this many seconds before the time limit
 *     sbatch_args: ["--account=vision"]   # --sbatch-arg, repeatable
 */
import { parseInteger } from '../config/numbers.ts';

export interface LauncherSettings {
  partition: string | null;
  gpus_per_run: number | null;
  cpus_per_run: number | null;
  mem: string | null;
  time: string | null;
  max_parallel: number | null;
  signal_s: number;
  sbatch_args: string[];
}

export const LAUNCHER_KEYS = ['partition', 'gpus_per_run', 'cpus_per_run', 'mem', 'time', 'max_parallel', 'signal_s', 'sbatch_args'] as const;
export type LauncherKey = (typeof LAUNCHER_KEYS)[number];

export const DEFAULT_LAUNCHER: LauncherSettings = {
  partition: null,
  gpus_per_run: null,
  cpus_per_run: null,
  mem: null,
  time: null,
  max_parallel: null,
  signal_s: 300,
  sbatch_args: [],
};

/** The command-line flag of each key. */
export const LAUNCHER_FLAGS: Record<LauncherKey, string> = {
  partition: '--partition',
  gpus_per_run: '--gpus-per-run',
  cpus_per_run: '--cpus-per-run',
  mem: '--mem',
  time: '--time',
  max_parallel: '--max-parallel',
  signal_s: '--signal-s',
  sbatch_args: '--sbatch-arg',
};

const EXPECT: Record<LauncherKey, string> = {
  partition: 'a partition name',
  gpus_per_run: 'a non-negative integer',
  cpus_per_run: 'a positive integer',
  mem: 'a memory size such as 64G or 16000M',
  time: 'a Slurm time limit such as 24:00:00, 90, or 2-00:00:00',
  max_parallel: 'a positive integer',
  signal_s: 'an integer number of seconds, at least 10',
  sbatch_args: 'a list of sbatch options, each starting with - and on one line',
};

const isInt = (v: unknown, min: number) => typeof v === 'number' && Number.isInteger(v) && v >= min;

/** Null when the value is good for the key, else what was expected. */
function check(key: LauncherKey, v: unknown): string | null {
  switch (key) {
    case 'partition':
      return typeof v === 'string' && /^[A-Za-z0-9_.,-]+$/.test(v) ? null : EXPECT[key];
    case 'gpus_per_run':
      return isInt(v, 0) ? null : EXPECT[key];
    case 'cpus_per_run':
    case 'max_parallel':
      return isInt(v, 1) ? null : EXPECT[key];
    case 'signal_s':
      return isInt(v, 10) ? null : EXPECT[key];
    case 'mem':
      return typeof v === 'string' && /^\d+[KMGT]?$/.test(v) ? null : EXPECT[key];
    case 'time':
      return typeof v === 'string' && /^(\d+-)?\d+(:\d{1,2}){0,2}$/.test(v) ? null : EXPECT[key];
    case 'sbatch_args':
      return Array.isArray(v) && v.every((a) => typeof a === 'string' && a.startsWith('-') && !/[\n\r]/.test(a)) ? null : EXPECT[key];
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown) => (v === undefined ? 'nothing' : Array.isArray(v) ? 'a list' : isObj(v) ? 'a mapping' : JSON.stringify(v));

/** The sweep file's `launcher:` section; `fail` makes the error of the caller's kind. */
export function parseLauncherSection(file: string, raw: unknown, fail: (msg: string) => Error): Partial<LauncherSettings> {
  if (raw === null || raw === undefined) return {};
  if (!isObj(raw)) throw fail(`${file}: launcher: expected a mapping of ${LAUNCHER_KEYS.join(', ')}, got ${show(raw)}`);
  const out: Partial<LauncherSettings> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!(LAUNCHER_KEYS as readonly string[]).includes(k)) throw fail(`${file}: launcher.${k}: unknown key (expected one of: ${LAUNCHER_KEYS.join(', ')})`);
    // YAML reads `time: 90` and `mem: 16000` as numbers: Slurm's minutes and megabytes, as the flags take them
    const value = (k === 'time' || k === 'mem') && typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? String(v) : v;
    const bad = check(k as LauncherKey, value);
    if (bad) throw fail(`${file}: launcher.${k}: expected ${bad}, got ${show(v)}`);
    (out as Obj)[k] = value;
  }
  return out;
}

/**
 * A Slurm time limit in seconds: `minutes`, `minutes:seconds`, `hours:minutes:seconds`, `days-hours`,
 * `days-hours:minutes`, `days-hours:minutes:seconds` (sbatch --time); null for 0 or UNLIMITED (none).
 */
export function slurmTimeS(t: string): number | null {
  const m = /^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$/.exec(t);
  if (!m) return null;
  const [d, a, b, c] = [m[1], m[2], m[3], m[4]].map((x) => (x === undefined ? undefined : Number(x)));
  let s: number;
  if (d !== undefined) s = d * 86400 + a! * 3600 + (b ?? 0) * 60 + (c ?? 0);
  else if (c !== undefined) s = a! * 3600 + b! * 60 + c;
  else s = a! * 60 + (b ?? 0);
  return s > 0 ? s : null;
}

/** The flags' values (strings as commander gives them), checked; `fail` makes the error of the caller's kind. */
export function parseLauncherFlags(flags: Partial<Record<LauncherKey, string | string[] | undefined>>, fail: (msg: string) => Error): Partial<LauncherSettings> {
  const out: Partial<LauncherSettings> = {};
  for (const key of LAUNCHER_KEYS) {
    const raw = flags[key];
    if (raw === undefined || (Array.isArray(raw) && raw.length === 0)) continue;
    const numeric = key === 'gpus_per_run' || key === 'cpus_per_run' || key === 'max_parallel' || key === 'signal_s';
    // read as every integer flag is (src/config/numbers.ts): `+1` and ` 2 ` are numbers, `1e3` and `0x10` are not
    const v = numeric ? parseInteger(String(raw)) : raw;
    const bad = check(key, v);
    // a value with a line break is shown quoted, so that the message stays one line
    const shown = (a: string) => (/[\n\r]/.test(a) ? JSON.stringify(a) : a);
    if (bad) throw fail(`${LAUNCHER_FLAGS[key]} ${shown(Array.isArray(raw) ? raw.find((a) => !a.startsWith('-') || /[\n\r]/.test(a)) ?? raw.join(' ') : raw)}: expected ${bad}`);
    (out as Obj)[key] = v;
  }
  return out;
}

/** Defaults, then the file's section, then the flags; sbatch arguments add up. */
export function resolveLauncher(file: Partial<LauncherSettings>, flags: Partial<LauncherSettings>, fail?: (msg: string) => Error, fileName = 'the sweep file'): LauncherSettings {
  const out = { ...DEFAULT_LAUNCHER, ...file, ...flags };
  out.sbatch_args = [...(file.sbatch_args ?? []), ...(flags.sbatch_args ?? [])];
  // the warning comes signal_s before the time limit: a limit no longer than that warns each start of a
  // task at once, and it requeues for ever without training
  const limit = out.time === null ? null : slurmTimeS(out.time);
  if (fail && limit !== null && limit <= out.signal_s) {
    const from = (k: 'time' | 'signal_s') => (flags[k] !== undefined ? `${LAUNCHER_FLAGS[k]} ${flags[k]}` : file[k] !== undefined ? `${fileName}'s launcher.${k} ${file[k]}` : `the default ${k === 'signal_s' ? '--signal-s' : '--time'} ${out[k]}`);
    throw fail(`${from('time')}: a time limit of ${limit} s, not longer than ${from('signal_s')} (the warning before it, in seconds): give a longer --time or a smaller --signal-s`);
  }
  return out;
}
