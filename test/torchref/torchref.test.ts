/**
 * One training step of moco3 against the official MoCo v3 code run in PyTorch. The fixtures (three tiny
 * runs: learned and frozen patch projection with AdamW, and plain SGD inside the lr warmup, whose updates are
 * the raw gradients) and each element's tolerance (tolerance.safetensors: max(1e-3 x the tensor's largest
 * update, 4 ulp, 10 x that element's float32 noise)) come from
 * `python3 tools/torch_reference.py --write-fixture test/torchref/fixture`; this test needs no Python.
 * Each step starts from the fixture's checkpoint of the step before, as the Python check does.
 */
import { tf } from '../helpers/tf.ts';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, type StTensor } from '../../src/engine/safetensors.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import type { ResolvedRunConfig } from '../../src/config/schema.ts';
import { modelConfigOf, optimizerOf } from '../../src/components/index.ts';
import { lrAt, momentumAt, scaledLr } from '../../src/optim/schedule.ts';
import { loadCheckpoint } from '../../src/train/checkpoint.ts';

const here = dirname(fileURLToPath(import.meta.url));

interface FixtureStep {
  step: number;
  lr: number;
  momentum: number;
  loss: number;
  loss_rtol: number;
  /** 'model:<name>' | 'slot:<param>.<slot>' → the largest of its elements' allowed |moco3 − torch| (integer buffers: 0) */
  tol: Record<string, number>;
}

interface FixtureConfig {
  data: { image_size: number; train_size: number };
  model: { patch_size: number; dim: number; depth: number; heads: number; mlp_ratio: number; patch_proj: 'learned' | 'frozen' };
  moco: { temperature: number; momentum: number; momentum_schedule: 'cosine' | 'constant'; proj_hidden: number; proj_dim: number; pred_hidden: number };
  optim: {
    name: 'adamw' | 'sgd';
    base_lr: number;
    weight_decay: number;
    batch_size: number;
    epochs: number;
    warmup_epochs: number;
    betas: [number, number];
    eps: number;
    momentum: number;
    trust_coefficient: number;
  };
}

const stepDir = (run: string, k: number) => join(run, 'checkpoints', `step-${String(k).padStart(7, '0')}`);
const values = (t: StTensor) => (t.data instanceof BigInt64Array ? Float64Array.from(t.data, (v) => Number(v)) : Float64Array.from(t.data));

/** The elements over their own tolerance (`tol` one per element, or one for all): how many, and the worst's index and ratio. */
function overTolerance(a: ArrayLike<number>, b: ArrayLike<number>, tol: ArrayLike<number> | number): { n: number; worst: number; ratio: number } {
  let n = 0;
  let worst = -1;
  let ratio = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    const t = typeof tol === 'number' ? tol : tol[i]!;
    const r = d === 0 ? 0 : t > 0 ? d / t : Infinity;
    if (!(r <= 1)) n++;
    if (!(r <= ratio)) (ratio = r), (worst = i);
  }
  return { n, worst, ratio };
}

const RUNS = { learned: 'learned patch projection, AdamW', frozen: 'frozen patch projection, AdamW', 'sgd-warmup': 'plain SGD in the lr warmup (raw gradients)' } as const;

