/**
 * A sweep resumes its interrupted and failed runs from their newest checkpoints. Each of those is
 * validated before a backend starts or a file is written (src/runfolder/resume.ts): a damaged one stops
 * the sweep with one line naming the file, what is wrong, and the `moco3 train` command that resumes the
 * run from its previous complete checkpoint, after which the sweep is run again (or: move the run folder
 * out of the sweep's folder, and the sweep trains the run from the start; `train --force` would leave the
 * old folder beside the runs, which a report leaves out, saying so).
 */
import { basename, dirname, join } from 'node:path';
import { shellQuote } from '../engine/files.ts';
import { metricsPath, readMetrics } from '../runfolder/metrics.ts';
import { CheckpointError, stepOfDir } from '../runfolder/checkpoints.ts';
import { resumeCheckpoint } from '../runfolder/resume.ts';
import { readRunState, type RunStateInfo } from '../runfolder/state.ts';
import type { PlannedRun } from './plan.ts';

/** `moco3 train` on a sweep's run folder: its own config.yaml, the folder as --out. */
const trainCmd = (dir: string, flags: string) => `\`moco3 train -c ${shellQuote(join(dir, 'config.yaml'))} --out ${shellQuote(dir)} ${flags}\``;

/**
 * Validates the checkpoint (and the metrics) each run would resume from; runs trained by another live process
 * are theirs. Returns the checkpoint folder of each run that resumes, by run id.
 */
export function checkSweepResumes(runs: { run: PlannedRun; before: RunStateInfo }[]): Map<string, string> {
  const resumes = new Map<string, string>();
  for (const { run, before } of runs) {
    if (before.state === 'running') continue;
    try {
      const from = resumeCheckpoint(run.dir, undefined, {
        offer: (c) =>
          `resume the run from the ${c.which} checkpoint with ${trainCmd(run.dir, `--resume --checkpoint step-${c.step}`)} ` +
          `(the later steps are trained again) or move the run folder out of ${dirname(run.dir)} to train it from the start; then run the sweep again`,
        none: `: move the run folder out of ${dirname(run.dir)}, then run the sweep again (it trains the run from the start)`,
        logEvery: run.config.train.log_every,
      });
      // its metrics, which the resume cuts at the checkpoint's step: a damaged line stops the sweep here, as
      // it stops `train --resume`, not once the run's turn comes (its status then rewritten to failed)
      if (from) {
        readMetrics(metricsPath(run.dir));
        resumes.set(run.id, from);
      }
    } catch (e) {
      // another sweep (an agent) took the run meanwhile and is writing its checkpoints: it is theirs
      if (readRunState(run.dir).state === 'running') continue;
      throw e;
    }
  }
  return resumes;
}

/**
 * A run's state with the checkpoint a resume would really start from, as the sweep finds it (validated; the
 * run's own newest when last.json is gone): `plan` says what the sweep will do, a damaged checkpoint included.
 * The tensor files' headers are read, not their data: a preview of a sweep of large checkpoints reads no
 * gigabytes (a file damaged in its data is found by the sweep, before anything starts).
 */
export function withResumePoint(s: RunStateInfo, runDir: string, logEvery?: number): RunStateInfo {
  if (s.state !== 'interrupted' && s.state !== 'failed') return s;
  try {
    const from = resumeCheckpoint(runDir, undefined, { digests: false, ...(logEvery === undefined ? {} : { logEvery }) });
    return { ...s, checkpoint_step: from === null ? null : stepOfDir(basename(from)) };
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    return { ...s, resume_error: e.message };
  }
}
