/** Result folders written by the tests: runs with known kNN dips, gradient spikes and lags. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { tempDir } from '../helpers/tmp.ts';

export const tmp = (prefix = 'moco3-report-') => tempDir(prefix);

/** Deterministic noise in [-1, 1). */
export function noise(i: number, salt = 0): number {
  let h = (i * 2654435761 + salt * 40503 + 12345) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  h ^= h >>> 12;
  return ((h >>> 0) / 4294967296) * 2 - 1;
}

export interface FakeRunSpec {
  id: string;
  config?: Record<string, unknown>;
  steps?: number;
  logEvery?: number;
  knnEvery?: number;
  stepsPerEpoch?: number;
  depth?: number;
  /** kNN curve without dips: value at a fraction of training */
  knnCurve?: (frac: number) => number;
  /** step -> points subtracted from the kNN value at that step */
  knnDrops?: Record<number, number>;
  /** group -> steps at which its gradient norm is multiplied by spikeSize */
  spikes?: Record<string, number[]>;
  spikeSize?: number;
  divergedAt?: number | null;
  status?: string;
  summary?: Record<string, unknown>;
  wallS?: number;
}

const GROUPS = (depth: number) => ['patch_proj', 'cls_token', ...Array.from({ length: depth }, (_, i) => `block${i}`), 'norm', 'projector', 'predictor'];

function nested(flat: Record<string, unknown>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flat)) {
    const parts = k.split('.');
    let cur = root;
    parts.forEach((p, i) => {
      if (i === parts.length - 1) cur[p] = v;
      else cur = (cur[p] ??= {}) as Record<string, unknown>;
    });
  }
  return root;
}

export const BASE_CONFIG: Record<string, unknown> = {
  seed: 0,
  'data.name': 'synthetic',
  'data.image_size': 16,
  'model.arch': 'vit-smoke',
  'model.depth': 2,
  'model.patch_proj': 'learned',
  'moco.temperature': 0.2,
  'optim.name': 'adamw',
  'optim.base_lr': 1.5e-3,
  'optim.batch_size': 128,
  'optim.weight_decay': 0.1,
  'optim.epochs': 8,
  'train.log_every': 5,
  'train.knn_every': 20,
  'eval.knn.k': 200,
  'eval.knn.t': 0.1,
};

