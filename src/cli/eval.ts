/** `moco3 eval knn|linear <run-dir>`: offline evaluation of a run's checkpoint (docs/MOCOV3.md "Evaluation"). */
import { Command, Option } from 'commander';
import { nonEmptyCheckpoint, nonEmptyPath } from './common.ts';
import { positive } from './numbers.ts';
import { statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ASIDE_NOTE, pendingMoveAside } from '../runfolder/aside.ts';
import { BACKEND_CHOICES } from '../config/schema.ts';
import { UsageError } from '../config/errors.ts';
import { scaledLr } from '../optim/schedule.ts';
import { editedConfigNote, isSweepDir, loadRunConfig } from '../runfolder/records.ts';
import { readStatus } from '../runfolder/status.ts';
import { checkOutputDir } from '../engine/files.ts';
import { readRunState } from '../runfolder/state.ts';
import { jsonLine } from '../runfolder/metrics.ts';

interface CommonFlags {
  checkpoint?: string;
  backend?: string;
  json?: boolean;
}

interface KnnFlags extends CommonFlags {
  k?: string;
  t?: string;
  solo?: boolean;
  monitor?: boolean;
}

interface LinearFlags extends CommonFlags {
  epochs?: string;
  lr?: string;
  batchSize?: string;
  augment?: boolean;
}

/** A flag's positive number (an integer with `integer`), or undefined when it is not given. */
const given = (flag: string, v: string | undefined, integer = false): number | undefined => (v === undefined ? undefined : positive(flag, v, integer));

function withCommon(cmd: Command): Command {
  return cmd
    .argument('<run-dir>', 'a run folder (holds config.yaml and checkpoints/)', nonEmptyPath)
    .option('--checkpoint <step>', 'the checkpoint to evaluate: step-N, N or its folder (default: the newest in <run-dir>/checkpoints)', nonEmptyCheckpoint)
    .addOption(new Option('--backend <name>', "TensorFlow.js backend (default: the run's train.backend)").choices([...BACKEND_CHOICES]))
    .option('--json', 'print the result as one JSON object');
}

/** TensorFlow.js and the model are loaded only when an eval command runs. */
async function prepare(runDir: string, backend: string | undefined, checkpointFlag: string | undefined) {
  // a path that is not there, or a sweep's folder given for one of its runs: said as such, not as a folder without config.yaml
  const st = statSync(runDir, { throwIfNoEntry: false });
  if (!st) throw new UsageError(`${runDir}: no such folder (give a run folder: it holds config.yaml and checkpoints/)`);
  if (isSweepDir(runDir)) {
    throw new UsageError(`${runDir}: a sweep's folder, not a run folder: give one of its runs (${join(runDir, '<run-id>')}; moco3 plan lists them)`);
  }
  // a `train --force` moving the run's files aside, or stopped half-way: its files are split between two
  // folders (said before TensorFlow.js loads)
  // (the run reads interrupted while the note is there, and its result would be filed as such)
  const pending = pendingMoveAside(runDir);
  if (pending) {
    throw new UsageError(
      pending.folder !== null
        ? `${runDir}: its files are being moved aside by \`train --force\`, or such a move was stopped half-way (${ASIDE_NOTE}, to ${pending.folder}); ` +
            `a stopped one is put back by the next \`moco3 train\` or \`moco3 sweep\` of this run: evaluate after that`
        : `${runDir}: holds the note of a \`train --force\` stopped before it moved anything (${ASIDE_NOTE}); ` +
            `the next \`moco3 train\` or \`moco3 sweep\` of this run removes it: evaluate after that`,
    );
  }
  const offline = await import('../eval/offline.ts');
  const { initBackend } = await import('../engine/backend.ts');
  const config = loadRunConfig(runDir);
  const edited = editedConfigNote(runDir);
  if (edited) process.stderr.write(`moco3: note: ${edited}\n`);
  // the checkpoint is validated before a backend starts
  const checkpoint = offline.evalCheckpoint(runDir, checkpointFlag);
  // and the folder the result goes to: a read-only one failed once the work was done (minutes of a probe)
  checkOutputDir(runDir, runDir, runDir, { write: false, space: false });
  // the run's state as plan and report see it: a 'running' status whose process is gone is interrupted
  const status = readStatus(runDir);
  const rs = readRunState(runDir);
  const state = rs.state;
  if (state !== 'completed') {
    // a run folder without status.json (copied without it) reads as interrupted: its results go to a step file too.
    // The step its metrics and checkpoints reach (status.json is rewritten only every few steps)
    const at = rs.step ?? status?.step;
    const what = !status ? 'has no status.json (read as not finished)' : state === 'diverged' ? `diverged at step ${status.diverged_at ?? at}` : `is ${state} at step ${at}`;
    const which = checkpointFlag === undefined ? 'its newest checkpoint' : `its checkpoint ${basename(checkpoint)}`;
    process.stderr.write(`moco3: note: ${runDir} ${what}; evaluating ${which}\n`);
  }
  // named in the result line: a damaged checkpoint or missing data fails with its one line alone
  const info = await initBackend((backend ?? config.train.backend) as Parameters<typeof initBackend>[0], { quiet: true });
  // without --checkpoint, the newest is found again when the model is read (after the backend and the data):
  // a run still training may have replaced the one checked above by then
  return { offline, config, checkpoint: checkpointFlag === undefined ? undefined : checkpoint, backend: info.name };
}

