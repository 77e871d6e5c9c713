/**
 * `moco3 sweep` under a supervisor. A sweep runs for hours unattended, and a crash of native code (a
 * segmentation fault in a kernel or in BLAS) kills the process at once, with no chance to checkpoint. So
 * the `moco3 sweep` that a user starts trains nothing itself: it runs the sweep in a child process and,
 * when that child dies of a crash signal, starts it again. The new child skips the completed runs and
 * resumes the interrupted one from its newest checkpoint, as `moco3 sweep` run again by hand would; the
 * crash costs the steps since that checkpoint. A run that crashes MAX_CRASHES times is not tried again
 * (a crash that repeats is a bug to report, not noise to retry).
 *
 * The child runs in its own process group and the supervisor passes it every signal a user or a scheduler
 * sends (INT, TERM, HUP, USR1, USR2) once, so Ctrl-C, `kill` and Slurm's USR1 mean what they mean without a
 * supervisor. If the supervisor itself is killed (SIGKILL), the child sees its IPC channel close and kills
 * itself too: nothing trains on unseen. MOCO3_SUPERVISE=0 runs the sweep in the one process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { SweepPlan } from '../sweep/plan.ts';
import { reachedState } from '../runfolder/state.ts';
import { describeState } from '../sweep/table.ts';
import { jsonLine } from '../runfolder/metrics.ts';
import { barsOn, TERMINAL_RESTORE } from './progress.ts';

/** Signals of a crash (the process did something it cannot survive), not of a request to stop. */
export const CRASH_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGSEGV', 'SIGBUS', 'SIGILL', 'SIGFPE', 'SIGABRT']);
/** Crashes of one run after which the supervisor gives up on the sweep. */
export const MAX_CRASHES = 3;
/**
 * The signals that stop a run with a checkpoint: Ctrl-C, `kill`, a closed terminal, and USR1/USR2 (a
 * scheduler's warning before its time limit; unhandled, USR1 would open Node's inspector and USR2 kill the
 * process without a checkpoint). The supervisor forwards them to the process that trains.
 */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];

/** Ctrl-C, `kill` and a closed terminal to `handler` (bench, baselines: no scheduler warnings); returns the undo. */
export function onStopSignals(handler: (sig: NodeJS.Signals) => void): () => void {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const sig of signals) process.on(sig, handler);
  return () => {
    for (const sig of signals) process.off(sig, handler);
  };
}

/**
 * stdout or stderr has lost its reader (src/cli/main.ts): `train` and `sweep` stop on it as on a signal, but
 * it is no signal of the user's (a Ctrl-C after it is still the first). A listener is called once, when it
 * happens or, added after it happened (train's, once its data is loaded), at once.
 */
let outputClosed = false;
const closedListeners = new Set<() => void>();
export function markOutputClosed(): void {
  if (outputClosed) return;
  outputClosed = true;
  for (const f of [...closedListeners]) f();
}
/** Calls `f` when the output closes (now, if it has); returns the call that removes it. */
export function onOutputClosed(f: () => void): () => void {
  closedListeners.add(f);
  if (outputClosed) f();
  return () => closedListeners.delete(f);
}
const CHILD_ENV = 'MOCO3_SWEEP_CHILD';

let processEntry = false;
let takeEarly: (() => NodeJS.Signals[]) | null = null;

/**
 * Set by bin/moco3.js only: moco3 owns this process (a call of main() inside another program does not).
 * `early`: the USR1 and USR2 that bin/moco3.js kept while moco3 started (see takeEarlySignals).
 */
export function setProcessEntry(on: boolean, early?: () => NodeJS.Signals[]): void {
  processEntry = on;
  takeEarly = early ?? null;
}

/**
 * The scheduler's warnings (USR1, USR2) that came before the command installed its own handlers (a Slurm
 * task warned in its first seconds), in order; from this call on, those handlers get them. train and sweep
 * ask once their handlers are in place; every other command at once (src/cli/main.ts), which gets them as
 * Node would have: USR2 ends it.
 */