for (const [name, about] of Object.entries(RUNS)) {
  const run = join(here, 'fixture', name);
  const fx = JSON.parse(readFileSync(join(run, 'expected.json'), 'utf8')) as { config: FixtureConfig; steps: FixtureStep[] };
  const c = fx.config;
  const perElement = readSafetensors(join(run, 'tolerance.safetensors')).tensors;

  describe(`moco3 vs PyTorch, ${about}`, () => {
    for (const st of fx.steps) {
      it(`step ${st.step}: loss, every state-dict tensor and optimizer slot agree to float32 rounding`, () => {
        // the fixture's config.yaml holds the keys these read; the run's own mapping to model and optimizer
        const rc = c as unknown as ResolvedRunConfig;
        const model = new MoCoViT(modelConfigOf(rc), 0);
        const opt = optimizerOf(rc, model);
        try {
          loadCheckpoint(stepDir(run, st.step - 1), model, opt);
          const s = st.step - 1;
          const e = s / Math.floor(c.data.train_size / c.optim.batch_size);
          const lr = lrAt(e, { lr: scaledLr(c.optim.base_lr, c.optim.batch_size), epochs: c.optim.epochs, warmupEpochs: c.optim.warmup_epochs });
          const m = momentumAt(e, { m0: c.moco.momentum, epochs: c.optim.epochs, schedule: c.moco.momentum_schedule });
          assert.ok(Math.abs(lr - st.lr) <= 1e-12 * st.lr, `lr ${lr} vs official ${st.lr}`);
          assert.ok(Math.abs(m - st.momentum) <= 1e-12, `momentum ${m} vs official ${st.momentum}`);

          const views = readSafetensors(join(run, 'views.safetensors')).tensors;
          const view = (v: string) => {
            const t = views.get(`step${s}.${v}`)!;
            return tf.tidy(() => tf.transpose(tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number], 'float32'), [0, 2, 3, 1]));
          };
          const x1 = view('x1');
          const x2 = view('x2');
          const { loss, grads } = model.step(x1, x2, m);
          opt.step(model.vars, new Map(model.trainableNames().map((n) => [n, grads.get(n)!] as const)), lr);
          const lossV = loss.dataSync()[0]!;
          tf.dispose([x1, x2, loss, ...grads.values()]);
          assert.ok(Math.abs(lossV - st.loss) <= st.loss_rtol * Math.abs(st.loss), `loss ${lossV} vs official ${st.loss}`);

          const bad: string[] = [];
          const check = (key: string, got: tf.Tensor, want: StTensor | undefined) => {
            const tol = st.tol[key];
            if (want === undefined || tol === undefined) {
              bad.push(`${key}: not in the official state`);
              return;
            }
            if (got.shape.join(',') !== want.shape.join(',')) {
              bad.push(`${key}: shape [${got.shape}], official [${want.shape}]`);
              return;
            }
            // each element against its own tolerance (an integer buffer has none: exact)
            const el = perElement.get(`step${st.step}/${key}`);
            if (el === undefined && tol !== 0) {
              bad.push(`${key}: no tolerance in tolerance.safetensors`);
              return;
            }
            const ours = got.dataSync();
            const theirs = values(want);
            const o = overTolerance(ours, theirs, el ? (el.data as Float32Array) : 0);
            if (o.n > 0) bad.push(`${key}: ${o.n} of ${ours.length} over their tolerance, worst [${o.worst}] |diff| ${Math.abs(ours[o.worst]! - theirs[o.worst]!).toExponential(2)} = ${o.ratio.toExponential(2)} x its tol`);
          };
          const wantModel = readSafetensors(join(stepDir(run, st.step), 'model.safetensors')).tensors;
          for (const [name, v] of model.vars) {
            const t = model.toTorch(name, v);
            check(`model:${name}`, t, wantModel.get(name));
            t.dispose();
          }
          for (const name of wantModel.keys()) if (!model.vars.has(name)) bad.push(`model:${name}: missing from moco3`);
          const wantSlots = readSafetensors(join(stepDir(run, st.step), 'optimizer.safetensors')).tensors;
          const slots = opt.stateTensors();
          for (const [key, t] of slots) {
            const tt = model.toTorch(key.slice(0, key.lastIndexOf('.')), t);
            check(`slot:${key}`, tt, wantSlots.get(key));
            tt.dispose();
          }
          for (const key of wantSlots.keys()) if (!slots.has(key)) bad.push(`slot:${key}: missing from moco3`);
          assert.deepEqual(bad, []);
        } finally {
          opt.dispose();
          model.dispose();
        }
      });
    }
  });
}
