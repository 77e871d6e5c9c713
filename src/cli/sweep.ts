/** `moco3 sweep <name|file>`: run a sweep's runs in order; skip what is done, resume what was interrupted. */
import cliProgress from 'cli-progress';
import { Command } from 'commander';
import { hostname } from 'node:os';
import { checkOutputDir } from '../engine/files.ts';
import { describeHolder, staleAfterS } from '../runfolder/lock.ts';
import { markInterrupted } from '../runfolder/status.ts';
import { shellQuote } from '../engine/files.ts';
import type { SweepPlan } from '../sweep/plan.ts';
import type { SweepEvent } from '../sweep/runner.ts';
import type { BackendInfo } from '../engine/backend.ts';
import { isDone } from '../runfolder/state.ts';
import { knnStepNote } from '../runfolder/summary.ts';
import { describeState, formatPlan } from '../sweep/table.ts';
import { addLaunchOptions, prepareLaunch, slurmSettings, submitSlurm, type LaunchFlags } from './launch.ts';
import { addSweepOptions, planFromFlags, printPlan, type SweepFlags } from './plan.ts';
import { jsonLine } from '../runfolder/metrics.ts';
import { barLine, barOptions, barsOn, barSize, fmt, fmtDuration, makeProgress, recentRate, toStderr, wrappedLog, type ProgressSink } from './progress.ts';
import { BaselinesStopped, baselinesLockDir, computeBaselinesOf, withBaselinesLock } from './baselines.ts';
import { childLink, onOutputClosed, shouldSupervise, STOP_SIGNALS, superviseSweep, sweepStartedMs, takeEarlySignals } from './supervise.ts';


export interface Display {
  onEvent(e: SweepEvent): void;
  /** a message for the user (ending in a line break), above the bars while they draw */
  log(text: string): void;
  stop(): void;
}

/** Share of the sweep done in this invocation, for the ETA: each run counts 1, a started run its step fraction. */
class Eta {
  private t0 = performance.now();
  private todo = 0;
  private done = 0;
  private frac = 0;
  private startFrac = 0;
  private gained = 0;
  private failed = 0;
  /** between a run's run_start and its end */
  private inRun = false;
  /** a pass over the sweep begins (an agent makes several): its counts are its own */
  start(todo: number) {
    this.todo = todo;
    this.t0 = performance.now();
    this.done = this.gained = this.failed = 0;
    this.frac = this.startFrac = 0;
    this.inRun = false;
  }
  /** run_start; `counted`: in sweep_start's todo (false: left to another process then, freed since: one more) */
  runBegins(counted: boolean) {
    this.inRun = true;
    if (!counted) this.todo += 1;
  }
  /**
   * run_skip: a run this pass counted (at the start, or when it started here) was taken or finished by another
   * process, and leaves the count; true when it was counted
   */
  runSkipped(counted: boolean): boolean {
    const was = counted || this.inRun;
    this.inRun = false;
    if (!was) return false;
    this.todo = Math.max(0, this.todo - 1);
    // the steps it trained here before it was taken still tell the pace
    this.gained += this.frac - this.startFrac;
    this.frac = this.startFrac = 0;
    return true;
  }
  get toDo() {
    return this.todo;
  }
  runStart(step: number, total: number) {
    this.frac = this.startFrac = total > 0 ? step / total : 0;
  }
  step(step: number, total: number) {
    this.frac = total > 0 ? step / total : 0;
  }
  runEnd(failed = false) {
    this.inRun = false;
    this.gained += 1 - this.startFrac;
    this.done += 1;
    if (failed) this.failed += 1;
    this.frac = this.startFrac = 0;
  }
  /** "3/8 runs" and how many of those failed: a failed run is through, not done */
  runsText(): string {
    return `${this.done}/${this.todo} runs${this.failed ? ` (${this.failed} failed)` : ''}`;
  }
  get fraction() {
    return this.todo > 0 ? Math.min(1, (this.done + this.frac) / this.todo) : 1;
  }
  seconds(): number {
    const work = this.gained + (this.frac - this.startFrac);
    if (work <= 0) return NaN;
    const el = (performance.now() - this.t0) / 1000;
    return (el / work) * Math.max(0, this.todo - this.done - this.frac);
  }
}

