/**
 * A training step whose kernel fails (out of memory on a large batch, say) leaves no tensor behind, wherever
 * it fails: the momentum encoder's keys, a loss term's taped forward, its backward. A sweep marks such a
 * run failed and trains the next in the same process, which would otherwise start with the leak; with
 * moco3's backward and with TensorFlow.js's own (MOCO3_LEAN_BACKWARD=0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { modelConfigOf, optimizerOf } from '../../src/components/index.ts';
import type { ResolvedRunConfig } from '../../src/config/schema.ts';
import { loadCheckpoint, modelStateDict } from '../../src/train/checkpoint.ts';
import { tinyConfig, images } from './util.ts';

type Phase = 'keys' | 'forward' | 'backward';
const engineState = (tf.engine() as unknown as { state: { gradientDepth: number; activeTape: unknown[] | null } }).state;
/** Where a kernel runs: inside a taped forward, the backward of one, or neither (the keys, the momentum update). */
const phase = (): Phase => (engineState.gradientDepth > 0 ? 'forward' : engineState.activeTape !== null ? 'backward' : 'keys');

// every kernel of the cpu backend counts its calls per phase, and throws at the armed one
const calls: Record<Phase, number> = { keys: 0, forward: 0, backward: 0 };
let armed: { phase: Phase; at: number } | null = null;
// every call whatever its phase, and those that can fail: a checkpoint load, which runs outside any step
let allCalls = 0;
let failableAll: number[] = [];
let armedAny: number | null = null;
// the untaped calls that come right after a backward (a loss term's BatchNorm update, with its gradients made)
let last: Phase = 'keys';
// the most tensors alive at a backward kernel: tfjs's own backward keeps every gradient to the end, moco3's frees
// each once used (which of the two ran)
let backwardPeak = 0;
const afterBackward: number[] = [];
// the calls of each phase that can fail (not a copy: Identity, see below), in order
const failable: Record<Phase, number[]> = { keys: [], forward: [], backward: [] };
const wrapped = tf.getKernelsForBackend('cpu');
for (const k of wrapped) {
  const run = k.kernelFunc;
  tf.unregisterKernel(k.kernelName, 'cpu');
  tf.registerKernel({
    ...k,
    kernelFunc: ((args: Parameters<typeof run>[0]) => {
      const p = phase();
      const n = calls[p]++;
      const all = allCalls++;
      if (k.kernelName !== 'Identity') failableAll.push(all);
      if (armedAny !== null && all >= armedAny && k.kernelName !== 'Identity') {
        armedAny = null;
        throw new Error(`injected: ${k.kernelName}, call ${all}`);
      }
      if (p === 'backward') backwardPeak = Math.max(backwardPeak, tf.memory().numTensors);
      if (p === 'keys' && last === 'backward') afterBackward.push(n);
      if (k.kernelName !== 'Identity') failable[p].push(n);
      last = p;
      // from the armed call on, the first kernel that can fail: not a copy (Identity: the copies tfjs keeps of
      // saved tensors share their data, and allocate nothing that could run out)
      if (armed && armed.phase === p && n >= armed.at && k.kernelName !== 'Identity') {
        armed = null;
        throw new Error(`injected: ${k.kernelName} in the ${p}, call ${n}`);
      }
      return run(args);
    }) as typeof run,
  });
}

