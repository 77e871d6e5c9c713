/**
 * `moco3 doctor --replay`'s comparison (src/train/webgpu-check.ts), run with the cpu backend on both sides:
 * equal steps pass, and a step whose weight decay or momentum update is wrong on one side fails, each by the
 * kind of tensor it touches. The replay between webgpu and the CPU itself is test/engine/webgpu.test.ts's.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { replayCheck } from '../../src/train/webgpu-check.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { AdamW } from '../../src/optim/adamw.ts';

// Replaces proto[method] for the second of the two replays (the first makes `calls` calls), then restores it
async function brokenOnTarget<T extends object>(proto: T, method: string, calls: number, broken: (orig: (...a: unknown[]) => unknown) => (this: unknown, ...a: unknown[]) => unknown) {
  const p = proto as Record<string, (...a: unknown[]) => unknown>;
  const orig = p[method]!;
  const bad = broken(orig);
  let n = 0;
  p[method] = function (this: unknown, ...a: unknown[]) {
    return (n++ < calls ? orig : bad).apply(this, a);
  };
  try {
    return await replayCheck('cpu', null, 'cpu');
  } finally {
    p[method] = orig;
  }
}

test('the replay of two equal steps passes, with every kind of tensor compared', async () => {
  const before = tf.memory().numTensors;
  const r = await replayCheck('cpu', null, 'cpu');
  assert.equal(r.ok, true);
  assert.deepEqual(Object.keys(r.worst).sort(), ['grad1', 'loss', 'param', 'slot', 'state']);
  for (const v of Object.values(r.worst)) assert.equal(v, 0);
  assert.equal(tf.memory().numTensors, before);
});

test('the replay fails a step whose AdamW leaves out the weight decay', async () => {
  const r = await brokenOnTarget(AdamW.prototype, 'update', 2, (orig) =>
    function (this: unknown, ...a: unknown[]) {
      const self = this as { opts: { weightDecay: number } };
      const opts = self.opts;
      self.opts = { ...opts, weightDecay: 0 };
      try {
        return orig.apply(this, a);
      } finally {
        self.opts = opts;
      }
    });
  assert.equal(r.ok, false);
  assert.ok(r.worst.param! > 1e-3, JSON.stringify(r.worst));
});

test('the replay fails a step that leaves out the momentum update, or swaps m and 1 - m', async () => {
  const none = await brokenOnTarget(MoCoViT.prototype, 'momentumUpdate', 2, () => () => undefined);
  assert.equal(none.ok, false);
  assert.ok(none.worst.state! > 1e-3, JSON.stringify(none.worst));
  const swapped = await brokenOnTarget(MoCoViT.prototype, 'momentumUpdate', 2, (orig) =>
    function (this: unknown, m: unknown) {
      return orig.call(this, 1 - (m as number));
    });
  assert.equal(swapped.ok, false);
  assert.ok(swapped.worst.state! > 1e-3, JSON.stringify(swapped.worst));
});
