/**
 * The Node entry of @tensorflow/tfjs-core registers no gradients; the @tensorflow/tfjs bundle registers
 * TensorFlow.js's own gradient for every op (in the global registry that tfjs-core reads). Loaded once,
 * wherever the model is used.
 */
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';

/** Kernels the model back-propagates through that are not its own customGrad ops. */
export const MODEL_GRADIENT_KERNELS: readonly string[] = [
  'Add', 'Sub', 'Multiply', 'Reshape', 'Transpose', 'SplitV', 'Concat', 'Slice', 'Softmax', 'Relu', 'Sum', 'Mean',
];

/** Throws when a kernel the model needs has no gradient (a tfjs upgrade that moved the registry). */
export function assertModelGradients(): void {
  for (const k of MODEL_GRADIENT_KERNELS) {
    if (!tf.getGradient(k)) throw new Error(`TensorFlow.js has no gradient registered for ${k}`);
  }
}