function jsonDisplay(): Display {
  // as metrics.jsonl writes them: a NaN loss is "NaN", not null
  const out = (o: unknown) => process.stdout.write(`${jsonLine(o)}\n`);
  return {
    onEvent(e) {
      if (e.type === 'train') {
        const { event, ...where } = e;
        out({ ...event, run: where.run, index: where.index, total: where.total });
      } else {
        out(e);
      }
    },
    log: toStderr,
    stop() {},
  };
}

/** `sweep X: 4 runs, 2 to train on native -> dir`; with none to train, no backend is started: none named. */
function sweepStartLine(e: { sweep: string; total: number; todo: number; backend: string; dir: string }): string {
  return `sweep ${e.sweep}: ${e.total} runs, ${e.todo === 0 ? 'none to train' : `${e.todo} to train on ${e.backend}`} -> ${e.dir}`;
}

function runLine(e: { index: number; total: number; run: string }): string {
  return `[${e.index}/${e.total}] ${e.run}`;
}

/** Plain lines (logs, CI): the train command's lines per run, and a sweep line after each run. */
export function plainDisplay(): Display {
  const err = process.stderr;
  const eta = new Eta();
  let sink: ProgressSink | null = null;
  const through = () => err.write(`sweep: ${eta.runsText()} through, ETA ${fmtDuration(eta.seconds())}\n`);
  return {
    onEvent(e) {
      switch (e.type) {
        case 'sweep_start':
          eta.start(e.todo);
          err.write(`${sweepStartLine(e)}\n`);
          for (const n of e.notes ?? []) err.write(`  note: ${n}\n`);
          break;
        case 'run_skip':
          for (const n of e.notes ?? []) err.write(`${runLine(e)}: ${n}\n`);
          err.write(`${runLine(e)}: skipped (${e.reason})\n`);
          if (eta.runSkipped(e.to_train)) {
            sink?.stop();
            sink = null;
            through();
          }
          break;
        case 'run_start':
          eta.runBegins(e.to_train);
          sink = makeProgress(runLine(e));
          for (const n of e.notes ?? []) err.write(`${runLine(e)}: ${n}\n`);
          if (e.previous !== 'new') err.write(`${runLine(e)}: was ${e.previous}; ${e.resume_step !== null ? `resuming from the checkpoint at step ${e.resume_step}` : 'starting over'}\n`);
          break;
        case 'train':
          if (e.event.type === 'start') eta.runStart(e.event.startStep, e.event.totalSteps);
          if (e.event.type === 'step') eta.step(e.event.step, e.event.totalSteps);
          sink?.onEvent(e.event);
          break;
        case 'run_end':
        case 'run_failed':
          sink?.stop();
          sink = null;
          if (e.type === 'run_failed') err.write(`${runLine(e)}: failed: ${e.error}\n`);
          if (e.type === 'run_end' && e.status === 'interrupted') break;
          eta.runEnd(e.type === 'run_failed');
          through();
          break;
        case 'sweep_end':
          break;
      }
    },
    log: toStderr,
    stop() {
      sink?.stop();
    },
  };
}

