/**
 * The environment variables that take numbers (README.md names them), and Dawn's flags, checked before a command runs: a bad
 * value is one line naming the variable and what was expected, exit 2, instead of a default taken silently.
 * Unset or empty, each keeps its default.
 */
import { UsageError } from '../config/errors.ts';
import { parseDecimal, parseInteger } from '../config/numbers.ts';

const NUMERIC_ENV: Readonly<Record<string, { min: number; max?: number; strict: boolean; what: string; integer?: boolean }>> = {
  MOCO3_LOCK_TIMEOUT: { min: 0, strict: true, what: 'a positive number of seconds' },
  // read by the native addon (native/src/addon.cc), which would take a bad value for all cores
  MOCO3_THREADS: { min: 0, max: 256, strict: false, what: 'a whole number of threads from 0 to 256 (0: one per core this process may use)', integer: true },
  MOCO3_NATIVE_POOL_MB: { min: 0, strict: false, what: 'a number of MiB, 0 or more' },
  MOCO3_STREAM_BYTES: { min: 0, strict: false, what: 'a number of bytes, 0 or more' },
};

/**
 * Variables that take one of a few words (README.md names them), read as `=== '0'`, `=== 'js'`...: another value
 * (`false`, `off`) would be taken for the default without a word, the kernels a user turned off still running.
 */
const CHOICE_ENV: Readonly<Record<string, { values: readonly string[]; what: string }>> = {
  MOCO3_NATIVE: { values: ['0', '1'], what: '0 (the native kernels off) or 1 (on, the default)' },
  MOCO3_WEBGPU_KERNELS: { values: ['0', '1'], what: "0 (moco3's WGSL kernels off) or 1 (on, the default)" },
  MOCO3_WEBGPU_PACK: { values: ['0', '1'], what: '1 or 0 (packed optimizer updates on or off; unset: on a hardware adapter only)' },
  MOCO3_LEAN_BACKWARD: { values: ['0', '1'], what: "0 (TensorFlow.js's own backward) or 1 (moco3's, the default)" },
  MOCO3_PREFETCH: { values: ['0', '1'], what: "1 or 0 (the next step's views made ahead or not; unset: on every backend but native)" },
  MOCO3_SUPERVISE: { values: ['0', '1'], what: '0 (a sweep in one process) or 1 (each run in a child process, the default)' },
  MOCO3_AUGMENT: { values: ['js', 'native'], what: 'js (the augmentation in JavaScript) or native (the native kernel, the default where it is built)' },
  MOCO3_DEBUG: { values: ['0', '1'], what: '1 (stack traces, and Dawn\'s stderr as it is) or 0 (the default)' },
};

/** A value as the error line shows it: quoted as JSON when it holds a control character (a carriage return would rewrite the line). */
const CONTROL = /[\u0000-\u001f\u007f]/;
export const shown = (v: string) => (CONTROL.test(v) ? JSON.stringify(v) : v);

export function checkEnv(env: NodeJS.ProcessEnv = process.env): void {
  for (const [name, { min, max, strict, what, integer }] of Object.entries(NUMERIC_ENV)) {
    const v = env[name];
    if (v === undefined || v.trim() === '') continue;
    const x = integer ? parseInteger(v) : parseDecimal(v);
    if (!Number.isFinite(x) || (strict ? x <= min : x < min) || (max !== undefined && x > max)) throw new UsageError(`${name}=${shown(v)}: expected ${what}`);
    // as read: the native addon parses it again, and takes what JavaScript trims (a CR, a no-break space) for no number
    env[name] = String(x);
  }
  for (const [name, { values, what }] of Object.entries(CHOICE_ENV)) {
    const v = env[name];
    if (v === undefined || v.trim() === '' || values.includes(v)) continue;
    // spaces around it (' 0') shown quoted: unquoted, the line reads `MOCO3_NATIVE= 0`
    throw new UsageError(`${name}=${v !== v.trim() ? JSON.stringify(v) : shown(v)}: expected ${what}`);
  }
  // Dawn's own flags, given to it as they are (src/engine/webgpu.ts): each a key=value
  const dawn = env.MOCO3_DAWN_FLAGS;
  if (dawn !== undefined && dawn.trim() !== '') {
    // a value may hold spaces (adapter=GeForce RTX names an adapter by a part of its name), not at its ends
    // (Dawn would read 'vulkan ' or a carriage return as part of the name)
    const bad = dawn.split(',').filter(Boolean).find((f) => !/^[^=\s]+=(\S(.*\S)?)?$/.test(f));
    if (bad !== undefined) throw new UsageError(`MOCO3_DAWN_FLAGS=${shown(dawn)}: expected Dawn's flags as key=value, comma-separated (e.g. backend=vulkan,adapter=NVIDIA), got ${CONTROL.test(bad) ? shown(bad) : `'${bad}'`}`);
  }
}
