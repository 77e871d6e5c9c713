/**
 * Parameter descriptions: official state-dict name, PyTorch shape, how the internal layout differs,
 * and the initialiser. Internal layouts are chosen for speed: Linear weights [in, out] (no transpose
 * in the forward matmul), the patch projection [p·p·C, D] in the (py, px, c) order `patchify` makes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../engine/rng.ts';

/** 'linear': torch [out, in] ↔ internal [in, out]; 'patch': torch [D, C, p, p] ↔ internal [p·p·C, D]; 'same': identical. */
export type Layout = 'linear' | 'patch' | 'same';

export interface ParamSpec {
  /** relative name, e.g. `blocks.0.attn.qkv.weight` */
  name: string;
  torchShape: number[];
  layout: Layout;
  /** BN running statistics: in the state dict, not in `.parameters()` */
  buffer: boolean;
  /** values in PyTorch layout */
  init: (rng: Rng) => Float32Array;
}

export function internalShape(layout: Layout, torchShape: number[]): number[] {
  switch (layout) {
    case 'linear':
      return [torchShape[1]!, torchShape[0]!];
    case 'patch': {
      const [D, C, p, q] = torchShape as [number, number, number, number];
      return [p * q * C, D];
    }
    case 'same':
      return torchShape.slice();
  }
}

/** Internal → PyTorch layout (new tensor). */
export function toTorchLayout(layout: Layout, torchShape: number[], t: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    switch (layout) {
      case 'linear':
        return tf.transpose(t, [1, 0]);
      case 'patch': {
        const [D, C, p, q] = torchShape as [number, number, number, number];
        return tf.transpose(tf.reshape(t, [p, q, C, D]), [3, 2, 0, 1]);
      }
      case 'same':
        return tf.reshape(t, torchShape);
    }
  });
}

/** PyTorch → internal layout (new tensor). */
export function fromTorchLayout(layout: Layout, torchShape: number[], t: tf.Tensor): tf.Tensor {
  const got = t.shape.join(',');
  if (got !== torchShape.join(',')) throw new Error(`expected PyTorch shape [${torchShape}], got [${got}]`);
  return tf.tidy(() => {
    switch (layout) {
      case 'linear':
        return tf.transpose(t, [1, 0]);
      case 'patch': {
        const [D, C, p, q] = torchShape as [number, number, number, number];
        return tf.reshape(tf.transpose(t, [2, 3, 1, 0]), [p * q * C, D]);
      }
      case 'same':
        return tf.clone(t);
    }
  });
}

/** PyTorch-layout Float32Array → internal-layout tensor. */
export function tensorFromTorchValues(spec: ParamSpec, values: Float32Array): tf.Tensor {
  return tf.tidy(() => fromTorchLayout(spec.layout, spec.torchShape, tf.tensor(values, spec.torchShape, 'float32')));
}
