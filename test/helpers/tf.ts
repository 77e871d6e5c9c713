/** Tests run on the stock `cpu` backend: exact, complete, and the same everywhere. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '../../src/engine/gradients.ts';

tf.env().set('PROD', true);
await tf.setBackend('cpu');
await tf.ready();

export { tf };
