/**
 * A training step whose kernel fails (out of memory on a large batch, say) leaves no tensor behind, wherever
 * it fails: the momentum encoder's keys, a loss term's taped forward, its backward. A sweep marks such a
 * run failed and trains the next in the same process, which would otherwise start with the leak.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { modelStateDict } from '../../src/train/checkpoint.ts';
import { tinyConfig, images } from './util.ts';

type Phase = 'keys' | 'forward' | 'backward';
const engineState = (tf.engine() as unknown as { state: { gradientDepth: number; activeTape: unknown[] | null } }).state;
/** Where a kernel runs: inside a taped forward, the backward of one, or neither (the keys, the momentum update). */
const phase = (): Phase => (engineState.gradientDepth > 0 ? 'forward' : engineState.activeTape !== null ? 'backward' : 'keys');

// every kernel of the cpu backend counts its calls per phase, and throws at the armed one
const calls: Record<Phase, number> = { keys: 0, forward: 0, backward: 0 };
let armed: { phase: Phase; at: number } | null = null;
const wrapped = tf.getKernelsForBackend('cpu');
for (const k of wrapped) {
  const run = k.kernelFunc;
  tf.unregisterKernel(k.kernelName, 'cpu');
  tf.registerKernel({
    ...k,
    kernelFunc: ((args: Parameters<typeof run>[0]) => {
      const p = phase();
      const n = calls[p]++;
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

test('a kernel failing anywhere in a step (keys, taped forward, backward; plain and micro-batched) leaves no tensor behind', () => {
  const x1 = images('fail1', 8, 8).t;
  const x2 = images('fail2', 8, 8).t;
  for (const micro of [null, 4]) {
    const model = new MoCoViT(tinyConfig(), 11);
    const clean = () => {
      const { loss, grads } = model.step(x1, x2, 0.99, micro);
      loss.dispose();
      grads.forEach((g) => g.dispose());
    };
    clean(); // kernels compiled, nothing cached on the first call left to count
    const base = tf.memory().numTensors;
    calls.keys = calls.forward = calls.backward = 0;
    clean();
    const per = { ...calls };
    assert.ok(per.keys > 20 && per.forward > 50 && per.backward > 50, JSON.stringify(per));
    let failures = 0;
    for (const p of ['keys', 'forward', 'backward'] as const) {
      // early, middle and late in the phase: before, among and after the BatchNorm statistics, the second view's term
      for (const frac of [0.05, 0.3, 0.55, 0.8, 0.99]) {
        calls.keys = calls.forward = calls.backward = 0;
        const at = Math.floor(frac * per[p]);
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
        assert.equal(tf.memory().numTensors, base, `tensors left by ${why} of ${per[p]} (micro-batch ${micro})`);
        assert.equal(engineState.activeTape, null, 'the tape is gone');
      }
    }
    assert.equal(failures, 15);
    // and the model still steps
    clean();
    assert.equal(tf.memory().numTensors, base);
    model.dispose();
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
