/** The model needs TensorFlow.js's gradients registered (see engine/gradients.ts). */
export { MODEL_GRADIENT_KERNELS, assertModelGradients } from '../engine/gradients.ts';
