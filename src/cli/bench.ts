/** `moco3 bench`: steady-state speed of the training step on each backend. */
import { Command } from 'commander';
import { spawn, type ChildProcess } from 'node:child_process';
import type { BackendName } from '../engine/backend.ts';
import type { BenchResult } from '../train/bench.ts';
import { addRunOptions, configFromFlags, refuseFlagAndSet, type RunFlags } from './common.ts';
import { intFlag } from './numbers.ts';
import { onStopSignals } from './supervise.ts';
import { configToYaml } from '../config/load.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { jsonLine } from '../runfolder/metrics.ts';

interface BenchFlags extends RunFlags {
  batch?: string;
  steps: string;
  warmup: string;
  json?: boolean;
  profile?: boolean;
}

function printResult(r: BenchResult, json: boolean): void {
  if (json) {
    process.stdout.write(`${jsonLine(r)}\n`);
    return;
  }
  process.stdout.write(
    `${r.backend.padEnd(10)} batch ${r.batch}: ${r.ms_per_step} ms/step (process CPU ${r.cpu_ms_per_step} ms), ${r.images_per_s} img/s, ${r.gflops} GFLOP/s, ` +
      `augmentation ${r.augment_ms} ms (${(100 * r.augment_share).toFixed(1)}% of the step, ${r.augment_engine}), peak RSS ${r.peak_rss_mb} MB, loss at step 1 ${r.loss_step1}, ${r.gpu_peak_mb !== null ? `peak GPU ${r.gpu_peak_mb} MB, ` : ''}${r.webgpu_packed !== null ? `optimizer ${r.webgpu_packed ? 'packed per group' : 'per parameter'}, ` : ''}` +
      `tensors ${r.num_tensors_start}->${r.num_tensors_end}  [${r.data}; ${r.device}; ${r.cpu}, ${r.threads} cores; medians of ${r.steps} steps after ${r.warmup} untimed]\n`,
  );
  if (r.profile) {
    process.stdout.write(`profile of one step (${r.profile_timer}), kernel time by kernel:\n`);
    for (const k of r.profile.slice(0, 15)) {
      process.stdout.write(`  ${k.kernel.padEnd(28)} ${String(k.calls).padStart(5)} calls ${k.ms.toFixed(1).padStart(10)} ms ${(100 * k.share).toFixed(1).padStart(5)}%\n`);
    }
  }
}

/** What a bench times, said before it starts: without --preset, the official recipe (ViT-B/16, 224 px, batch 4096) unless flags change it. */
export function benchLine(c: ResolvedRunConfig, f: Pick<BenchFlags, 'preset' | 'config' | 'set' | 'batch'>, steps: number, warmup: number): string {
  const changed = f.config !== undefined || f.set.length > 0 || f.batch !== undefined;
  const what = f.preset
    ? ` (preset ${f.preset})`
    : changed
      ? ' (no --preset: the official recipe as -c, --set and --batch change it)'
      : ' (the official recipe: no --preset; `--preset cpu` times a step sized for a CPU)';
  return `moco3: bench: ${c.model.arch} at ${c.data.image_size} px, batch ${c.optim.batch_size}, ${steps} timed step${steps === 1 ? '' : 's'} after ${warmup} untimed${what}`;
}

