/** Progress: a bar on a terminal, plain lines otherwise (CI, redirected logs). */
import cliProgress from 'cli-progress';
import type { TrainEvent } from '../train/loop.ts';

const fmt = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));

export interface ProgressSink {
  onEvent(e: TrainEvent): void;
  stop(): void;
}

export function makeProgress(label: string, opts: { json?: boolean; quiet?: boolean } = {}): ProgressSink {
  const out = process.stderr;
  if (opts.json) {
    return { onEvent: (e) => process.stdout.write(`${JSON.stringify({ run: label, ...e })}\n`), stop: () => {} };
  }
  if (opts.quiet) return { onEvent: () => {}, stop: () => {} };
  let knn: number | null = null;
  let ips: number | null = null;
  if (out.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: out,
        format: `${label} |{bar}| {value}/{total} | loss {loss} | kNN {knn} | {ips} img/s | ETA {eta_formatted}`,
        barsize: 24,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      onEvent(e) {
        if (e.type === 'start') {
          bar.start(e.totalSteps, e.startStep, { loss: '-', knn: '-', ips: '-' });
          started = true;
        } else if (e.type === 'step') {
          ips = ips === null ? (e.row.images_per_s ?? null) : 0.9 * ips + 0.1 * (e.row.images_per_s ?? 0);
          bar.update(e.step, { loss: fmt(e.row.loss), knn: knn === null ? '-' : `${knn.toFixed(1)}%`, ips: fmt(ips, 1) });
        } else if (e.type === 'knn') {
          knn = e.top1;
          if (started) bar.update({ knn: `${knn.toFixed(1)}%` });
        } else if (e.type === 'phase') {
          if (started) bar.stop();
          started = false;
          out.write(`${label}: ${e.text}\n`);
        } else if (e.type === 'end') {
          if (started) bar.stop();
          started = false;
        }
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
  return {
    onEvent(e) {
      if (e.type === 'start') {
        total = e.totalSteps;
        first = e.startStep;
        every = Math.max(1, Math.round(total / 20));
        t0 = performance.now();
        out.write(`${label}: ${e.resumed ? `resuming at step ${e.startStep}` : 'starting'}, ${total} steps, ${e.params} trainable parameters -> ${e.runDir}\n`);
      } else if (e.type === 'step') {
        ips = e.row.images_per_s ?? null;
        if (e.step % every === 0 || e.step === total) {
          const el = (performance.now() - t0) / 1000;
          const eta = e.step > first ? (el / (e.step - first)) * (total - e.step) : NaN;
          out.write(
            `${label}: step ${e.step}/${total} epoch ${fmt(e.row.epoch, 2)} loss ${fmt(e.row.loss, 4)} lr ${e.row.lr?.toExponential(2) ?? '-'} ` +
              `kNN ${knn === null ? '-' : knn.toFixed(1) + '%'} ${fmt(ips, 1)} img/s ETA ${Number.isFinite(eta) ? Math.round(eta) + 's' : '-'}\n`,
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
    stop() {},
  };
}
