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
import { digitsHint, parseInteger } from '../config/numbers.ts';

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
  time: 'a Slurm time limit such as 24:00:00, 90, 2-00:00:00 or UNLIMITED',
  max_parallel: 'a positive integer',
  signal_s: 'an integer number of seconds from 10 to 65535 (Slurm\'s largest)',
  sbatch_args: 'a list of sbatch options, each starting with - and on one line',
};

/**
 * The sbatch options moco3 writes itself into every script, and why (src/sweep/slurm.ts sbatchScript): one
 * given again through sbatch_args would replace moco3's. Long names and their one-letter forms.
 */
const OWN_SBATCH: Record<string, { short?: string; why: string; against?: string }> = {
  '--job-name': { short: 'J', why: 'the plan finds the sweep\'s tasks in the queue by it' },
  '--array': { short: 'a', why: 'one array task per run to train' },
  '--output': { short: 'o', why: 'each task\'s log, in the sweep\'s slurm/ folder' },
  '--open-mode': { why: 'a requeued task appends to its log' },
  '--chdir': { short: 'D', why: 'the tasks run where the sweep was submitted' },
  '--nodes': { short: 'N', why: 'one node a task' },
  '--ntasks': { short: 'n', why: 'one process a task' },
  '--signal': { why: 'USR1 before the time limit checkpoints the run: give --signal-s' },
  '--requeue': { why: 'a task warned before its time limit requeues itself', against: '--no-requeue' },
  '--parsable': { why: 'moco3 reads the job id it prints' },
};

/**
 * sbatch's long options (Slurm 22.05's `sbatch --help`, and those it does not list): sbatch takes any start
 * of a name that only one of them begins with, so a start is resolved against all of them.
 */
const SBATCH_LONG = (
  'account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters comment constraint container contiguous ' +
  'core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution error exclude ' +
  'exclusive export export-file extra-node-info get-user-env gid gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket ' +
  'gpus-per-task gres gres-flags help hint hold ignore-pbs input job-name kill-on-invalid-dep licenses mail-type mail-user ' +
  'mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus network nice no-kill no-requeue nodefile nodelist nodes ntasks ' +
  'ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode output overcommit oversubscribe parsable ' +
  'partition power priority profile propagate qos quiet reboot requeue reservation signal sockets-per-node spread-job ' +
  'switches test-only thread-spec threads-per-core time time-min tmp tres-per-task uid usage use-min-nodes verbose version ' +
  'wait wait-all-nodes wckey wrap x11'
).split(' ');

/**
 * The option of `a` (an sbatch_args entry: `--name=v`, `--name v`, `-Xv` or `-X v`) that moco3 sets itself,
 * with why; null when it is none of those. A long name is resolved as sbatch resolves it: whole, or by a
 * start only one option begins with (`--arr` is `--array`; `--par`, which begins `--parsable` and
 * `--partition` both, is left for sbatch to refuse).
 */
export function ownSbatchOption(a: string): string | null {
  const long = /^--([A-Za-z][\w-]*)(=|\s|$)/.exec(a)?.[1];
  const short = /^-([A-Za-z])/.exec(a)?.[1];
  let resolved: string | undefined;
  if (long !== undefined) {
    const starts = SBATCH_LONG.filter((o) => o.startsWith(long));
    resolved = SBATCH_LONG.includes(long) ? long : starts.length === 1 ? starts[0] : undefined;
  }
  for (const [name, { short: letter, why, against }] of Object.entries(OWN_SBATCH)) {
    if ((resolved !== undefined && resolved === name.slice(2)) || (long === undefined && short !== undefined && short === letter)) return `moco3 sets ${name} itself (${why})`;
    // the option that undoes one of moco3's
    if (resolved !== undefined && against !== undefined && resolved === against.slice(2)) return `moco3 sets ${name} itself (${why}), which ${against} would undo`;
  }
  return null;
}

const isInt = (v: unknown, min: number) => typeof v === 'number' && Number.isInteger(v) && v >= min;

/** Null when the value is good for the key, else what was expected. */
/** `--exclusive --hold` as one entry: written as one option with the value `--hold` (src/sweep/slurm.ts sbatchArg). */
const twoOptions = (a: string): boolean => /^--?[A-Za-z][\w-]*\s+-/.test(a);

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
      return isInt(v, 10) && (v as number) <= 65535 ? null : EXPECT[key];
    case 'mem':
      // Slurm reads the unit in either case
      return typeof v === 'string' && /^\d+[KMGTkmgt]?$/.test(v) ? null : EXPECT[key];
    case 'time':
      return typeof v === 'string' && (/^(\d+-)?\d+(:\d{1,2}){0,2}$/.test(v) || NO_LIMIT.test(v)) ? null : EXPECT[key];
    case 'sbatch_args': {
      if (!(Array.isArray(v) && v.every((a) => typeof a === 'string' && a.startsWith('-') && !/[\n\r]/.test(a)))) return EXPECT[key];
      if (v.some((a) => twoOptions(a as string))) return `${EXPECT[key]}, one option an entry (a value that begins with - goes after =)`;
      const own = v.map((a) => ownSbatchOption(a as string)).find((x) => x !== null);
      return own ? `${EXPECT[key]}, none of those moco3 sets: ${own}` : null;
    }
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

/** Slurm's words for no time limit (sbatch --time), in either case. */
const NO_LIMIT = /^(unlimited|infinite)$/i;

/**
 * A Slurm time limit in seconds: `minutes`, `minutes:seconds`, `hours:minutes:seconds`, `days-hours`,
 * `days-hours:minutes`, `days-hours:minutes:seconds` (sbatch --time); null for 0 or UNLIMITED (none).
 */
export function slurmTimeS(t: string): number | null {
  if (NO_LIMIT.test(t)) return null;
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
    const culprit = (xs: string[]) => xs.find((a) => !a.startsWith('-') || /[\n\r]/.test(a)) ?? xs.find((a) => ownSbatchOption(a) !== null) ?? xs.find(twoOptions) ?? xs.join(' ');
    // `1e3` is an integer, but counts are written in digits (as src/cli/numbers.ts says it)
    const digits = numeric ? digitsHint(String(raw), (x) => check(key, x) === null) : '';
    if (bad) throw fail(`${LAUNCHER_FLAGS[key]} ${shown(Array.isArray(raw) ? culprit(raw) : raw)}: expected ${bad}${digits}`);
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