export function takeEarlySignals(): NodeJS.Signals[] {
  const take = takeEarly;
  takeEarly = null;
  return take ? take() : [];
}

/** Whether this `moco3 sweep` supervises a child instead of training. */
export function shouldSupervise(): boolean {
  return processEntry && process.env[CHILD_ENV] !== '1' && process.env.MOCO3_SUPERVISE !== '0';
}

/**
 * In the child: tell the supervisor which run is training (`note(run)` at each run's start), and die with
 * the supervisor. A no-op in a process that is no supervised child.
 */
export function childLink(): { note(run: string | null, where?: string): void; ready(): void; requeueing(): void } {
  if (process.env[CHILD_ENV] !== '1' || typeof process.send !== 'function') return { note() {}, ready() {}, requeueing() {} };
  process.channel?.unref();
  process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
  // and when stopped with it (Ctrl-Z) and it is then killed outright, which no handler here could see: asked of
  // the system (the native addon, where built; TensorFlow.js is loaded by the training anyway)
  void import('../engine/native.ts').then((m) => m.dieWithParent()).catch(() => {});
  return {
    /** the run training now, or none (`where`: what the process does instead, e.g. the baselines) */
    note(run, where) {
      process.send?.({ run, where: where ?? null });
    },
    /** its stop handlers are in place: the supervisor passes on the signals it kept until now */
    ready() {
      process.send?.({ ready: true });
    },
    /** this Slurm task requeues itself: Slurm ends this start of it (TERM), which is no stop of the user's */
    requeueing() {
      process.send?.({ requeueing: true });
    },
  };
}

interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  run: string | null;
  /** what the child did outside a run when it ended (the baselines), or null */
  where: string | null;
  /** the child was requeueing its Slurm task */
  requeueing: boolean;
  /** the first stop signal this process passed on (or held) during the child's life: a crash after it is not restarted */
  stopAsked: NodeJS.Signals | null;
}

/** The environment variable that gives a supervised child the time its sweep started (ms since the epoch). */
const STARTED_ENV = 'MOCO3_SWEEP_STARTED';

/** When this sweep started: the supervisor's start for its child (restarted after a crash, it goes on counting), else now. */
export function sweepStartedMs(): number {
  const t = Number(process.env[CHILD_ENV] === '1' ? process.env[STARTED_ENV] : NaN);
  return Number.isFinite(t) && t > 0 ? t : Date.now();
}

function runChild(startedMs: number): Promise<ChildEnd> {
  const args = [...process.execArgv, process.argv[1]!, ...process.argv.slice(2)];
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    detached: true,
    env: { ...process.env, [CHILD_ENV]: '1', [STARTED_ENV]: String(startedMs) },
  });
  let run: string | null = null;
  let where: string | null = null;
  let requeueing = false;
  let stopAsked: NodeJS.Signals | null = null;
  // signals are kept until the child says its handlers are in place: sent while it starts, INT or TERM would
  // end it without a word and USR1 open its inspector (and a warning of the scheduler would be lost)
  let held: NodeJS.Signals[] | null = [];
  const pass = (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  };
  child.on('message', (m: unknown) => {
    if (m && typeof m === 'object' && 'run' in m) {
      const { run: r, where: w } = m as { run?: unknown; where?: unknown };
      run = typeof r === 'string' ? r : null;
      where = typeof w === 'string' ? w : null;
    }
    if (m && typeof m === 'object' && (m as { requeueing?: unknown }).requeueing === true) requeueing = true;
    if (m && typeof m === 'object' && (m as { ready?: unknown }).ready === true && held) {
      const now = held;
      held = null;
      // one at a time: two pending signals of a kind are one to the kernel (a second Ctrl-C quits at once)
      now.forEach((sig, i) => setTimeout(() => pass(sig), 100 * i));
    }
  });
  const forward = (sig: NodeJS.Signals) => {
    stopAsked ??= sig;
    if (held) held.push(sig);
    else pass(sig);
  };
  for (const s of STOP_SIGNALS) process.on(s, forward);
  // a warning that came while this process started is the child's to act on
  for (const s of takeEarlySignals()) forward(s);
  // Ctrl-Z stops the terminal's foreground process group, which the child (in a session of its own) is not
  // in: the child is stopped with this process, and continued with it (`fg`, `bg`)
  const onTstp = () => {
    pass('SIGSTOP');
    process.kill(process.pid, 'SIGSTOP');
  };
  const onCont = () => pass('SIGCONT');
  // a terminal's resize goes to its foreground process group too: the child's bars are drawn to the new width
  const onWinch = () => pass('SIGWINCH');
  process.on('SIGTSTP', onTstp);
  process.on('SIGCONT', onCont);
  process.on('SIGWINCH', onWinch);
  const ended = new Promise<ChildEnd>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, run, where, requeueing, stopAsked }));
  });
  return ended.finally(() => {
    for (const s of STOP_SIGNALS) process.off(s, forward);
    process.off('SIGTSTP', onTstp);
    process.off('SIGCONT', onCont);
    process.off('SIGWINCH', onWinch);
  });
}