function knnCommand(): Command {
  return withCommon(new Command('knn').description('weighted kNN top-1/top-5: the whole train split as the bank, the whole test split as queries (--monitor: the kNN monitor\'s)'))
    .option('-k, --k <n>', "neighbours (default: the run's eval.knn.k, 200)")
    .option('-t, --t <temp>', "temperature of the exp(sim / t) weights (default: the run's eval.knn.t, 0.1)")
    .option('--solo', "solo-learn's setting: k = 20, t = 0.07")
    .option('--monitor', "the kNN monitor's splits: the first eval.knn.bank_size train and eval.knn.query_size test images (the run's kNN curve in metrics.jsonl), not the whole ones")
    .action(async (runDir: string, f: KnnFlags) => {
      let k = given('--k', f.k, true);
      let t = given('--t', f.t);
      if (f.solo) {
        if (k !== undefined || t !== undefined) throw new UsageError('--solo sets k = 20 and t = 0.07; do not combine it with --k or --t');
        k = 20;
        t = 0.07;
      }
      const { offline, config, checkpoint, backend } = await prepare(runDir, f.backend, f.checkpoint);
      // the features of every train and test image take minutes on a CPU: a line each tenth of them, and at
      // least every half minute
      const t0 = performance.now();
      let shown = 0;
      let last = t0;
      const onProgress = f.json
        ? undefined
        : (done: number, total: number) => {
            const now = performance.now();
            const tenth = Math.floor((10 * done) / total);
            if (done < total && (tenth > shown || now - last > 30_000)) {
              shown = tenth;
              last = now;
              process.stderr.write(`kNN features: ${done}/${total} images (${((now - t0) / 1000).toFixed(0)} s)\n`);
            }
          };
      const r = await offline.knnForRun(runDir, { k, t, config, checkpoint, monitor: f.monitor === true, ...(onProgress ? { onProgress } : {}) });
      // a -k past the bank is cut to it: said where it was asked for (the result line and files give the k used)
      if (k !== undefined && r.k < k && !f.json) process.stderr.write(`moco3: note: -k ${k} is more than the bank's ${r.bank} images: ${r.k} neighbours used\n`);
      if (f.json) process.stdout.write(`${jsonLine({ ...r, backend })}\n`);
      else {
        process.stdout.write(
          `kNN (k ${r.k}, t ${r.t}; bank ${r.bank} train images, ${r.queries} test images; checkpoint step ${r.step ?? '?'}): ` +
            `top-1 ${r.top1.toFixed(2)}%, top-5 ${r.top5.toFixed(2)}% in ${r.seconds.toFixed(1)} s on ${backend}; wrote ${r.wrote?.join(' and ') ?? 'nothing'}\n`,
        );
      }
    });
}

