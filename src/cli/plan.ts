/** `moco3 plan <sweep>`: the runs a sweep makes and where each stands, without training (no TensorFlow.js). */
import { Command, Option } from 'commander';
import { dirname, join, resolve } from 'node:path';
import { RUN_FILES } from '../runfolder/paths.ts';
import { checkOutputDir, isFile } from '../engine/files.ts';
import { UsageError } from '../config/errors.ts';
import { flatten, parseSet } from '../config/load.ts';
import { BACKEND_CHOICES, OPTIMIZER_NAMES } from '../config/schema.ts';
import { PRESET_NAMES } from '../config/presets.ts';
import { loadSweep } from '../sweep/file.ts';
import { parseOptimizerFlag, parseSeedsFlag, planSweep, runLr, type SweepPlan } from '../sweep/plan.ts';
import { reachedState, type RunStateInfo } from '../runfolder/state.ts';
import { runJobs } from '../sweep/slurm.ts';
import { withResumePoint } from '../sweep/resume.ts';
import { plannedPresetNote } from '../sweep/resolved.ts';
import { formatPlan } from '../sweep/table.ts';
import { dataBackendOverrides, nonEmptyName, nonEmptyPath, refuseFlagAndSet } from './common.ts';
import { jsonLine } from '../runfolder/metrics.ts';

export interface SweepFlags {
  preset?: string;
  optimizer?: string;
  set: string[];
  seeds?: string;
  data?: string;
  backend?: string;
  results: string;
  json?: boolean;
  dryRun?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** The flags `plan` and `sweep` share. */
export function addSweepOptions(cmd: Command): Command {
  return cmd
    .argument('<sweep>', 'a sweep name (batch-size, lr, patch-proj, temperature) or a sweep file')
    .addOption(new Option('-p, --preset <name>', `scale preset (${PRESET_NAMES.join(', ')}); the sweep file's otherwise`).argParser(nonEmptyName))
    .option('--optimizer <name>', `run the grid that belongs to this optimizer (${OPTIMIZER_NAMES.join(', ')}; a comma list runs several)`)
    .option('-s, --set <key=value>', 'override a config key in every run (dotted, e.g. train.knn_every=20); repeatable', collect, [])
    .option('--seeds <list>', 'seeds, e.g. 0,1,2 or 0-2; the sweep file\'s otherwise')
    .option('--data <name[:path]>', 'dataset, optionally with its path', nonEmptyName)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices([...BACKEND_CHOICES]))
    .option('--results <dir>', 'results directory', nonEmptyPath, 'results')
    .option('--json', 'print JSON for scripts');
}

export function planFromFlags(arg: string, f: SweepFlags): SweepPlan {
  const spec = loadSweep(arg);
  const flags = dataBackendOverrides(f);
  refuseFlagAndSet(flags, f.set);
  const overrides = flags.map((o) => o.value);
  const overrideLabels = flags.map((o) => o.label);
  const plan = planSweep(spec, {
    preset: f.preset ?? null,
    optimizers: f.optimizer !== undefined ? parseOptimizerFlag(f.optimizer) : null,
    sets: f.set,
    seeds: f.seeds !== undefined ? parseSeedsFlag(f.seeds) : null,
    overrides,
    overrideLabels,
    results: f.results,
  });
  // a run folder where the sweeps go (`--results run1`), or where this sweep's folder goes: its runs would be
  // made inside a run's files (and the run's own `train` would see them as another's)
  // (a run's config.yaml beside its status.json or metrics.jsonl, files: a sweep may be named `checkpoints`)
  for (const dir of [resolve(f.results), plan.dir]) {
    const held = isFile(join(dir, RUN_FILES.config)) ? [RUN_FILES.status, RUN_FILES.metrics].find((name) => isFile(join(dir, name))) : undefined;
    if (held) throw new UsageError(`--results ${f.results}: ${dir} is a run folder (it holds ${RUN_FILES.config} and ${held}); give the folder that holds sweeps (the default: results)`);
  }
  // a sweep's folder where the sweeps go (`--results results/batch-size`): this sweep would plan a new folder
  // inside it (results/batch-size/batch-size), all its runs new
  if (isFile(join(f.results, 'sweep.yaml'))) {
    throw new UsageError(`--results ${f.results}: a sweep's folder (it holds sweep.yaml), not the folder that holds sweeps: give the one that holds it (${dirname(resolve(f.results))})`);
  }
  // a run whose train split cannot fill one batch is refused before anything is made (by plan as by
  // sweep), naming the --set that gave either key, else the sweep file
  for (const r of plan.runs) {
    const { train_size: n } = r.config.data;
    const B = r.config.optim.batch_size;
    if (n !== null && n < B) {
      const set = [...plan.sets].reverse().find((x) => [...flatten(parseSet(x)).keys()].some((k) => k === 'data.train_size' || k === 'optim.batch_size'));
      throw new UsageError(`${set ? `--set ${set}` : plan.spec.file}: run ${r.id}: data.train_size ${n} cannot fill one batch of optim.batch_size ${B}: use more images or smaller batches`);
    }
  }
  return plan;
}

