/** `moco3 train`: one run. */
import { Command } from 'commander';
import { intFlag } from './numbers.ts';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { configHash, configToYaml } from '../config/load.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import type { BackendName } from '../engine/backend.ts';
import { checkpointsDir, findLastCheckpoint } from '../runfolder/checkpoints.ts';
import { trainRunSlug } from '../runfolder/names.ts';
import { markInterrupted, readStatus } from '../runfolder/status.ts';
import { readRunState } from '../runfolder/state.ts';
import { knnStepNote, readSummary } from '../runfolder/summary.ts';
import { ASIDE_NOTE, ASIDE_STAMP, movedAsideFile, moveRunAside } from '../runfolder/aside.ts';
import { acquireLock, assertLockHeld, cleanStaleTemps, describeHolder, lockLost, releaseLock } from '../runfolder/lock.ts';
import { RUN_FILES } from '../runfolder/paths.ts';
import { isSweepDir } from '../runfolder/records.ts';
import { checkOutputDir, missingAncestors, removeEmptyFolders } from '../engine/files.ts';
import { addRunOptions, configFromFlags, nonEmptyCheckpoint, type RunFlags } from './common.ts';
import { UsageError } from '../config/errors.ts';
import { makeProgress } from './progress.ts';
import { onOutputClosed, STOP_SIGNALS, takeEarlySignals } from './supervise.ts';
import { jsonLine } from '../runfolder/metrics.ts';

interface TrainFlags extends RunFlags {
  out?: string;
  resume?: boolean;
  checkpoint?: string;
  force?: boolean;
  dumpViews?: string;
  json?: boolean;
  quiet?: boolean;
}