function linearCommand(): Command {
  return withCommon(new Command('linear').description('linear probe on the frozen base encoder (class token after the final LayerNorm), as main_lincls.py'))
    .option('--epochs <n>', "epochs (default: the run's eval.linear.epochs)")
    .option('--lr <base>', "base lr; the lr used is base x batch / 256 (default: the run's eval.linear.base_lr)")
    .option('--batch-size <n>', "batch size (default: the run's eval.linear.batch_size)")
    .option('--augment', "train on random-resized-crop + flip views, recomputed every epoch (the recipe; default: the run's eval.linear.train_views)")
    .option('--no-augment', 'no random-resized-crop + flip: train on centre-view features, computed once and cached')
    .action(async (runDir: string, f: LinearFlags) => {
      const epochs = given('--epochs', f.epochs, true);
      const baseLr = given('--lr', f.lr);
      const batchSize = given('--batch-size', f.batchSize, true);
      const { offline, config, checkpoint, backend } = await prepare(runDir, f.backend, f.checkpoint);
      const quiet = Boolean(f.json);
      // the lr used, base x batch / 256, must be a number
      const batch = batchSize ?? config.eval.linear.batch_size;
      const lrFrom = baseLr !== undefined ? `--lr ${f.lr}` : `eval.linear.base_lr ${config.eval.linear.base_lr} (the run's config.yaml)`;
      if (!Number.isFinite(scaledLr(baseLr ?? config.eval.linear.base_lr, batch))) {
        throw new UsageError(`${lrFrom}: x batch ${batch} / 256 (the lr used) is beyond a float; give a smaller --lr`);
      }
      const r = await offline
        .linearProbeForRun(runDir, {
          config,
          checkpoint,
          epochs,
          baseLr,
          batchSize,
          augment: f.augment,
          onEpoch: quiet
            ? undefined
            : (e) => process.stderr.write(`linear probe epoch ${e.epoch}/${e.epochs}: lr ${e.lr.toPrecision(3)}, loss ${e.loss.toFixed(4)}, train top-1 ${e.trainTop1.toFixed(1)}% (${e.seconds.toFixed(1)} s)\n`),
        })
        .catch((e: unknown) => {
          // nothing is written: a head whose loss is not a number would score 0%, below chance
          throw e instanceof offline.ProbeDiverged ? new UsageError(`${lrFrom}: ${e.message}; nothing written; give a smaller --lr`) : e;
        });
      // a --batch-size past the training split is cut to it, and the lr with it
      if (batchSize !== undefined && r.batchSize < batchSize && !f.json) {
        process.stderr.write(`moco3: note: --batch-size ${batchSize} is more than the ${r.trainSize} training images: batches of ${r.batchSize}, lr ${r.lr.toPrecision(3)}\n`);
      }
      if (f.json) process.stdout.write(`${jsonLine({ ...r, backend })}\n`);
      else {
        const views = r.augmented
          ? 'train views: random-resized-crop + flip, new crops every epoch'
          : 'train features: centre view, computed once and cached (no augmentation)';
        process.stdout.write(
          `linear probe (${r.epochs} epoch${r.epochs === 1 ? '' : 's'}, lr ${r.lr.toPrecision(3)} = ${r.baseLr} x ${r.batchSize}/256, SGD momentum 0.9, no weight decay; ${views}; ` +
            `${r.trainSize} train / ${r.testSize} test images; checkpoint step ${r.step ?? '?'}): ` +
            `top-1 ${r.top1.toFixed(2)}%, top-5 ${r.top5.toFixed(2)}% in ${r.seconds.toFixed(1)} s on ${backend}; wrote ${r.wrote?.join(' and ') ?? 'nothing'}\n`,
        );
      }
    });
}

export function evalCommand(): Command {
  // sub-commands added with addCommand do not inherit exitOverride: set it so errors reach main's boundary
  return new Command('eval')
    .description("offline evaluation of a run's checkpoint: kNN or linear probe")
    .addCommand(knnCommand().exitOverride())
    .addCommand(linearCommand().exitOverride());
}
