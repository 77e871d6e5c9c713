/** Starting a TensorFlow.js backend, and saying why it did not start. */
import * as tf from '@tensorflow/tfjs-core';

/**
 * tf.setBackend(name), and why it failed: tfjs says so only through its log, which production mode (set by
 * initBackend) silences. Null when the backend is set, else the cause's first line.
 */
export async function setBackendSaying(name: string): Promise<string | null> {
  const said: string[] = [];
  const prod = tf.env().getBool('PROD');
  const warn = console.warn;
  tf.env().set('PROD', false);
  console.warn = (...a: unknown[]) => void said.push(a.map((x) => (x instanceof Error ? x.message : String(x))).join(' '));
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } finally {
    console.warn = warn;
    tf.env().set('PROD', prod);
  }
  if (ok) return null;
  const cause = said.find((w) => !/^Initialization of backend \S+ failed$/.test(w.trim()));
  return cause ? cause.split('\n')[0]!.trim() : 'no reason given';
}