/** On a terminal: a bar for the sweep (runs done, ETA) and one for the current run (step, loss, kNN, img/s). */
export function barDisplay(): Display {
  const multi = new cliProgress.MultiBar(
    // redrawn whole each time: a message above them (multi.log) moves them down a line, where a bar whose text
    // had not changed was left undrawn
    { ...barOptions(), format: barLine, barsize: barSize(), clearOnComplete: false, forceRedraw: true },
    cliProgress.Presets.shades_classic,
  );
  const eta = new Eta();
  let sweepBar: cliProgress.SingleBar | null = null;
  let runBar: cliProgress.SingleBar | null = null;
  let label = 'sweep';
  let knn: number | null = null;
  let rate = recentRate();
  let loss: number | null = null;
  const units = 1000;
  // the bars redraw on a timer, and a training step may not let timers run: redraw from the events too
  let lastDraw = 0;
  const redraw = (force = false) => {
    const now = performance.now();
    if (force || now - lastDraw > 200) {
      lastDraw = now;
      multi.update();
    }
  };
  // above the bars, whole: wrapping on for the message (the bars draw with it off), each line's rest cleared
  const log = (text: string) => multi.log(wrappedLog(text));
  const updateSweep = () => {
    sweepBar?.update(Math.round(eta.fraction * eta.toDo * units), { label, parts: [eta.runsText(), `ETA ${fmtDuration(eta.seconds())}`] });
  };
  return {
    onEvent(e) {
      switch (e.type) {
        case 'sweep_start':
          label = `sweep ${e.sweep}`;
          eta.start(e.todo);
          log(`${sweepStartLine(e)}\n`);
          for (const n of e.notes ?? []) log(`  note: ${n}\n`);
          // an agent's next pass: a bar of its own
          if (sweepBar) multi.remove(sweepBar);
          sweepBar = multi.create(Math.max(1, e.todo * units), 0, { label, parts: [`0/${e.todo} runs`, 'ETA -'] });
          break;
        case 'run_skip':
          for (const n of e.notes ?? []) log(`${runLine(e)}: ${n}\n`);
          log(`${runLine(e)}: skipped (${e.reason})\n`);
          if (eta.runSkipped(e.to_train)) {
            if (runBar) {
              runBar.stop();
              multi.remove(runBar);
              runBar = null;
            }
            sweepBar?.setTotal(Math.max(1, eta.toDo * units));
            updateSweep();
          }
          redraw(true);
          break;
        case 'run_start':
          eta.runBegins(e.to_train);
          sweepBar?.setTotal(Math.max(1, eta.toDo * units));
          knn = loss = null;
          rate = recentRate();
          for (const n of e.notes ?? []) log(`${runLine(e)}: ${n}\n`);
          if (e.previous !== 'new') log(`${runLine(e)}: was ${e.previous}; ${e.resume_step !== null ? `resuming at step ${e.resume_step}` : 'starting over'}\n`);
          redraw(true);
          break;
        case 'train': {
          const ev = e.event;
          const name = `[${e.index}/${e.total}]`;
          if (ev.type === 'start') {
            knn = ev.knnTop1;
            eta.runStart(ev.startStep, ev.totalSteps);
            runBar = multi.create(ev.totalSteps, ev.startStep, { label: name, parts: [`${ev.startStep}/${ev.totalSteps}`, e.run] });
          } else if (ev.type === 'step') {
            eta.step(ev.step, ev.totalSteps);
            loss = ev.row.loss ?? null;
            rate.add(ev.row);
            runBar?.update(ev.step, {
              label: name,
              // the run's name before its figures: a narrow terminal drops the last first
              parts: [`${ev.step}/${ev.totalSteps}`, e.run, `loss ${fmt(loss)}`, `kNN ${knn === null ? '-' : `${knn.toFixed(1)}%`}`, `${fmt(rate.value(), 1)} img/s`],
            });
            updateSweep();
            redraw();
          } else if (ev.type === 'knn') {
            knn = ev.top1;
          } else if (ev.type === 'phase') {
            // a repaired file, the linear probe's epochs: said above the bars, as the plain lines say them
            log(`${runLine(e)}: ${ev.text}\n`);
            redraw(true);
          }
          break;
        }
        case 'run_end':
        case 'run_failed':
          if (runBar) {
            runBar.stop();
            multi.remove(runBar);
            runBar = null;
          }
          if (e.type === 'run_failed') log(`${runLine(e)}: failed: ${e.error}\n`);
          else {
            const s = e.summary;
            log(`${runLine(e)}: ${e.status} at step ${s.steps}/${s.total_steps}; kNN ${s.knn_top1 === null ? '-' : `${s.knn_top1.toFixed(2)}%${knnStepNote(s)}`}; ${fmtDuration(s.wall_s)}\n`);
          }
          if (e.type === 'run_end' && e.status === 'interrupted') {
            redraw(true);
            break;
          }
          eta.runEnd(e.type === 'run_failed');
          updateSweep();
          redraw(true);
          break;
        case 'sweep_end':
          updateSweep();
          redraw(true);
          break;
      }
    },
    log(text) {
      log(text.replace(/^\n/, ''));
      redraw(true);
    },
    stop() {
      multi.stop();
    },
  };
}