export function trainCommand(): Command {
  const cmd = new Command('train').description('train one MoCo v3 ViT run');
  addRunOptions(cmd)
    .option('--seed <n>', 'run seed')
    .option('-o, --out <dir>', 'the run folder (default: <results>/train/<run-id>)')
    .option('--resume', 'continue the run from its newest checkpoint')
    .option('--checkpoint <step>', 'with --resume: continue from this checkpoint (step-N, N or a folder) instead of the newest', nonEmptyCheckpoint)
    .option('--force', 'start over: an existing run folder is moved aside to <dir>.old-<time>, never deleted')
    .option('--dump-views <n>', 'write the two normalised views of the first n steps to views.safetensors')
    .option('--json', 'print one JSON object per event on stdout')
    .option('-q, --quiet', 'no progress output')
    .action(async (f: TrainFlags) => {
      // flags that contradict each other or name no folder, first: what follows reads the folder
      if (f.resume && f.force) throw new UsageError('--resume continues a run and --force starts it again: give one of them');
      if (f.out !== undefined && f.out.trim() === '') throw new UsageError(`--out '${f.out}': expected a folder path`);
      // `--resume --out <run>` alone continues the run as it was configured: its own config.yaml
      // (or where a killed `train --force` had moved it: the lock taken below puts it back)
      const own = f.out !== undefined ? (existsSync(join(f.out, 'config.yaml')) ? join(f.out, 'config.yaml') : movedAsideFile(f.out, 'config.yaml')) : null;
      if (f.resume && own !== null && f.config === undefined && f.preset === undefined) {
        f.config = own;
        if (!f.quiet && !f.json) process.stderr.write(`moco3: --resume: the run's own config, ${f.config}\n`);
      } else if (f.resume && f.out !== undefined && own === null && f.config === undefined && f.preset === undefined) {
        // a run without its config.yaml: the defaults (the paper's recipe) are not what it trained
        if (existsSync(join(f.out, 'status.json'))) throw new UsageError(`--resume --out ${f.out}: the run's config.yaml is missing: give its config (--config FILE, or --preset and --set) to resume it`);
        // a sweep's folder for one of its runs: said as such, as moco3 eval says it
        if (isSweepDir(f.out)) throw new UsageError(`--resume --out ${f.out}: a sweep's folder, not a run folder: give one of its runs (${join(f.out, '<run-id>')}; moco3 plan lists them)`);
        // no run there (a mistyped folder): the defaults would start the paper's full-size run in it
        throw new UsageError(`--resume --out ${f.out}: no run there to resume (no config.yaml); to start one, give its config: --config FILE, or --preset and --set`);
      }
      const c = configFromFlags(f);
      const id = `${trainRunSlug(c)}-${configHash(c)}`;
      const runDir = f.out ?? join(f.results, 'train', id);
      // the flags are checked with --dry-run too: it validates what the same command would run
      const dumpViews = f.dumpViews === undefined ? 0 : intFlag('--dump-views', f.dumpViews, 0);
      if (f.checkpoint !== undefined && !f.resume) throw new UsageError(`--checkpoint ${f.checkpoint}: only with --resume`);
      if (f.checkpoint !== undefined && f.force) throw new UsageError('--checkpoint resumes a run and --force starts it again: give one of them');
      checkOutputDir(runDir, f.out !== undefined ? `--out ${f.out}` : `--results ${f.results}`, runDir, { write: !f.dryRun });
      if (f.dryRun) {
        // what the same command would refuse, refused here too (reading only: no lock, nothing written)
        const { done, notes } = await inspectRunFolder(f, c, runDir);
        let shown = c;
        if (done !== null) {
          process.stderr.write(`moco3: ${done}: nothing would be trained\n`);
          // named by its folder alone (no flag shapes a config): the config it holds, not the defaults
          if (!shapesConfig(f)) {
            const { loadRunConfig } = await import('../runfolder/records.ts');
            try {
              shown = loadRunConfig(runDir);
            } catch {
              /* no readable config.yaml: the flags' */
            }
          }
        } else for (const n of notes) process.stderr.write(`moco3: ${n}\n`);
        process.stdout.write(f.json ? `${jsonLine({ run_dir: runDir, config: shown })}\n` : `# run folder: ${runDir}\n${configToYaml(shown)}`);
        return;
      }
      // the run folder's lock first, as a sweep takes it: while this command looks at the folder, moves a
      // previous run aside and trains, no other process (train or sweep) can do either
      // the run folder and the folders the lock creates above it (results/, results/train/): removed when
      // nothing was written, so that bad input leaves no trace
      const made = existsSync(runDir) ? [] : [...missingAncestors(runDir), runDir];
      const held = acquireLock(runDir, 'train');
      if (held) throw new UsageError(`${runDir}: is being trained by ${describeHolder(held, runDir)}; wait for it to end, or stop it first`);
      const leave = () => {
        releaseLock(runDir);
        // a run that failed before it began (nothing written): no empty folder left behind
        removeEmptyFolders(made);
      };
      // until the run's own handlers take over, a signal (Ctrl-C while the data loads or an image
      // folder's cache is built) ends the command at once, its lock released and its new folder removed
      const early = (sig: NodeJS.Signals) => {
        process.stderr.write(`\nmoco3: ${sig}: stopped before training began\n`);
        process.exit(130);
      };
      const dropEarly = () => {
        for (const sig of STOP_SIGNALS) process.off(sig, early);
      };
      for (const sig of STOP_SIGNALS) process.on(sig, early);
      process.on('exit', leave);
      for (const sig of takeEarlySignals()) early(sig);
      try {
        await trainLocked(f, c, runDir, dumpViews, dropEarly);
      } finally {
        dropEarly();
        process.off('exit', leave);
        leave();
      }
    });
  return cmd;
}


