/**
 * Reading result folders (docs/ARCHITECTURE.md "The run folder") with no TensorFlow.js: a run's config,
 * status, summary and metrics through src/runfolder/, and a sweep's runs. Everything here tolerates a
 * run that is still being written (missing files, a torn last metrics line).
 */
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { InputError } from '../config/errors.ts';
import { shellQuote } from '../engine/files.ts';
import { flatten } from '../config/load.ts';
import { readMetrics, type MetricRow } from '../runfolder/metrics.ts';
import { readYamlChecked, RUN_FILES, runPath, type Obj } from '../runfolder/paths.ts';
import { editedConfigNote, isRunDir, readRunConfigRaw } from '../runfolder/records.ts';
import { readStatus, type StatusFile } from '../runfolder/status.ts';
import { ASIDE_NOTE, ASIDE_RUN } from '../runfolder/aside.ts';
import { readSummary } from '../runfolder/summary.ts';

export interface RunRecord {
  /** folder name */
  id: string;
  dir: string;
  /** config.yaml as written (nested) */
  config: Record<string, unknown>;
  /** config flattened to dotted keys: `optim.base_lr` -> 1e-4 */
  flat: Map<string, unknown>;
  status: StatusFile | null;
  summary: Record<string, unknown> | null;
  metrics: MetricRow[];
  /** config.yaml is not the config the run was trained with (meta.json's hash): why, in one line; null when it is */
  edited: string | null;
}

/** A result folder that cannot be read as asked: bad input (one line, exit 2). */
export class ReportError extends InputError {
  override name = 'ReportError';
}

export { flatten };

/** `quiet`: no note for a torn last metrics line (a first pass that only checks the files reads them twice). */
export function readRun(dir: string, quiet = false): RunRecord {
  const config = readRunConfigRaw(dir);
  if (!config) {
    throw new ReportError(
      existsSync(runPath(dir, 'config'))
        ? `${runPath(dir, 'config')}: not a YAML mapping (damaged?): put the run's config back (each checkpoint's state.json keeps it), or move the run folder out of the sweep`
        : `${dir}: no readable config.yaml (not a run folder)`,
    );
  }
  // the seed is what pools runs (mean ± std, paired by seed): one that train would refuse (`seed: abc`, edited
  // by hand) is refused, not reported as seed NaN
  const seed = config.seed;
  if (seed !== undefined && !(typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0)) {
    throw new ReportError(`${runPath(dir, 'config')}: seed: expected an integer >= 0, got ${JSON.stringify(seed)}`);
  }
  const edited = editedConfigNote(dir);
  if (edited && !quiet) process.stderr.write(`moco3: note: ${edited}\n`);
  return {
    id: basename(dir),
    dir,
    config,
    flat: flatten(config),
    status: readStatus(dir),
    summary: readSummary(dir),
    metrics: readMetrics(runPath(dir, 'metrics'), quiet ? undefined : (note) => process.stderr.write(`moco3: note: ${note}\n`)),
    edited,
  };
}

export interface SweepRecord {
  name: string;
  dir: string;
  /** sweep.yaml as written by the sweep runner, when there is one */
  sweepFile: Obj | null;
  runs: RunRecord[];
  /** run folders left out: previous runs `moco3 train --force` moved aside (`<run>.old-<time>`) */
  asideRuns: string[];
}

/** Files only a run writes: a folder holding one of them is a run's, config.yaml or not. */
const RUN_EVIDENCE = [RUN_FILES.status, RUN_FILES.metrics, RUN_FILES.summary, RUN_FILES.checkpoints];


/**
 * A sweep folder: its sweep.yaml (optional) and every sub-folder holding a config.yaml, but for previous
 * runs moved aside by `train --force`: the run that replaced one is in the folder, so counting both would
 * count that setting twice.
 */
export function readSweep(dir: string, quiet = false): SweepRecord {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ReportError(`${dir}: no such sweep folder`);
  const folders = readdirSync(dir).filter((d) => !d.startsWith('.') && d !== 'plots' && statSync(join(dir, d)).isDirectory());
  const found = folders.filter((d) => isRunDir(join(dir, d))).sort();
  // a run split between its folder and the one a killed `train --force` was moving it to: neither is the
  // run, and the files in the second go back on the next train (moving that folder out would lose them)
  for (const d of folders.filter((x) => existsSync(join(dir, x, ASIDE_NOTE))).sort()) {
    const at = join(dir, d);
    throw new ReportError(`${at}: a \`moco3 train --force\` on this run was killed while it moved the run's files aside; \`moco3 train --out ${shellQuote(at)} --resume\` (or the sweep) puts them back`);
  }
  for (const d of folders.filter((x) => !found.includes(x))) {
    // a run's files without the config.yaml that makes it a run: reported as not started, it would be misreported
    const at = join(dir, d);
    const files = RUN_EVIDENCE.filter((f) => existsSync(join(at, f)));
    if (files.length > 0) {
      throw new ReportError(`${at}: holds a run's ${files.join(', ')} but no config.yaml; put it back (each checkpoint's state.json keeps the run's config) or move the folder out of ${dir}`);
    }
  }
  const runs = found.filter((d) => !ASIDE_RUN.test(d)).map((d) => readRun(join(dir, d), quiet));
  const sweepFile = readYamlChecked(
    join(dir, 'sweep.yaml'),
    'it is rewritten by `moco3 sweep` on this folder (run it again: finished runs are skipped), or remove it and the report reads the run folders alone',
  );
  // the folder's own name, also where it was given as `.` or `results/lr/..`
  return { name: basename(resolve(dir)), dir, sweepFile, runs, asideRuns: found.filter((d) => ASIDE_RUN.test(d)) };
}