/** Runs the sweep in a child until it ends other than by a crash; returns the exit code for moco3. */
export async function superviseSweep(plan: SweepPlan, json: boolean, quiet = false): Promise<number> {
  // the child draws bars on this terminal (sweep.ts chooses its display so)
  const bars = !json && !quiet && barsOn(process.stderr);
  const crashes = new Map<string, number>();
  const startedMs = Date.now();
  for (;;) {
    const end = await runChild(startedMs);
    if (end.signal === null) return end.code ?? 1;
    // a child killed while its bars hid the cursor and turned line wrapping off (its exit hook never ran): both back
    // on, and the line after its last bar's
    if (bars) process.stderr.write(`${TERMINAL_RESTORE}\n`);
    const signo = constants.signals[end.signal] ?? 0;
    if (!CRASH_SIGNALS.has(end.signal)) {
      process.stderr.write(
        end.requeueing
          ? `moco3: Slurm ended this start of the task (${end.signal}) to requeue it; it starts again and goes on from its checkpoint\n`
          : `moco3: the sweep process was killed by ${end.signal}; \`moco3 sweep\` again continues from the last checkpoint\n`,
      );
      return 128 + signo;
    }
    // asked to stop (Ctrl-C, TERM, a scheduler's warning) before it crashed: stopped, not restarted
    if (end.stopAsked) {
      process.stderr.write(`moco3: the sweep process crashed (${end.signal}) while stopping on ${end.stopAsked}; not restarting it: \`moco3 sweep\` again continues from the last checkpoint\n`);
      return 128 + (constants.signals[end.stopAsked] ?? 0);
    }
    const run = plan.runs.find((r) => r.id === end.run) ?? null;
    const state = run ? reachedState(run.dir) : null;
    const key = run?.id ?? end.where ?? '';
    const n = (crashes.get(key) ?? 0) + 1;
    crashes.set(key, n);
    const where = run && state ? `in run ${run.id} (${describeState(state)})` : end.where ? `in ${end.where}` : 'outside a run';
    const give = n >= MAX_CRASHES;
    if (json) {
      process.stdout.write(
        `${jsonLine({ type: 'sweep_crash', signal: end.signal, run: run?.id ?? null, ...(run ? {} : { where: end.where }), step: state?.step ?? null, resume_step: state?.checkpoint_step ?? null, crashes: n, restart: !give })}\n`,
      );
    }
    if (give) {
      process.stderr.write(
        `moco3: the sweep process crashed (${end.signal}) ${where}, crash ${n} of ${MAX_CRASHES} there; not restarting it. ` +
          'A crash that repeats is a bug: please report it with `moco3 doctor` and this run\'s config.yaml (MOCO3_NATIVE=0 avoids the native kernels)\n',
      );
      return 128 + signo;
    }
    process.stderr.write(`moco3: the sweep process crashed (${end.signal}) ${where}; restarting it (${n} of ${MAX_CRASHES - 1} restarts ${run ? 'for this run' : end.where ? `for ${end.where}` : 'outside a run'})\n`);
  }
}