/** The body of `moco3 train`, with the run folder's lock held. */
async function trainLocked(f: TrainFlags, c: ResolvedRunConfig, runDir: string, dumpViews: number, dropEarlySignals: () => void): Promise<void> {
  // TensorFlow.js loads only when a run starts: `moco3 plan`/`--help` stay fast
  const { backendLine, initBackend } = await import('../engine/backend.ts');
  const { trainRun } = await import('../train/loop.ts');
  // what killed processes left: their temporary files, and a checkpoint moved aside to be replaced
  for (const n of cleanStaleTemps(runDir)) process.stderr.write(`moco3: ${n}\n`);
  const { previous, checkpoint, done, notes } = await inspectRunFolder(f, c, runDir);
  if (done !== null) {
    process.stderr.write(`moco3: ${done}\n`);
    // --json: a line for the run left as it is, so a script reading stdout learns where it stands
    if (f.json) {
      const st = readStatus(runDir);
      process.stdout.write(`${jsonLine({ run: 'train', type: 'already', runDir, status: st?.status ?? null, step: st?.step ?? null })}\n`);
    }
    return;
  }
  const { loadRunData } = await import('../components/index.ts');
  const { checkRunData } = await import('../train/loop.ts');
  const dataset = await loadRunData(c);
  checkRunData(dataset, c.optim.batch_size);
  // said when the run starts: a checkpoint that does not fit the model fails before, with its one line alone
  const backend = await initBackend(c.train.backend as BackendName, { quiet: true });
  if (f.resume && !f.force && previous && checkpoint === null) {
    process.stderr.write(`moco3: ${runDir}: no checkpoint to resume from; training it again from step 0 (its metrics start over)\n`);
  } else if (f.resume && !previous) {
    // a script that always passes --resume starts its run so; a mistyped --out is not trained on in silence
    process.stderr.write(`moco3: ${runDir}: no run there to resume; training a new one from step 0\n`);
  }
  for (const n of notes) process.stderr.write(`moco3: ${n}\n`);
  if (f.force && previous) {
    assertLockHeld(runDir);
    // the run's files, not the folder: the folder holds this process's lock
    const aside = moveRunAside(runDir);
    process.stderr.write(`moco3: moved the previous run to ${aside}\n`);
  }
  let stop = false;
  // Ctrl-C, `kill` and a closed terminal alike: stop after this step, checkpoint, status interrupted
  const signals = STOP_SIGNALS;
  let signalled = false;
  const progress = makeProgress('train', { json: f.json, quiet: f.quiet });
  const onSig = (sig: NodeJS.Signals) => {
    // a second Ctrl-C quits at once; another signal meanwhile (scancel's second TERM) lets the checkpoint be written
    if (signalled) {
      if (sig === 'SIGINT') {
        // its status says so (not `running` at the last heartbeat), where the run is still this process's
        markInterrupted(runDir);
        process.exit(130);
      }
      return;
    }
    signalled = true;
    stop = true;
    // above the bar, whole: written past it, the line was cut at the terminal's edge and then drawn over
    progress.log(`\nmoco3: ${sig}: stopping after this step, or this batch of the linear probe (checkpointing); Ctrl-C again to quit at once\n`);
  };
  for (const sig of signals) process.on(sig, onSig);
  // only now: a signal that came while the data loaded waits for the process's next turn, and goes to the
  // handlers there are then; with none left for a moment, Node stops listening, and it is lost
  dropEarlySignals();
  // the output's reader gone (also while the data loaded): stop as for a signal, said nowhere (there is nowhere to say it)
  const offClosed = onOutputClosed(() => {
    stop = true;
  });
  try {
    const s = await trainRun({
      config: c,
      runDir,
      backend,
      resume: Boolean(f.resume),
      ...(checkpoint ? { checkpoint } : {}),
      command: process.argv.slice(1),
      dumpViews,
      dataset,
      onEvent: (e) => {
        if (e.type === 'start' && !f.quiet) process.stderr.write(`moco3: ${backendLine(backend)}\n`);
        progress.onEvent(e);
      },
      // a lock taken over by another host (this process was frozen past the lock timeout): stop
      shouldStop: () => stop || lockLost(runDir),
    });
    progress.stop();
    if (!f.json) {
      const knn = s.knn_top1 === null ? '-' : `${s.knn_top1.toFixed(2)}%${knnStepNote(s)} (best ${s.best_knn_top1 !== null && s.best_knn_top1 !== undefined ? `${s.best_knn_top1.toFixed(2)}%` : '- (no kNN after step 0)'}, chance ${chancePercent(dataset.numClasses)})`;
      process.stdout.write(
        `${s.status} ${s.steps}/${s.total_steps} steps in ${s.wall_s.toFixed(1)} s, ${s.images_per_s ?? '-'} img/s on ${s.backend}; ` +
          `final loss ${s.final_loss?.toFixed(4) ?? '-'}; kNN top-1 ${knn}` +
          `${s.linear_top1 !== null ? `; linear top-1 ${s.linear_top1.toFixed(2)}%` : s.linear_error ? '; linear probe diverged (its lr too large: summary.json says)' : ''}${s.diverged_at !== null ? `; diverged at step ${s.diverged_at}` : ''}\n` +
          `results: ${runDir}\n`,
      );
    }
    if (s.status === 'interrupted') process.exitCode = 130;
  } finally {
    progress.stop();
    for (const sig of signals) process.off(sig, onSig);
    offClosed();
  }
}