type Jobs = ReturnType<typeof runJobs>['jobs'];

export function planJson(plan: SweepPlan, states: RunStateInfo[], jobs: Jobs = plan.runs.map(() => null), queueError: string | null = null): Record<string, unknown> {
  return {
    sweep: plan.id,
    file: plan.spec.file,
    dir: plan.dir,
    preset: plan.preset,
    scale: { batch: plan.scale.batch, epochs: plan.scale.epochs, warmup: plan.scale.warmup, lr: plan.scale.lr },
    optimizers: plan.optimizers,
    seeds: plan.seeds,
    varied: plan.varied,
    runs: plan.runs.map((r, i) => ({
      index: r.index,
      id: r.id,
      dir: r.dir,
      paper: r.paper,
      values: r.values,
      lr: runLr(r.config),
      status: states[i]!.state,
      step: states[i]!.step,
      total_steps: states[i]!.total_steps,
      error: states[i]!.error,
      // a run the sweep trains again (interrupted, failed): the step it resumes at (null: from the start), or why it cannot
      ...(states[i]!.state === 'interrupted' || states[i]!.state === 'failed'
        ? { resume_step: states[i]!.resume_error ? null : states[i]!.checkpoint_step, resume_error: states[i]!.resume_error ?? null }
        : {}),
      slurm: jobs[i] ?? null,
    })),
    // squeue's failure: a task's null state then says nothing of whether it is queued
    ...(queueError ? { slurm_error: queueError } : {}),
  };
}

export function printPlan(plan: SweepPlan, json: boolean | undefined): void {
  // what the sweep would say of the folder's earlier runs (another preset's, which the report's columns would mix)
  const note = plannedPresetNote(plan);
  if (note) process.stderr.write(`moco3: note: ${note}\n`);
  // an unfinished run at the step of its last metrics row (its status.json's heartbeat lags up to 9 behind)
  const states = plan.runs.map((r) => withResumePoint(reachedState(r.dir), r.dir, r.config.train.log_every));
  // the Slurm array task of each run and its state, when the sweep was submitted with --launcher slurm
  const { jobs, queueError } = runJobs(plan);
  // squeue that could not answer: a task it did not show may be queued all the same
  if (queueError) process.stderr.write(`moco3: note: ${queueError}: whether the submitted tasks are still queued is unknown (unknown below)\n`);
  const slurm = jobs.some((j) => j !== null) ? { name: 'slurm', cells: jobs.map((j) => (j ? `${j.job} ${j.state ?? (queueError ? 'unknown' : 'not queued')}` : '-')) } : undefined;
  process.stdout.write(json ? `${jsonLine(planJson(plan, states, jobs, queueError))}\n` : formatPlan(plan, states, slurm));
}

export function planCommand(): Command {
  const cmd = new Command('plan').description('print the runs a sweep makes (paper values and values run) and their status; trains nothing');
  addSweepOptions(cmd).action((arg: string, f: SweepFlags) => {
    const plan = planFromFlags(arg, f);
    // plan only reads (a read-only results folder is fine), but a file where the folders go is no sweep's
    checkOutputDir(plan.dir, `--results ${f.results}`, f.results, { write: false, access: false });
    printPlan(plan, f.json);
  });
  return cmd;
}