export function sweepCommand(): Command {
  const cmd = new Command('sweep').description('run a sweep: every run of the plan in order; completed runs are skipped, interrupted ones resumed');
  addLaunchOptions(addSweepOptions(cmd))
    .option('--dry-run', 'validate, resolve and print the plan (with --launcher slurm: the sbatch script); train nothing')
    .option('-q, --quiet', 'no progress output')
    .option('--no-baselines', "skip the sweep's baselines (untrained encoder, linear on pixels) at the end")
    .action(async (arg: string, f: SweepFlags & LaunchFlags & { quiet?: boolean; baselines?: boolean }) => {
      const plan: SweepPlan = planFromFlags(arg, f);
      // the launcher's flags first: a command refused probes no folder
      let stop = false;
      const slurm = f.launcher === 'slurm' ? slurmSettings(plan, f) : null;
      // under a supervisor: the link that tells it which run trains, and that this Slurm task requeues itself
      const link = childLink();
      const launch = slurm ? null : prepareLaunch(plan, f, () => (stop = true), () => link.requeueing());
      // checked for a submission and a --dry-run too: they say what the same command would run
      checkOutputDir(plan.dir, `--results ${f.results}`, f.results, { write: !f.dryRun });
      // a damaged baselines.json stops the sweep before any run trains, not at its end
      if (f.baselines !== false) {
        const { readBaselines } = await import('../runfolder/baselines.ts');
        readBaselines(plan.dir);
      }
      if (!launch) {
        await submitSlurm(arg, plan, f, slurm!);
        return;
      }
      if (f.dryRun) {
        printPlan(plan, f.json);
        return;
      }
      // the process a user started supervises the one that trains, restarting it after a crash (supervise.ts)
      if (shouldSupervise()) {
        process.exitCode = await superviseSweep(plan, f.json === true, f.quiet === true);
        return;
      }
      const { runSweep } = await import('../sweep/runner.ts');
      // a second Ctrl-C quits at once; TERM (scancel sends it to every process of a job) never skips the checkpoint
      let signalled = false;
      // while the sweep's baselines are computed (its runs done): a stop says so, no run being checkpointed
      let inBaselines = false;
      // said above the bars once they draw (written past them, the line was cut at the edge, then drawn over)
      let say = toStderr;
      // the run this process is training, if any
      let current: string | null = null;
      const onSig = (sig: NodeJS.Signals) => {
        if (signalled && sig === 'SIGINT') {
          // the run being trained says interrupted (not `running` at its last heartbeat), where it is still this process's
          const dir = plan.runs.find((x) => x.id === current)?.dir;
          if (dir) markInterrupted(dir);
          process.exit(130);
        }
        if (signalled) return;
        signalled = true;
        stop = true;
        say(
          inBaselines
            ? '\nmoco3: stopping the baselines (the seeds done are kept); `moco3 sweep` again computes the rest (Ctrl-C again quits at once)\n'
            : '\nmoco3: stopping: checkpointing the current run; `moco3 sweep` again continues (Ctrl-C again quits at once)\n',
        );
      };
      // HUP (a closed terminal) and, outside Slurm, USR1/USR2 (a scheduler's warning before its time limit)
      // stop as TERM does: the supervisor forwards them all, and unhandled they would kill the process
      // without a checkpoint (HUP, USR2) or open Node's inspector (USR1)
      const onUsr1 = launch.onUsr1 ?? onSig;
      const stopSignals = STOP_SIGNALS.filter((s) => s !== 'SIGUSR1');
      for (const sig of stopSignals) process.on(sig, onSig);
      process.on('SIGUSR1', onUsr1);
      // a warning that came while moco3 started (a Slurm task's first seconds) is acted on now
      for (const sig of takeEarlySignals()) (sig === 'SIGUSR1' ? onUsr1 : onSig)(sig);
      link.ready();
      // the output's reader gone (src/cli/main.ts): stop as for a signal, which a later Ctrl-C is still the first of
      const offClosed = onOutputClosed(() => {
        stop = true;
      });
      const display: Display = f.json ? jsonDisplay() : f.quiet ? { onEvent: () => {}, log: toStderr, stop: () => {} } : barsOn() ? barDisplay() : plainDisplay();
      say = (text) => display.log(text);
      // from the sweep's start: a child restarted after a crash counts the time before the crash too
      const t0 = sweepStartedMs();
      let baselinesStopped = false;
      try {
        // each failed run's own error: its status.json may not say it (a full disk)
        const errors = new Map<string, string>();
        const onEvent = (e: SweepEvent) => {
          // the run this process trains, named to the supervisor (for a crash in it) and kept for a second
          // Ctrl-C; none once it has ended, failed or been taken over by another process (a skip after its start)
          if (e.type === 'run_start') {
            link.note(e.run);
            current = e.run;
          }
          if ((e.type === 'run_end' || e.type === 'run_failed' || e.type === 'run_skip') && e.run === current) {
            link.note(null);
            current = null;
          }
          if (e.type === 'run_failed') errors.set(e.run, e.error);
          display.onEvent(e);
        };
        // one backend for the process: an agent's later passes use the one its first started
        let backend: BackendInfo | null = null;
        const r = await launch.run(async (extra) => {
          const pass = await runSweep({ plan, onEvent, shouldStop: () => stop, command: process.argv.slice(1), ...(backend ? { backend } : {}), ...extra });
          backend ??= pass.backend;
          return pass;
        });
        display.stop();
        say = toStderr;
        // a Slurm task (--run-index) or an agent that ends the sweep computes them; one whose sweep goes on does not
        // (a failed run counts as finished here: no task is left to end the sweep once the others are done)
        if (!r.interrupted && f.baselines !== false && ((f.runIndex === undefined && !f.agent) || r.states.every((x) => isDone(x.state) || x.state === 'failed'))) {
          // seeds added to a sweep get theirs; the seeds already there keep theirs
          const { missingBaselineSeeds } = await import('../sweep/baselines.ts');
          const { ProbeDiverged } = await import('../eval/linear.ts');
          // Slurm tasks and agents that end a sweep together: one computes them, under the sweep's baselines
          // lock, and the others leave them to it; read again under the lock (another may have written them)
          let stoppedIn = false;
          const held = missingBaselineSeeds(plan).length
            ? await withBaselinesLock(plan, async () => {
                const missing = missingBaselineSeeds(plan);
                inBaselines = missing.length > 0;
                try {
                  // a stop (Ctrl-C, TERM, a Slurm warning) keeps the seeds done: the next sweep or `moco3 baselines` computes the rest
                  if (missing.length) {
                    link.note(null, 'the baselines');
                    if (f.json) process.stdout.write(`${jsonLine({ type: 'baselines_start', sweep: plan.id, seeds: missing })}\n`);
                    await computeBaselinesOf(plan, {
                      json: f.json === true,
                      quiet: f.quiet === true,
                      missing,
                      check: () => {
                        if (stop) throw new BaselinesStopped();
                      },
                    });
                  }
                } catch (e) {
                  // the runs are done: a baseline probe that diverges (eval.linear.base_lr too large for it) leaves
                  // the sweep without baselines, said, not the sweep failed after its runs
                  if (e instanceof ProbeDiverged) {
                    if (f.json) process.stdout.write(`${jsonLine({ type: 'baselines_failed', sweep: plan.id, error: e.message })}\n`);
                    else {
                      process.stderr.write(
                        `sweep ${plan.id}: baselines not computed for the seeds left: ${e.message}; the report goes without them ` +
                          `(a smaller eval.linear.base_lr has them, the runs' probes too: \`moco3 eval linear <run-dir> --lr <smaller>\`)\n`,
                      );
                    }
                  } else if (!(e instanceof BaselinesStopped)) throw e;
                  else stoppedIn = true;
                } finally {
                  inBaselines = false;
                }
              })
            : null;
          if (stoppedIn) {
            r.interrupted = true;
            baselinesStopped = true;
            // said before a Slurm task requeues itself (Slurm then ends it)
            if (f.json) {
              const left = missingBaselineSeeds(plan);
              process.stdout.write(`${jsonLine({ type: 'baselines_stopped', sweep: plan.id, seeds_done: plan.seeds.filter((x) => !left.includes(x)), seeds_left: left })}\n`);
            }
            launch.afterStopped?.();
          }
          if (held) {
            const other = held.host !== hostname();
            const line =
              `the baselines are being computed by ${describeHolder(held, baselinesLockDir(plan))}; left to it` +
              (other ? ` (if that process is gone, its lock is stale ${staleAfterS(held)} s after its last heartbeat; \`moco3 baselines\` with this sweep's flags then computes them)` : '');
            if (f.json) process.stdout.write(`${jsonLine({ type: 'baselines_left', sweep: plan.id, holder: { pid: held.pid, host: held.host, since: held.since } })}\n`);
            else if (!f.quiet) process.stderr.write(`sweep ${plan.id}: ${line}\n`);
          }
        }
        if (!f.json) {
          process.stdout.write(formatPlan(plan, r.states));
          const wall = (Date.now() - t0) / 1000;
          // runs left to another process that has not finished them: this process is done, the sweep is not
          const ended = r.interrupted ? 'interrupted' : r.busy.length ? 'not finished' : 'done';
          const lines = [`sweep ${plan.id}: ${ended} in ${fmtDuration(wall)}; results in ${plan.dir}`];
          const stateOf = (id: string) => r.states[plan.runs.findIndex((x) => x.id === id)]!;
          for (const id of r.failed) {
            const s = stateOf(id);
            lines.push(`  ${id}: failed: ${errors.get(id) ?? s.error ?? describeState(s)}`);
          }
          if (r.busy.length) {
            const running = r.busy.filter((id) => stateOf(id).state === 'running').length;
            lines.push(
              running === r.busy.length
                ? `  ${running} run(s) are being trained by another process (another sweep, an agent, a Slurm task); nothing is left for this one: run this command again once they have ended, to finish what they leave`
                : `  ${r.busy.length} run(s) that another process was training are not finished (${running} still running): run this command again to finish them`,
            );
          }
          if (launch.requeued?.()) {
            lines.push('  requeued: Slurm starts this task again, and it goes on from where it stopped');
          } else if (baselinesStopped) {
            const { missingBaselineSeeds } = await import('../sweep/baselines.ts');
            const left = missingBaselineSeeds(plan).length;
            lines.push(
              left < plan.seeds.length
                ? `  the baselines were stopped; the seeds done are in ${plan.dir}/baselines.json: run the same command again for the rest`
                : '  the baselines were stopped before a seed was done: run the same command again to compute them',
            );
          } else if (r.interrupted && f.runIndex !== undefined) {
            // a Slurm task stopped (scancel; or a requeue by an administrator or a preemption, which ends it
            // with the same TERM): its command is the array job's, not the user's
            lines.push('  unless Slurm requeues this task (it then goes on by itself: `squeue -r` shows it), submit the sweep again (the same `moco3 sweep ... --launcher slurm`) to continue');
          } else if (r.interrupted) lines.push('  run the same command again to continue');
          // the tables and curves of what is done so far are one command away
          if (!r.interrupted) lines.push(`  report${r.busy.length ? ' (of what is finished so far)' : ''}: moco3 report ${shellQuote(plan.dir)}`);
          process.stderr.write(`${lines.join('\n')}\n`);
        }
        // a failed requeue has set 1 already: the task did not do what it said, which is no plain interruption
        if (r.interrupted) process.exitCode = process.exitCode === 1 ? 1 : 130;
        else if (r.failed.length) process.exitCode = 1;
      } finally {
        display.stop();
        for (const sig of stopSignals) process.off(sig, onSig);
        process.off('SIGUSR1', onUsr1);
        offClosed();
      }
    });
  return cmd;
}