/** Whether the command names a config of its own (else `train --out <run>` speaks of the run as it is). */
const shapesConfig = (f: TrainFlags) => f.config !== undefined || f.preset !== undefined || f.set.length > 0 || f.seed !== undefined || f.data !== undefined;

/**
 * What the run folder holds and what this command will do with it, checked, reading only (under the lock,
 * and for --dry-run without it): bad input throws; `done` is the line to say when there is nothing to train
 * (a finished run of this config); `checkpoint` the one a resume starts from.
 */
async function inspectRunFolder(
  f: TrainFlags,
  c: ResolvedRunConfig,
  runDir: string,
): Promise<{ previous: boolean; checkpoint: string | null; done: string | null; notes: string[] }> {
  const notes: string[] = [];
  // a damaged status.json is an error, unless the run is started again anyway
  let st: ReturnType<typeof readStatus> = null;
  try {
    st = readStatus(runDir);
  } catch (e) {
    if (!f.force) throw e;
  }
  // a damaged summary.json is an error too (a finished run's, or one a resume would merge into). A final
  // status without a summary (one removed as that error says) is a run to resume, as plan and sweep read it:
  // the resume writes it again
  const summarised = !f.force && readSummary(runDir) !== null;
  const hasCkpt = findLastCheckpoint(checkpointsDir(runDir)) !== null;
  const { foreign, runFiles } = folderContents(runDir);
  const others = `${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}`;
  if (foreign.length > 0 && !st && !hasCkpt) {
    throw new UsageError(`${runDir}: holds files that are not a moco3 run's (${others}); give a new or empty folder as --out`);
  }
  if (foreign.length > 0 && f.force) {
    throw new UsageError(`${runDir}: holds files that are not a moco3 run's (${others}), which --force would move aside with the run; move them out first`);
  }
  const previous = st !== null || hasCkpt || runFiles.some((e) => !e.startsWith('.lock'));
  const finished = !f.force && (st?.status === 'completed' || st?.status === 'diverged');
  if (finished && shapesConfig(f)) {
    // a finished run of another config than the one asked for is not "already done": that config never ran.
    // The run's config as moco3 reads it (defaults filled in, keys added later at their old values), by hash
    const { configDiffs } = await import('../runfolder/resume.ts');
    const { loadRunConfig } = await import('../runfolder/records.ts');
    let diffs: string[] = [];
    try {
      const theirs = loadRunConfig(runDir);
      if (configHash(theirs) !== configHash(c)) diffs = configDiffs(theirs, c);
    } catch {
      /* no readable config.yaml: the checkpoint's check below (a resume) or the status says the rest */
    }
    if (diffs.length) {
      throw new UsageError(`${runDir}: holds a ${st!.status} run of another config: ${diffs.join(', ')}; --force trains this config there anew (the run moved aside), or give another --out`);
    }
  }
  const done = (s: NonNullable<typeof st>) => `${runDir} is already ${s.status} at step ${s.step} (use --force to train it again)`;
  if (!f.force) {
    // a finished run is a result; a diverged one too, which a resume would train on from its NaN weights
    if (summarised && ((st?.status === 'completed' && !f.resume) || st?.status === 'diverged')) return { previous, checkpoint: null, done: done(st!), notes };
    if (previous && !f.resume) {
      // as plan and sweep read it: a run whose process died is interrupted (its status.json may still say
      // running), and --resume goes on from its last checkpoint
      const rs = readRunState(runDir);
      const what = rs.state === 'new' ? 'previous' : rs.state;
      // a run killed before its first status (config.yaml and metrics.jsonl alone) is at no step yet
      const at = rs.checkpoint_step !== null ? `, its last checkpoint at step ${rs.checkpoint_step}` : rs.step !== null ? ` at step ${rs.step}` : ' that had not begun training (no status, no checkpoint)';
      throw new UsageError(`${runDir}: holds ${/^[aeiou]/.test(what) ? 'an' : 'a'} ${what} run${at}; pass --resume to continue it or --force to start over`);
    }
  }
  // a damaged checkpoint (its files; tensors that do not fit the model fail once it is built, in trainRun,
  // still before anything is written), another config and bad data fail here, before a folder is made or moved
  // resumed as it is (its config and checkpoint checked below), a completed run has nothing left to train: a
  // resume would only rewrite its meta.json, last checkpoint and summary; `--checkpoint step-N` trains again from N
  const resumedAsIs = !f.force && summarised && st?.status === 'completed' && f.checkpoint === undefined;
  let checkpoint: string | null = null;
  if (f.resume && !f.force && existsSync(runDir)) {
    const { checkResumeConfig, readCheckpointState, resumeCheckpoint } = await import('../runfolder/resume.ts');
    checkpoint = resumeCheckpoint(runDir, f.checkpoint, { note: (t) => notes.push(t), logEvery: c.train.log_every });
    if (checkpoint) {
      checkResumeConfig(runDir, c, readCheckpointState(checkpoint));
      // the metrics the resume cuts at the checkpoint's step: a damaged line fails now, before a file is
      // touched (a completed run resumed as it is is left as it is, below: nothing of it is read)
      if (!resumedAsIs) {
        const { metricsPath, readMetrics } = await import('../runfolder/metrics.ts');
        readMetrics(metricsPath(runDir));
      }
    }
    else if (previous) {
      // nothing to resume from: the run trains again from step 0 in its folder, so only as the config it was
      // (another config would replace its files with another run's; --force moves them aside first)
      const { loadRunConfig } = await import('../runfolder/records.ts');
      let theirs: ResolvedRunConfig | null = null;
      try {
        theirs = loadRunConfig(runDir);
      } catch {
        /* no readable config.yaml: nothing to compare with */
      }
      if (theirs && configHash(theirs) !== configHash(c)) checkResumeConfig(runDir, c, { config_hash: configHash(theirs), config: theirs as unknown as Record<string, unknown> });
    }
  } else if (f.checkpoint !== undefined) {
    throw new UsageError(`--checkpoint ${f.checkpoint}: ${runDir} holds no run to resume`);
  }
  if (resumedAsIs) return { previous, checkpoint, done: done(st!), notes };
  return { previous, checkpoint, done: null, notes };
}

