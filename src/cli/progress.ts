/** Progress: a bar on a terminal, plain lines otherwise (CI, redirected logs). */
import cliProgress from 'cli-progress';
import { jsonLine } from '../runfolder/metrics.ts';
import type { TrainEvent } from '../train/loop.ts';

/**
 * Bars only on a terminal that draws them: a dumb one (an editor's shell buffer, TERM=dumb) gets the plain lines,
 * as a file does.
 */
export function barsOn(stream: NodeJS.WriteStream = process.stderr): boolean {
  return stream.isTTY === true && process.env.TERM !== 'dumb';
}

/** Shows the cursor and turns line wrapping back on: what a bar turned off while it drew. */
export const TERMINAL_RESTORE = '\u001b[?25h\u001b[?7h';

let restoreHooked = false;

/**
 * Options every bar shares. A bar hides the cursor and turns line wrapping off until it stops; a process that
 * exits meanwhile (a second Ctrl-C) would leave the terminal so: both are turned back on at exit.
 */
export function barOptions(stream: NodeJS.WriteStream = process.stderr): { stream: NodeJS.WriteStream; hideCursor: boolean; fps: number } {
  if (!restoreHooked) {
    restoreHooked = true;
    process.on('exit', () => {
      try {
        stream.write(TERMINAL_RESTORE);
      } catch {
        /* a terminal gone: nothing to restore */
      }
    });
  }
  return { stream, hideCursor: true, fps: 5 };
}

/** The bar's width: narrower on a narrow terminal, so that the numbers beside it stay on the line. */
export const barSize = (stream: NodeJS.WriteStream = process.stderr): number => ((stream.columns ?? 120) < 110 ? 8 : 24);

export const fmt = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));

/** A duration as the progress lines write it: `42s`, `12m`, `1.5h`; `-` when unknown. */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '-';
  if (s < 90) return `${Math.round(s)}s`;
  if (s < 5400) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

/**
 * A bar's line, fitted to the terminal: while a bar draws, line wrapping is off, and a longer line would lose its
 * end at the edge (the ETA, a sweep's run id) with its last cell overwritten. The parts after the first are
 * dropped from the end until the line fits; the first part dropped, if a name (20 characters or more, as a
 * run's id: a figure cut would read as another), is shown cut (ending in `…`) where at least 8 of its
 * characters fit; the first part is cut if it alone does not fit.
 */
export function fitLine(parts: string[], width: number): string {
  const w = Math.max(1, width - 1);
  for (let n = parts.length; n >= 1; n--) {
    const line = parts.slice(0, n).join(' | ');
    if (line.length > w) continue;
    const next = parts[n];
    const room = w - line.length - 3;
    return next !== undefined && next.length >= 20 && room >= 8 ? `${line} | ${next.slice(0, room - 1)}…` : line;
  }
  return parts[0]!.slice(0, w);
}

/**
 * The format of moco3's bars: `{label} |{bar}| part | part...`, fitted to the terminal's width (fitLine); the
 * payload gives `label` and `parts`, most telling first.
 */
export const barLine: cliProgress.GenericFormatter = (options, params, payload: { label?: string; parts?: string[] }) => {
  const [head = '', ...rest] = payload.parts ?? [];
  return fitLine([`${payload.label ?? ''} |${cliProgress.Format.BarFormat(params.progress, options)}| ${head}`, ...rest], params.maxWidth);
};

/**
 * A message written while a bar draws, on a line of its own above it, whole (wrapped): the sweep's bars and
 * this one hand it to this. Written to the terminal directly, it would be cut at the edge and then drawn over.
 */
export const wrappedLog = (text: string): string => `\u001b[?7h${text.replace(/\n/g, '\u001b[K\n')}\u001b[?7l`;

/** Seconds left at `step` of `total`, from the pace since `t0` (ms) at step `first`; NaN (`-`) before a step is timed. */
export const etaSeconds = (t0: number, first: number, step: number, total: number): number =>
  step > first ? ((performance.now() - t0) / 1000 / (step - first)) * (total - step) : NaN;

/**
 * The line a run starts with: where it goes, and whether it resumed (on a terminal too, above its bar). A run
 * resumed at its last step (stopped in its final evaluation) says its training is done.
 */
const startLine = (label: string, e: Extract<TrainEvent, { type: 'start' }>): string => {
  const at = !e.resumed
    ? `starting, ${e.totalSteps} steps`
    : `resuming at step ${e.startStep} of ${e.totalSteps}${e.startStep >= e.totalSteps ? ' (training done)' : ''}`;
  return `${label}: ${at}, ${e.params} trainable parameters -> ${e.runDir}\n`;
};

/** A step's seconds per image, from its row's images per second (null for a row without one). */
const secondsPerImage = (row: { images_per_s?: number | null }): number | null => (row.images_per_s ? 1 / row.images_per_s : null);

/**
 * A bar's images per second over the recent steps: 1 / a moving average of their seconds per image (images
 * over time; a moving average of the rates overstates it when steps vary). Null before a step is timed.
 */