/** Writes one run folder the way src/train/loop.ts does (config.yaml, status.json, metrics.jsonl, summary.json). */
export function writeFakeRun(sweepDir: string, spec: FakeRunSpec): string {
  const dir = join(sweepDir, spec.id);
  mkdirSync(dir, { recursive: true });
  const steps = spec.steps ?? 200;
  const logEvery = spec.logEvery ?? 5;
  const knnEvery = spec.knnEvery ?? 20;
  const spe = spec.stepsPerEpoch ?? 25;
  const depth = spec.depth ?? 2;
  const groups = GROUPS(depth);
  const curve = spec.knnCurve ?? ((f: number) => 20 + 40 * f);
  const spikeSize = spec.spikeSize ?? 10;
  const diverged = spec.divergedAt ?? null;
  const cfg = { ...BASE_CONFIG, 'model.depth': depth, 'train.log_every': logEvery, 'train.knn_every': knnEvery, ...spec.config };
  writeFileSync(join(dir, 'config.yaml'), YAML.stringify(nested(cfg)));
  const lines: string[] = [];
  const enc = (row: Record<string, unknown>) => JSON.stringify(row, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
  let lastKnn: number | null = null;
  let best: number | null = null;
  const knnAt = (s: number) => Math.round((curve(s / steps) - (spec.knnDrops?.[s] ?? 0)) * 100) / 100;
  lines.push(enc({ step: 0, epoch: 0, knn_top1: knnAt(0), knn_top5: 50 }));
  const end = diverged ?? steps;
  for (let s = 1; s <= end; s++) {
    const isKnn = s % knnEvery === 0 || s === steps;
    if (s % logEvery !== 0 && !isKnn && s !== end) continue;
    const row: Record<string, unknown> = { step: s, epoch: s / spe, lr: 1e-3, momentum: 0.99, loss: 3 - s / steps };
    groups.forEach((g, gi) => {
      let v = (1 + 0.2 * noise(s, gi)) * (gi + 1) * 0.01;
      if (spec.spikes?.[g]?.includes(s)) v *= spikeSize;
      if (s === diverged) v = Infinity;
      row[`grad_inf/${g}`] = v;
      row[`grad_l2/${g}`] = v * 10;
    });
    if (s === diverged) row.loss = NaN;
    if (isKnn && s !== diverged) {
      const k = knnAt(s);
      row.knn_top1 = k;
      row.knn_top5 = Math.min(100, k + 30);
      lastKnn = k;
      best = Math.max(best ?? -Infinity, k);
    }
    row.images_per_s = 500;
    lines.push(enc(row));
  }
  writeFileSync(join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n`);
  const status = spec.status ?? (diverged !== null ? 'diverged' : 'completed');
  writeFileSync(
    join(dir, 'status.json'),
    JSON.stringify({ status, step: end, total_steps: steps, ...(diverged !== null ? { diverged_at: diverged } : {}) }),
  );
  if (status !== 'running') {
    writeFileSync(
      join(dir, 'summary.json'),
      JSON.stringify({
        status,
        steps: end,
        total_steps: steps,
        knn_top1: lastKnn,
        knn_top5: lastKnn === null ? null : lastKnn + 30,
        best_knn_top1: best,
        linear_top1: null,
        diverged_at: diverged,
        wall_s: spec.wallS ?? 42,
        images_per_s: 500,
        ...spec.summary,
      }),
    );
  }
  return dir;
}

/** A smoke-scale batch-size sweep (the paper's Fig. 1 grid / 16) with dips, spikes and one diverged run. */
export function writeBatchSweep(root: string, name = 'batch-size', seeds = [0]): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const batches = [64, 128, 256, 384];
  for (const [i, b] of batches.entries()) {
    for (const seed of seeds) {
      writeFakeRun(dir, {
        id: `bs${b}-lr1.0e-4-adamw-learned-s${seed}-${(0xabc000 + i * 16 + seed).toString(16)}`,
        config: { seed, 'optim.batch_size': b, 'optim.base_lr': 1e-4 },
        knnCurve: (f) => 15 + (40 - 4 * i) * Math.sqrt(f) + seed,
        knnDrops: i >= 2 ? { 80: 8, 100: 5, 160: 12 } : {},
        spikes: i >= 2 ? { patch_proj: [75, 155], block1: [90, 165] } : {},
        divergedAt: i === 3 && seed === 0 ? 185 : null,
        summary: { linear_top1: 40 - 3 * i + seed, linear_top5: 80 },
        wallS: 30 + 10 * i,
      });
    }
  }
  writeFileSync(
    join(dir, 'sweep.yaml'),
    YAML.stringify({ name, method: 'grid', preset: 'smoke', seeds, parameters: { 'optim.batch_size': { values: batches }, 'optim.base_lr': { value: 1e-4 } } }),
  );
  return dir;
}

/** A sweep of one run per setting (seed 0), no instability: the shape of the report only. */
export function writeSimpleSweep(
  root: string,
  name: string,
  settings: Array<Record<string, unknown>>,
  sweepFile: Record<string, unknown> | null = null,
): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  settings.forEach((cfg, i) => {
    const slug = Object.values(cfg)
      .map((v) => String(v).replace(/[^\w.-]/g, ''))
      .join('-');
    writeFakeRun(dir, { id: `${slug}-s0-${(0xdef000 + i).toString(16)}`, config: cfg, summary: { linear_top1: 30 + i } });
  });
  if (sweepFile) writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify(sweepFile));
  return dir;
}