/** Evaluation results (step files, earlier ones kept aside) and a damaged meta.json a resume kept: a run's own files. */
const OWN_RESULT = new RegExp(`^(knn|linear)(-step-\\d+)?(${ASIDE_STAMP})?\\.json$`);
const OWN_META = new RegExp(`^meta${ASIDE_STAMP}\\.json$`);

/**
 * What an existing --out folder holds: files a moco3 run writes (its own names, and the temporary and
 * lock files beside them), and anything else, which train never overwrites.
 */
/** kNN's chance level, 100 / classes, to one decimal; two significant digits below 0.1% (more than 1000 classes). */
export function chancePercent(numClasses: number): string {
  const c = 100 / numClasses;
  return `${c >= 0.095 ? c.toFixed(1) : c.toPrecision(2)}%`;
}

function folderContents(dir: string): { runFiles: string[]; foreign: string[] } {
  // and the note of a --force killed while it moved the run aside (the lock's next holder puts the run back)
  const own = new Set<string>([...Object.values(RUN_FILES), `${RUN_FILES.metrics}.gz`, ASIDE_NOTE]);
  const entries = existsSync(dir) ? readdirSync(dir) : [];
  // also the results of `moco3 eval --checkpoint step-N`, earlier results an evaluation kept (src/eval/offline.ts),
  // and a damaged meta.json a resume kept (src/runfolder/records.ts writeMeta)
  const isOwn = (e: string) =>
    own.has(e) ||
    OWN_RESULT.test(e) ||
    OWN_META.test(e) ||
    (e.startsWith('.') && (e.endsWith('.tmp') || e.startsWith('.lock')));
  return { runFiles: entries.filter(isOwn), foreign: entries.filter((e) => !isOwn(e)) };
}