export function recentRate(): { add(row: { images_per_s?: number | null }): void; value(): number | null } {
  let spi: number | null = null;
  return {
    add(row) {
      const x = secondsPerImage(row);
      if (x !== null) spi = spi === null ? x : 0.9 * spi + 0.1 * x;
    },
    value: () => (spi === null ? null : 1 / spi),
  };
}

/** A message to the user, on stderr. */
export const toStderr = (text: string): void => void process.stderr.write(text);

export interface ProgressSink {
  onEvent(e: TrainEvent): void;
  /** a message (ending in a line break) for the user, on a line of its own above a bar that draws */
  log(text: string): void;
  stop(): void;
}

/** Plain lines: one every 20th of the run, and one at least every this many seconds (a long run's first twentieth is hours). */
export const PLAIN_LINE_SECONDS = 60;

export function makeProgress(label: string, opts: { json?: boolean; quiet?: boolean; lineSeconds?: number } = {}): ProgressSink {
  const out = process.stderr;
  if (opts.json) {
    return { onEvent: (e) => process.stdout.write(`${jsonLine({ run: label, ...e })}\n`), log: toStderr, stop: () => {} };
  }
  if (opts.quiet) return { onEvent: () => {}, log: toStderr, stop: () => {} };
  let knn: number | null = null;
  // images per second as images over time (a mean of the steps' rates overstates it when steps vary): the
  // bar's over the recent steps (a moving average of the seconds per image), a plain line's over the steps since
  // the last line
  if (barsOn(out)) {
    const bar = new cliProgress.SingleBar({ ...barOptions(out), format: barLine, barsize: barSize(out) }, cliProgress.Presets.shades_classic);
    let started = false;
    let total = 0;
    let value = 0;
    let loss = '-';
    // the pace as the plain lines take it (since the start, from the first step on): no ETA before a step is timed
    let t0 = performance.now();
    let first = 0;
    const rate = recentRate();
    const parts = () => [
      `${value}/${total}`,
      `loss ${loss}`,
      `kNN ${knn === null ? '-' : `${knn.toFixed(1)}%`}`,
      `ETA ${fmtDuration(etaSeconds(t0, first, value, total))}`,
      `${fmt(rate.value(), 1)} img/s`,
    ];
    return {
      onEvent(e) {
        if (e.type === 'start') {
          knn = e.knnTop1;
          total = e.totalSteps;
          value = first = e.startStep;
          t0 = performance.now();
          out.write(startLine(label, e));
          bar.start(total, value, { label, parts: parts() });
          started = true;
        } else if (e.type === 'step') {
          rate.add(e.row);
          value = e.step;
          loss = fmt(e.row.loss);
          bar.update(e.step, { label, parts: parts() });
        } else if (e.type === 'knn') {
          knn = e.top1;
          if (started) bar.update({ label, parts: parts() });
        } else if (e.type === 'phase') {
          if (started) bar.stop();
          started = false;
          out.write(`${label}: ${e.text}\n`);
        } else if (e.type === 'end') {
          if (started) bar.stop();
          started = false;
        }
      },
      log(text) {
        if (!started) return toStderr(text);
        // the bar stopped (its line kept, the cursor below it), taken back up and cleared, the message, the bar again below
        bar.stop();
        out.write(`\u001b[1A\r\u001b[2K${text.replace(/^\n/, '')}`);
        bar.start(total, value, { label, parts: parts() });
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let total = 0;
  let every = 1;
  let t0 = performance.now();
  let first = 0;
  let lastLine = performance.now();
  // the seconds per image of the steps since the last line, summed, and their count
  let spiSum = 0;
  let spiCount = 0;
  const floorMs = (opts.lineSeconds ?? PLAIN_LINE_SECONDS) * 1000;
  return {
    onEvent(e) {
      if (e.type === 'start') {
        knn = e.knnTop1;
        total = e.totalSteps;
        first = e.startStep;
        every = Math.max(1, Math.round(total / 20));
        t0 = performance.now();
        out.write(startLine(label, e));
      } else if (e.type === 'step') {
        const x = secondsPerImage(e.row);
        if (x !== null) {
          spiSum += x;
          spiCount++;
        }
        if (e.step % every === 0 || e.step === total || performance.now() - lastLine >= floorMs) {
          lastLine = performance.now();
          const ips = spiCount ? spiCount / spiSum : null;
          spiSum = spiCount = 0;
          const eta = etaSeconds(t0, first, e.step, total);
          out.write(
            `${label}: step ${e.step}/${total} epoch ${fmt(e.row.epoch, 2)} loss ${fmt(e.row.loss, 4)} lr ${e.row.lr?.toExponential(2) ?? '-'} ` +
              `kNN ${knn === null ? '-' : knn.toFixed(1) + '%'} ${fmt(ips, 1)} img/s ETA ${fmtDuration(eta)}\n`,
          );
        }
      } else if (e.type === 'knn') {
        knn = e.top1;
        out.write(`${label}: kNN at step ${e.step}: top-1 ${e.top1.toFixed(2)}% (${e.seconds.toFixed(1)} s)\n`);
      } else if (e.type === 'phase') {
        out.write(`${label}: ${e.text}\n`);
      } else if (e.type === 'end') {
        out.write(`${label}: ${e.status} at step ${e.step}\n`);
      }
    },
    log: toStderr,
    stop() {},
  };
}
