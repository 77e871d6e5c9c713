import { tf } from '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOptimizer, type OptimizerConfig } from '../../src/optim/index.ts';
import { disposeAll, tensors, variables } from './util.ts';

const base = { weightDecay: 0.1, betas: [0.9, 0.999] as [number, number], eps: 1e-8, momentum: 0.9, trustCoefficient: 0.001 };
const configs: OptimizerConfig[] = [
  { name: 'adamw', ...base },
  { name: 'lamb', ...base },
  { name: 'lamb', ...base, lambMaxGradNorm: 1.0, lambExcludeBiasNorm: true },
  { name: 'lars', ...base },
  { name: 'sgd', ...base },
];
const ndimOf = (name: string) => (name === 'W' ? 2 : 1);

describe('optimizer memory', () => {
  for (const cfg of configs) {
    it(`${cfg.name}${cfg.lambMaxGradNorm ? ' (clipped, excluded)' : ''}: numTensors flat over 20 steps`, () => {
      const opt = createOptimizer(cfg, ndimOf);
      const p = variables({ W: [[2, 3], [1, 2, 3, 4, 5, 6]], b: [[3], [0.1, 0.2, 0.3]] });
      const g = tensors({ W: [[2, 3], [0.1, -0.2, 0.3, -0.4, 0.5, -0.6]], b: [[3], [1, -1, 0.5]] });
      opt.step(p, g, 0.01); // creates the slots
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) opt.step(p, g, 0.01);
      assert.equal(tf.memory().numTensors, before);
      disposeAll(p, g);
      // dispose() frees the slots: two per parameter for Adam-type, one for LARS/SGD
      const slots = opt.stateTensors().size;
      assert.equal(slots, cfg.name === 'adamw' || cfg.name === 'lamb' ? 4 : 2);
      const withSlots = tf.memory().numTensors;
      opt.dispose();
      assert.equal(tf.memory().numTensors, withSlots - slots);
    });
  }
});
