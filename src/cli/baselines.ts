/** `moco3 baselines <sweep>`: what pretraining has to beat, for the report (results/<sweep>/baselines.json). */
import { Command } from 'commander';
import type { BackendName } from '../engine/backend.ts';
import { join } from 'node:path';
import { UsageError } from '../config/errors.ts';
import { checkOutputDir, missingAncestors, removeEmptyFolders } from '../engine/files.ts';
import { acquireLock, describeHolder, releaseLock, type LockInfo } from '../runfolder/lock.ts';
import type { SweepPlan } from '../sweep/plan.ts';
import { addSweepOptions, planFromFlags, type SweepFlags } from './plan.ts';
import { onStopSignals } from './supervise.ts';
import { jsonLine } from '../runfolder/metrics.ts';

export function baselinesCommand(): Command {
  const cmd = new Command('baselines').description(
    "compute a sweep's baselines: kNN and linear probe of the untrained encoder, and a linear classifier on the normalised pixels (one per seed)",
  );
  addSweepOptions(cmd).action(async (arg: string, f: SweepFlags) => {
    const plan = planFromFlags(arg, f);
    checkOutputDir(plan.dir, `--results ${f.results}`, f.results);
    // a damaged baselines.json is said before minutes of computing, not written over
    const { readBaselines } = await import('../runfolder/baselines.ts');
    readBaselines(plan.dir);
    // a folder swept under another preset (`moco3 baselines <sweep>` without the sweep's --preset): said
    // before minutes of computing baselines its runs will not be compared with
    const { baselinesPresetNote } = await import('../sweep/resolved.ts');
    const note = baselinesPresetNote(plan);
    if (note) process.stderr.write(`moco3: note: ${note}\n`);
    // Ctrl-C, `kill`, a closed terminal: stop between two steps of the probes, the lock released and the
    // folders this command made removed when nothing was written (a signal left both behind); a second Ctrl-C quits at once
    let stoppedBy: NodeJS.Signals | null = null;
    const onSig = (sig: NodeJS.Signals) => {
      if (stoppedBy && sig === 'SIGINT') process.exit(130);
      stoppedBy ??= sig;
    };
    const offSignals = onStopSignals(onSig);
    let held: LockInfo | null;
    try {
      held = await withBaselinesLock(plan, () =>
        computeBaselinesOf(plan, {
          json: f.json === true,
          check: () => {
            if (stoppedBy) throw new BaselinesStopped();
          },
        }),
      );
    } catch (e) {
      if (!(e instanceof BaselinesStopped)) throw e;
      const { missingBaselineSeeds, baselinesPath } = await import('../sweep/baselines.ts');
      const left = missingBaselineSeeds(plan).length;
      process.stderr.write(
        `\nmoco3: baselines: ${stoppedBy}: stopped; ` +
          (left < plan.seeds.length ? `the seeds done are in ${baselinesPath(plan)}: run the same command again for the rest\n` : 'no seed was done: run the same command again to compute them\n'),
      );
      process.exitCode = 130;
      return;
    } finally {
      offSignals();
    }
    if (held) throw new UsageError(`${plan.dir}: its baselines are being computed by ${describeHolder(held, baselinesLockDir(plan))}; wait for it to end, or stop it first`);
  });
  return cmd;
}

/** The baselines were stopped between two steps (a signal): what is done is kept, the rest computed next time. */
export class BaselinesStopped extends Error {}

/** The folder of a sweep's baselines lock: `<sweep>/.baselines/.lock` (a hidden folder, which reports pass over). */
export const baselinesLockDir = (plan: Pick<SweepPlan, 'dir'>): string => join(plan.dir, '.baselines');

/**
 * Run `f` holding the sweep's baselines lock, so that two processes (Slurm tasks or agents that end a sweep
 * together, or `moco3 baselines` beside them) never compute the same baselines side by side: null once `f`
 * has run, or the live lock of the process computing them (then `f` does not run). After `f` has run the
 * folder stays: one removed while another process takes the lock would fail that process.
 */
export async function withBaselinesLock(plan: Pick<SweepPlan, 'dir' | 'id'>, f: () => Promise<void>): Promise<LockInfo | null> {
  const dir = baselinesLockDir(plan);
  // the folders the lock makes (the sweep's too, for `moco3 baselines` of a sweep not run yet): removed when
  // `f` fails, so that bad input (data that cannot be read) leaves nothing behind
  const made = missingAncestors(join(dir, '.lock'));
  const held = acquireLock(dir, `${plan.id} baselines`);
  if (held) return held;
  let done = false;
  try {
    await f();
    done = true;
    return null;
  } finally {
    releaseLock(dir);
    if (!done) removeEmptyFolders(made);
  }
}

/**
 * Compute, write and print a plan's baselines (only the `missing` seeds when given, the file's others kept);
 * shared by `moco3 baselines` and the end of `moco3 sweep`.
 */
export async function computeBaselinesOf(
  plan: SweepPlan,
  { json = false, quiet = false, missing, check }: { json?: boolean; quiet?: boolean; missing?: number[]; check?: () => void },
): Promise<void> {
  const { writeSweepBaselines, baselinesPath } = await import('../sweep/baselines.ts');
  // progress lines, unless --json or -q (a sweep's)
  const say = (s: string) => (json || quiet ? undefined : process.stderr.write(`${s}\n`));
  // the data first: a dataset that cannot be read is the one line said, with no progress line before it
  const { loadRunData } = await import('../components/index.ts');
  const dataset = await loadRunData(plan.runs[0]!.config);
  // the backend the runs train on: a sweep whose runs were all done before it started has started none
  // (TensorFlow.js's default, the pure-JS cpu, would take 30 times as long)
  const { activeBackend, initBackend } = await import('../engine/backend.ts');
  const backend = activeBackend() ?? (await initBackend(plan.runs[0]!.config.train.backend as BackendName, { quiet: true }));
  say(`baselines of sweep ${plan.id} on ${backend.name}: untrained encoder and linear on pixels, seeds ${(missing ?? plan.seeds).join(', ')}`);
  const out = await writeSweepBaselines(plan, {
    dataset,
    missingOnly: missing !== undefined,
    onSetAside: (aside, n) =>
      process.stderr.write(`moco3: ${baselinesPath(plan)} held ${n} baseline${n === 1 ? '' : 's'} of other data, model or probe settings; kept as ${aside}\n`),
    ...(check ? { check } : {}),
    // not `seed N:`, the line of a seed done (scripts wait for it)
    onPart: (seed, text) => say(`  seed ${seed}, ${text}`),
    onSeed: (seed, b) =>
      say(
        `  seed ${seed}: untrained encoder kNN ${b.random_init.knn_top1.toFixed(2)}%, linear ${b.random_init.linear_top1.toFixed(2)}%; ` +
          `linear on pixels ${b.pixels.linear_top1.toFixed(2)}% (${b.seconds.toFixed(0)} s)`,
      ),
  });
  if (json) process.stdout.write(`${jsonLine({ type: 'baselines', path: baselinesPath(plan), ...out })}\n`);
  else say(`baselines: ${baselinesPath(plan)}`);
}