export function benchCommand(): Command {
  const cmd = new Command('bench').description('steady-state ms/step, images/s and GFLOP/s of the training step');
  addRunOptions(cmd, { results: false })
    .option('-b, --batch <n>', "batch size (default: the preset's; not with --set optim.batch_size)")
    .option('--steps <n>', 'timed steps', '5')
    .option('--warmup <n>', 'untimed steps first', '2')
    .option('--json', 'one JSON object per backend on stdout')
    .option('--profile', 'one more step with kernel times summed by kernel (webgpu: GPU timestamps, where the adapter has timestamp-query)')
    .action(async (f: BenchFlags & { backend?: string }) => {
      const backendFlag = f.backend;
      // the heads' BatchNorm needs two images
      const extra = f.batch !== undefined ? [{ label: `--batch ${f.batch}`, value: { optim: { batch_size: intFlag('--batch', f.batch, 2) } } }] : [];
      // (a --set of the batch too is refused by configFromFlags: one or the other)
      // `--backend all` gives each backend in turn: a --set of it too is refused here, not by each child
      if (backendFlag === 'all') refuseFlagAndSet([{ label: '--backend all', keys: ['train.backend'] }], f.set);
      const c = configFromFlags({ ...f, backend: backendFlag === 'all' ? undefined : backendFlag }, extra);
      const steps = intFlag('--steps', f.steps, 1);
      const warmup = intFlag('--warmup', f.warmup, 0);
      if (f.dryRun) {
        // as train --dry-run: the resolved config as YAML, or one JSON object with --json
        // --backend all: each backend in turn, whatever train.backend the config holds
        const all = backendFlag === 'all';
        process.stdout.write(
          f.json
            ? `${jsonLine({ config: c, steps, warmup, ...(all ? { backends: 'all' } : {}) })}\n`
            : `# bench: ${steps} timed steps after ${warmup} untimed${all ? ', on every backend in turn (--backend all; train.backend below is not used)' : ''}\n${configToYaml(c)}`,
        );
        return;
      }
      // what is timed, once the data checked out, before minutes of it: without --preset, the official recipe
      // (ViT-B/16, 224 px, batch 4096)
      const announce = () => process.stderr.write(`${benchLine(c, f, steps, warmup)}\n`);
      if (backendFlag === 'all') {
        // what every backend would refuse (data named but missing, a batch larger than the data) is bad input,
        // said once, before any backend starts: a child's refusal below means its backend is not available
        const { benchDataset } = await import('../train/bench.ts');
        await benchDataset(c, f.data !== undefined);
        announce();
        // one process per backend: peak memory and thread pools stay separate. A stop signal this process
        // gets is passed on to the one running (a `kill` of this process alone left it running, with nobody
        // waiting for it), and no other starts; the handlers stay for the whole loop, between two children too
        const stop: { by: NodeJS.Signals | null; child: ChildProcess | null } = { by: null, child: null };
        const forward = (sig: NodeJS.Signals) => {
          stop.by ??= sig;
          stop.child?.kill(sig);
        };
        const offSignals = onStopSignals(forward);
        try {
          for (const b of ['tensorflow', 'webgpu', 'native', 'wasm', 'cpu']) {
            const args = [process.argv[1]!, 'bench', ...process.argv.slice(3).filter((a, i, arr) => a !== '--backend' && arr[i - 1] !== '--backend' && a !== '--backend=all'), '--backend', b];
            const r = stop.by ? null : await benchChild([...process.execArgv, ...args], stop);
            if (stop.by || r === null) {
              process.stderr.write(`moco3: bench: ${stop.by}: stopped at the ${b} backend\n`);
              process.exitCode = 130;
              return;
            }
            if (r.status === 0) continue;
            const why = (r.stderr.trim().split('\n').filter((l) => l && !l.startsWith('(MOCO3_DEBUG')).pop() ?? '').replace(/^moco3: (error: )?/, '') || 'no message';
            if (r.status === 2) {
              process.stderr.write(`moco3: bench ${b}: not available (${why})\n`);
            } else {
              // a crash or a failed step is no missing backend: the command fails, and says which
              process.stderr.write(`moco3: bench ${b}: failed (${r.signal ?? `exit ${r.status}`}): ${why}\n`);
              process.exitCode = 1;
            }
          }
        } finally {
          offSignals();
        }
        return;
      }
      const { benchOne } = await import('../train/bench.ts');
      // data named with --data must load; the preset's own may be absent (random pixels then, said on stderr)
      const r = await benchOne(c, c.train.backend as BackendName, steps, warmup, Boolean(f.profile), f.data !== undefined, announce);
      printResult(r, Boolean(f.json));
    });
  // --backend all is allowed here only
  const opt = cmd.options.find((o) => o.long === '--backend');
  if (opt) opt.choices([...(opt.argChoices ?? []), 'all']);
  return cmd;
}

/** One backend's bench in a process of its own, set as `stop.child` while it runs (a stop signal is passed on to it). */
function benchChild(args: string[], stop: { child: ChildProcess | null }): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    stop.child = child;
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += String(d)));
    child.on('error', (e) => {
      stop.child = null;
      reject(e);
    });
    child.on('close', (status, signal) => {
      stop.child = null;
      resolve({ status, signal, stderr });
    });
  });
}