/** The sweep folders under a results directory: folders holding at least one run folder. */
export function listSweeps(resultsDir: string): string[] {
  if (!existsSync(resultsDir)) return [];
  return readdirSync(resultsDir)
    .filter((d) => !d.startsWith('.'))
    .map((d) => join(resultsDir, d))
    // results/train holds the runs of `moco3 train`, in no sweep (a sweep named train has its sweep.yaml)
    .filter((d) => basename(d) !== 'train' || existsSync(join(d, 'sweep.yaml')))
    .filter((d) => statSync(d).isDirectory() && readdirSync(d).some((r) => isRunDir(join(d, r))))
    .sort();
}

/** The report's figures, by the file name each is written under in plots/ (src/report/plots.ts draws them). */
export const FIGURES = { knn: 'knn', grad: 'grad' } as const;

/**
 * The paths a report will write (`format`: md, csv or both; `plots`, `png` as in writeReport), checked
 * before anything is written, so that one it cannot write stops it with every file as it was (each run's
 * summary.json too, which the report merges its instability figures into).
 */
export function checkReportOutputs(dir: string, opts: { format?: 'md' | 'csv' | 'both'; plots?: boolean; png?: boolean; summaries?: boolean } = {}): void {
  const format = opts.format ?? 'both';
  const files: string[] = [];
  const plotDir = join(dir, 'plots');
  const plotsFolder = existsSync(plotDir) && statSync(plotDir).isDirectory();
  // an earlier report's figures that this one removes (a figure it does not draw: --no-png, --no-plots); a
  // plots/ whose entries cannot be looked at may hold some
  let removes = false;
  if (format !== 'md') files.push('report.csv', 'runs.csv');
  if (format !== 'csv') {
    files.push('report.md');
    if (opts.plots !== false && existsSync(plotDir) && !plotsFolder) throw new ReportError(`${plotDir}: is a file, where the report puts its plots: move it away, or give --no-plots`);
    const drawn = opts.plots === false ? [] : Object.values(FIGURES).flatMap((n) => [`${n}.svg`, ...(opts.png !== false ? [`${n}.png`] : [])]);
    files.push(...drawn.map((f) => `plots/${f}`));
    if (plotsFolder) {
      const gone = new Set(Object.values(FIGURES).flatMap((n) => [`${n}.svg`, `${n}.png`]).filter((f) => !drawn.includes(f)));
      try {
        removes = readdirSync(plotDir).some((f) => gone.has(f));
      } catch {
        removes = gone.size > 0;
      }
    }
  }
  for (const f of files) {
    const p = join(dir, f);
    if (existsSync(p) && statSync(p).isDirectory()) throw new ReportError(`${p}: is a folder, where the report writes its ${f}: move it away`);
  }
  // every file is written to a temporary name in its folder and renamed: each folder written in must take
  // new files, or the report would stop half-written (some files new, others old). The folders: the
  // sweep's, its plots/ (new figures, or an earlier report's removed), and each run folder whose
  // summary.json takes the instability figures
  const folders = [dir];
  if (format !== 'csv' && plotsFolder && (opts.plots !== false || removes)) folders.push(plotDir);
  if (opts.summaries !== false) {
    for (const e of readdirSync(dir)) if (existsSync(join(dir, e, RUN_FILES.summary))) folders.push(join(dir, e));
  }
  for (const d of folders) {
    try {
      accessSync(d, constants.W_OK | constants.X_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'EROFS' ? 'a read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'no write access' : (code ?? String(e));
      const what = d === plotDir && opts.plots === false ? '; it would remove the figures of an earlier report there, which report.md will no longer show' : '';
      throw new ReportError(`${d}: the report cannot write there (${why})${what}, and writes nothing until it can: give write access, or copy the sweep folder somewhere writable`);
    }
  }
}

/** sweep.yaml's planned runs: the latest invocation's (`runs`), then what earlier ones planned besides (`earlier_runs`). */
export function plannedRuns(sweepFile: Obj | null): unknown[] {
  return [sweepFile?.runs, sweepFile?.earlier_runs].flatMap((l) => (Array.isArray(l) ? l : []));
}