test('a kernel failing anywhere in a step (keys, taped forward, backward; plain and micro-batched; either backward) leaves no tensor behind', () => {
  const x1 = images('fail1', 8, 8).t;
  const x2 = images('fail2', 8, 8).t;
  const setting = process.env.MOCO3_LEAN_BACKWARD;
  try {
    const peaks = new Map<string, number>();
    for (const [micro, lean] of [[null, '1'], [4, '1'], [null, '0'], [4, '0']] as const) {
      process.env.MOCO3_LEAN_BACKWARD = lean;
      const model = new MoCoViT(tinyConfig(), 11);
      const clean = () => {
        const { loss, grads } = model.step(x1, x2, 0.99, micro);
        loss.dispose();
        grads.forEach((g) => g.dispose());
      };
      clean(); // kernels compiled, nothing cached on the first call left to count
      const base = tf.memory().numTensors;
      calls.keys = calls.forward = calls.backward = 0;
      afterBackward.length = 0;
      backwardPeak = 0;
      for (const p of ['keys', 'forward', 'backward'] as const) failable[p] = [];
      clean();
      peaks.set(`${micro} ${lean}`, backwardPeak);
      const per = { ...calls };
      const canFail = { ...failable };
      const termEnds = [...afterBackward];
      assert.equal(termEnds.length, micro === null ? 2 : 4, 'one backward per loss term and micro-batch');
      assert.ok(per.keys > 20 && per.forward > 50 && per.backward > 50, JSON.stringify(per));
      let failures = 0;
      // early, middle and late in each phase (before, among and after the BatchNorm statistics, the second
      // view's term), and right after each term's backward (its BatchNorm update, its gradients made)
      const points = [
        // (of the calls that can fail: the forward ends in the copies a loss saves)
        ...(['keys', 'forward', 'backward'] as const).flatMap((p) => [0.05, 0.3, 0.55, 0.8, 0.99].map((frac) => [p, canFail[p][Math.floor(frac * canFail[p].length)]!] as const)),
        ...termEnds.map((at) => ['keys', at] as const),
      ];
      for (const [p, at] of points) {
        calls.keys = calls.forward = calls.backward = 0;
        armed = { phase: p, at };
        let why = '';
        const failing = () => {
          try {
            clean();
          } catch (e) {
            why = String(e);
            throw e;
          }
        };
        assert.throws(failing, /^Error: injected: /, `${p} at ${at} (micro ${micro})`);
        failures++;
        assert.equal(tf.memory().numTensors, base, `tensors left by ${why} of ${per[p]} (micro-batch ${micro}, MOCO3_LEAN_BACKWARD=${lean})`);
        assert.equal(engineState.activeTape, null, 'the tape is gone');
      }
      assert.equal(failures, points.length);
      // and the model still steps
      clean();
      assert.equal(tf.memory().numTensors, base);
      model.dispose();
    }
    // the setting chose the backward at each step (read per call, not once at start-up)
    for (const micro of [null, 4]) assert.ok(peaks.get(`${micro} 0`)! > peaks.get(`${micro} 1`)!, JSON.stringify([...peaks]));
  } finally {
    if (setting === undefined) delete process.env.MOCO3_LEAN_BACKWARD;
    else process.env.MOCO3_LEAN_BACKWARD = setting;
  }
  x1.dispose();
  x2.dispose();
});

test("a kernel failing while a model is built, or while a checkpoint's copies are made, leaves no tensor behind", async () => {
  const base = tf.memory().numTensors;
  const count = (f: () => unknown) => {
    calls.keys = calls.forward = calls.backward = 0;
    f();
    return calls.keys;
  };
  const built = count(() => new MoCoViT(tinyConfig(), 3).dispose());
  assert.ok(built > 20, String(built));
  for (const frac of [0, 0.4, 0.9]) {
    calls.keys = 0;
    armed = { phase: 'keys', at: Math.floor(frac * built) };
    assert.throws(() => new MoCoViT(tinyConfig(), 3), /^Error: injected: /);
    armed = null;
    assert.equal(tf.memory().numTensors, base, `tensors left by a model failing at kernel ${Math.floor(frac * built)} of ${built}`);
  }
  const model = new MoCoViT(tinyConfig(), 3);
  const withModel = tf.memory().numTensors;
  calls.keys = 0;
  (await modelStateDict(model)).size;
  const copies = calls.keys;
  for (const frac of [0.3, 0.9]) {
    calls.keys = 0;
    armed = { phase: 'keys', at: Math.floor(frac * copies) };
    await assert.rejects(modelStateDict(model), /^Error: injected: /);
    armed = null;
    assert.equal(tf.memory().numTensors, withModel, `tensors left by a state dict failing at kernel ${Math.floor(frac * copies)} of ${copies}`);
  }
  model.dispose();
  assert.equal(tf.memory().numTensors, base);
});

test('a kernel failing while a checkpoint is loaded (a resume) leaves no tensor behind', () => {
  const run = join(import.meta.dirname, '..', 'torchref', 'fixture', 'learned');
  const c = YAML.parse(readFileSync(join(run, 'config.yaml'), 'utf8')) as ResolvedRunConfig;
  const model = new MoCoViT(modelConfigOf(c), 0);
  const optimizer = optimizerOf(c, model);
  // step 1: its optimizer file holds the slots of every parameter (step 0's holds none)
  const dir = join(run, 'checkpoints', 'step-0000001');
  loadCheckpoint(dir, model, optimizer); // the optimizer's slots made once
  assert.ok(optimizer.stateTensors().size > 0);
  const base = tf.memory().numTensors;
  allCalls = 0;
  failableAll = [];
  loadCheckpoint(dir, model, optimizer);
  const loading = allCalls;
  const canFail = failableAll.slice();
  assert.ok(canFail.length > 100, String(canFail.length));
  assert.equal(tf.memory().numTensors, base);
  // in the model's tensors, then in the optimizer's slots
  for (const frac of [0.05, 0.3, 0.7, 0.95]) {
    const at = canFail[Math.floor(frac * canFail.length)]!;
    allCalls = 0;
    armedAny = at;
    assert.throws(() => loadCheckpoint(dir, model, optimizer), new RegExp(`^Error: injected: \\w+, call ${at}$`));
    armedAny = null;
    assert.equal(tf.memory().numTensors, base, `tensors left by a load failing at kernel ${at} of ${loading}`);
  }
  optimizer.dispose();
  model.dispose();
});
