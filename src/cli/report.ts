/** `moco3 report [<sweep>]`: tables, instability figures and plots of finished (or running) sweeps. */
import { Command, Option } from 'commander';
import { nonEmptyPath } from './common.ts';
import { positive } from './numbers.ts';
import { existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { DEFAULT_INSTABILITY, type ReportFormat } from '../report/index.ts';
import { isRunDir, isSweepDir } from '../runfolder/records.ts';
import { checkReportOutputs, listSweeps, readSweep } from '../report/results.ts';
import { readBaselines } from '../runfolder/baselines.ts';
import { UsageError } from '../config/errors.ts';
import { shellQuote } from '../engine/files.ts';

interface ReportFlags {
  results: string;
  format: ReportFormat;
  dip: string;
  spikeFactor: string;
  spikeWindow: string;
  leadMaxLag: string;
  dipAboveInit: boolean;
  plots: boolean;
  png: boolean;
}


/** A sweep given as a folder path or as a name under --results. */
function sweepDir(arg: string, results: string): string {
  // a name or a relative path: itself, then under --results; an absolute path: itself alone
  const where = isAbsolute(arg) ? [arg] : [arg, join(results, arg)];
  for (const d of where) if (isSweepDir(d)) return d;
  if (existsSync(arg) && isRunDir(arg)) {
    // a sweep's run sits in its sweep folder; a run of `moco3 train` (results/train/<run>, --out) in none
    const parent = dirname(resolve(arg));
    const inSweep = existsSync(join(parent, 'sweep.yaml'));
    throw new UsageError(
      inSweep
        ? `${arg} is a run folder; moco3 report takes a sweep folder (its parent, ${parent})`
        : `${arg} is a run folder of moco3 train, in no sweep; moco3 report takes a sweep folder (results/<sweep>); for one run: moco3 eval knn|linear ${shellQuote(arg)}, and its summary.json`,
    );
  }
  throw new UsageError(`no sweep '${arg}' (looked for ${where.join(' and ')}; a sweep is a folder of run folders)`);
}

/** A factor above 1: at 1 or below, a value as large as its running median (most values) is a spike. */
function aboveOne(flag: string, v: string): number {
  const x = positive(flag, v);
  if (x <= 1) throw new UsageError(`${flag} ${v}: expected a number above 1 (a spike is a value above that many times its running median)`);
  return x;
}

export function reportCommand(): Command {
  return new Command('report')
    .description("write report.md (paper-shaped table, instability figures, plots), report.csv and plots/ for a sweep (default: every sweep under --results)")
    .argument('[sweep]', 'sweep name under --results, or a sweep folder', nonEmptyPath)
    .option('--results <dir>', 'results directory', nonEmptyPath, 'results')
    .addOption(new Option('--format <fmt>', 'what to write (plots come with md: csv alone writes none)').choices(['md', 'csv', 'both']).default('both'))
    .option('--dip <points>', 'a kNN dip: at least this many points below the running maximum', String(DEFAULT_INSTABILITY.dipPoints))
    .option('--spike-factor <S>', 'a gradient spike: infinity norm above S x its running median', String(DEFAULT_INSTABILITY.spikeFactor))
    .option('--spike-window <W>', 'the running median is over the previous W logged values', String(DEFAULT_INSTABILITY.spikeWindow))
    .option('--lead-max-lag <L>', "the gradient lead looks at lags up to L logged steps either way", String(DEFAULT_INSTABILITY.leadMaxLag))
    .option('--dip-above-init', "count a kNN drop only from a running maximum above the untrained encoder's kNN (step 0)", false)
    .option('--no-plots', 'no figures')
    .option('--no-png', 'SVG figures only')
    .action(async (arg: string | undefined, f: ReportFlags) => {
      const instability = {
        dipPoints: positive('--dip', f.dip),
        spikeFactor: aboveOne('--spike-factor', f.spikeFactor),
        spikeWindow: positive('--spike-window', f.spikeWindow, true),
        leadMaxLag: positive('--lead-max-lag', f.leadMaxLag, true),
        dipAboveInit: f.dipAboveInit,
      };
      if (!arg) {
        // every sweep under --results: a folder that is not there, or a file, is said as such, not as "no sweeps"
        const st = statSync(f.results, { throwIfNoEntry: false });
        if (!st) throw new UsageError(`--results ${f.results}: no such folder (moco3 sweep <sweep> --results ${shellQuote(f.results)} writes its sweeps there)`);
        if (!st.isDirectory()) throw new UsageError(`--results ${f.results}: is a file, not a folder: give the folder that holds sweeps`);
      }
      const dirs = arg ? [sweepDir(arg, f.results)] : listSweeps(f.results);
      // a sweep's folder given as --results: the sweep is the argument
      if (!dirs.length && existsSync(join(f.results, 'sweep.yaml'))) {
        throw new UsageError(`--results ${f.results}: a sweep's folder, not the folder that holds sweeps: moco3 report ${shellQuote(f.results)}`);
      }
      if (!dirs.length) throw new UsageError(`no sweeps under ${f.results} (a sweep is a folder of run folders, as moco3 sweep <sweep> writes; the runs of moco3 train are in none)`);
      // every sweep is read before any report is written: a damaged one stops the command with nothing written
      // a damaged file (a ReportError: bad input, exit 2) is said before any report is written
      for (const dir of dirs) {
        readSweep(dir, true);
        readBaselines(dir);
        checkReportOutputs(dir, { format: f.format, plots: f.plots, png: f.png });
      }
      // the plotting libraries load only when a report is written
      const { writeReport } = await import('../report/index.ts');
      for (const dir of dirs) {
        const r = await writeReport(dir, { format: f.format, instability, plots: f.plots, png: f.png });
        const md = r.files.find((p) => p.endsWith('report.md'));
        const csv = r.files.find((p) => p.endsWith('report.csv'));
        const plots = r.files.filter((p) => p.endsWith('.svg')).length;
        const diverged = [...r.facts.values()].filter((x) => x.status === 'diverged').length;
        const missing = r.missing.length ? `, ${r.missing.length} missing (not started)` : '';
        const aside = r.asideRuns.length ? `, ${r.asideRuns.length} moved aside by train --force left out` : '';
        process.stdout.write(
          `${r.sweep}: ${r.facts.size} run${r.facts.size === 1 ? '' : 's'} (${diverged} diverged${missing}${aside}), swept ${r.view.sweptKeys.join(' x ') || '-'}` +
            `${r.view.paper ? `, paper ${r.view.paper.figure}` : ''}; ` +
            `${[md, csv].filter(Boolean).join(', ')}${plots ? `, ${plots} plots` : ''} in ${r.seconds.toFixed(2)} s\n`,
        );
      }
    });
}
