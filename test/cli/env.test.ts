/** The environment variables that take numbers or one of a few words: a bad value is one line naming it, exit 2; unset or empty, the default. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';
import { defaultFreeListBytes } from '../../src/engine/native.ts';

test('a numeric environment variable with a bad value is one line, exit 2, before the command runs', async () => {
  for (const [name, value, what] of [
    ['MOCO3_LOCK_TIMEOUT', 'ten', 'a positive number of seconds'],
    ['MOCO3_LOCK_TIMEOUT', '0', 'a positive number of seconds'],
    ['MOCO3_NATIVE_POOL_MB', '-1', 'a number of MiB, 0 or more'],
    ['MOCO3_STREAM_BYTES', '0x10', 'a number of bytes, 0 or more'],
    ['MOCO3_THREADS', 'abc', 'a whole number of threads from 0 to 256 (0: one per core this process may use)'],
    ['MOCO3_THREADS', '1.5', 'a whole number of threads from 0 to 256 (0: one per core this process may use)'],
    ['MOCO3_THREADS', '-2', 'a whole number of threads from 0 to 256 (0: one per core this process may use)'],
    // the native pool's own ceiling: a larger number was cut to it without a word (or wrapped around in the addon)
    ['MOCO3_THREADS', '257', 'a whole number of threads from 0 to 256 (0: one per core this process may use)'],
    ['MOCO3_THREADS', '4294967298', 'a whole number of threads from 0 to 256 (0: one per core this process may use)'],
    ['MOCO3_THREADS', 'two\r', 'a whole number of threads from 0 to 256 (0: one per core this process may use)'],
    // DEL is a control character too
    ['MOCO3_STREAM_BYTES', '9\u007f', 'a number of bytes, 0 or more'],
  ] as const) {
    const r = await cli(['train', '--preset', 'smoke', '--dry-run'], { [name]: value });
    assert.equal(r.code, 2, `${name}=${value}: ${r.err}`);
    // a control character is shown quoted: a carriage return printed as it is sends the line's end over its start
    assert.equal(r.err, `moco3: ${name}=${/[\r\u007f]/.test(value) ? JSON.stringify(value) : value}: expected ${what}\n`);
    assert.equal(r.out, '');
  }
  // good values, and unset or empty ones, leave the command to run
  for (const env of [{ MOCO3_LOCK_TIMEOUT: '900' }, { MOCO3_LOCK_TIMEOUT: '' }, { MOCO3_NATIVE_POOL_MB: '0', MOCO3_STREAM_BYTES: '1e9', MOCO3_THREADS: '2' }, { MOCO3_THREADS: '0' }, { MOCO3_THREADS: '256' }, { MOCO3_STREAM_BYTES: '0', MOCO3_LOCK_TIMEOUT: '0.5' }]) {
    const r = await cli(['train', '--preset', 'smoke', '--dry-run'], env);
    assert.equal(r.code, 0, `${JSON.stringify(env)}: ${r.err}`);
  }
  // Dawn's flags: each a key=value (Dawn's own error named no variable, and doctor exited 1)
  for (const [value, part] of [['garbage', 'garbage'], ['backend=vulkan,,adapter', 'adapter'], ['backend=vulkan, adapter=x', ' adapter=x']] as const) {
    const r = await cli(['doctor'], { MOCO3_DAWN_FLAGS: value });
    assert.equal(r.code, 2, r.err);
    assert.equal(r.err, `moco3: MOCO3_DAWN_FLAGS=${value}: expected Dawn's flags as key=value, comma-separated (e.g. backend=vulkan,adapter=NVIDIA), got '${part}'\n`);
  }
  const cr = await cli(['doctor'], { MOCO3_DAWN_FLAGS: 'adapter=x,backend=vulkan \r' });
  assert.equal(cr.code, 2, cr.err);
  assert.equal(cr.err, `moco3: MOCO3_DAWN_FLAGS="adapter=x,backend=vulkan \\r": expected Dawn's flags as key=value, comma-separated (e.g. backend=vulkan,adapter=NVIDIA), got "backend=vulkan \\r"\n`);
  // $MOCO3_MIRROR too
  const mirror = await cli(['data', 'fetch', 'cifar10', '--dir', tempDir('moco3-env-mirror-')], { MOCO3_MIRROR: 'ftp://x\r' });
  assert.equal(mirror.code, 2, mirror.err);
  assert.equal(mirror.err, 'moco3: $MOCO3_MIRROR "ftp://x\\r": expected an http:// or https:// URL\n');
  // a URL with one: refused, not put into every file's URL
  const url = await cli(['data', 'fetch', 'cifar10', '--dir', tempDir('moco3-env-mirror-')], { MOCO3_MIRROR: 'http://127.0.0.1:9/\r' });
  assert.equal(url.code, 2, url.err);
  assert.equal(url.err, 'moco3: $MOCO3_MIRROR "http://127.0.0.1:9/\\r": expected an http:// or https:// URL without spaces or control characters\n');
  // a value with spaces is Dawn's to read (adapter= takes a part of an adapter's name)
  const spaced = await cli(['train', '--preset', 'smoke', '--dry-run'], { MOCO3_DAWN_FLAGS: 'backend=vulkan,adapter=GeForce RTX' });
  assert.equal(spaced.code, 0, spaced.err);
  // blank: no flags, as unset (Dawn was given ' ' and refused it)
  const blank = await cli(['doctor'], { MOCO3_DAWN_FLAGS: ' ' });
  assert.equal(blank.code, 0, blank.err);
  assert.doesNotMatch(blank.out, /Dawn refused/);
});

test('a variable of a few words (MOCO3_NATIVE, MOCO3_PREFETCH, MOCO3_AUGMENT, MOCO3_DEBUG...) of another value is one line, exit 2 (false was taken for the default)', async () => {
  for (const [name, value, what] of [
    ['MOCO3_NATIVE', 'false', '0 (the native kernels off) or 1 (on, the default)'],
    ['MOCO3_WEBGPU_KERNELS', 'off', "0 (moco3's WGSL kernels off) or 1 (on, the default)"],
    ['MOCO3_WEBGPU_PACK', 'true', '1 or 0 (packed optimizer updates on or off; unset: on a hardware adapter only)'],
    ['MOCO3_LEAN_BACKWARD', 'no', "0 (TensorFlow.js's own backward) or 1 (moco3's, the default)"],
    ['MOCO3_PREFETCH', 'yes', "1 or 0 (the next step's views made ahead or not; unset: on every backend but native)"],
    ['MOCO3_SUPERVISE', 'off', '0 (a sweep in one process) or 1 (each run in a child process, the default)'],
    ['MOCO3_AUGMENT', 'JS', 'js (the augmentation in JavaScript) or native (the native kernel, the default where it is built)'],
    ['MOCO3_DEBUG', 'true', "1 (stack traces, and Dawn's stderr as it is) or 0 (the default)"],
  ] as const) {
    const r = await cli(['train', '--preset', 'smoke', '--dry-run'], { [name]: value });
    assert.equal(r.code, 2, `${name}=${value}: ${r.err}`);
    assert.equal(r.err, `moco3: ${name}=${value}: expected ${what}\n`);
    assert.equal(r.out, '');
  }
  // spaces around a value: shown quoted (unquoted the line read `MOCO3_NATIVE= 0`)
  const spaced = await cli(['train', '--preset', 'smoke', '--dry-run'], { MOCO3_NATIVE: ' 0' });
  assert.equal(spaced.code, 2, spaced.err);
  assert.equal(spaced.err, 'moco3: MOCO3_NATIVE=" 0": expected 0 (the native kernels off) or 1 (on, the default)\n');
  for (const env of [{ MOCO3_NATIVE: '1', MOCO3_WEBGPU_KERNELS: '1', MOCO3_WEBGPU_PACK: '0', MOCO3_LEAN_BACKWARD: '1', MOCO3_PREFETCH: '1', MOCO3_SUPERVISE: '1', MOCO3_AUGMENT: 'native', MOCO3_DEBUG: '0' }, { MOCO3_NATIVE: '', MOCO3_WEBGPU_PACK: ' ', MOCO3_AUGMENT: 'js' }]) {
    const r = await cli(['train', '--preset', 'smoke', '--dry-run'], env);
    assert.equal(r.code, 0, `${JSON.stringify(env)}: ${r.err}`);
  }
});

test('a number the check reads is the number the native kernels read: a trailing carriage return or no-break space is not all cores', () => {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'moco3.js');
  for (const value of ['1\r', '1\u00a0', ' 1 ']) {
    const r = spawnSync(process.execPath, [bin, 'doctor'], { env: { ...process.env, MOCO3_THREADS: value }, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^native: built \(.*, 1 thread\)/m, JSON.stringify(value));
  }
});

test('the wasm backend failing to start (a Node without WebAssembly: --jitless) says why: asked for, one line and exit 2, nothing made; under auto, in its reason', () => {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'moco3.js');
  const out = join(tempDir('moco3-wasm-'), 'run');
  const r = spawnSync(process.execPath, ['--jitless', bin, 'train', '--preset', 'smoke', '--backend', 'wasm', '--set', 'train.max_steps=1', '--out', out], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^moco3: backend 'wasm' asked for, but it failed to start \(.*wasm.*\)$/m);
  assert.equal(existsSync(out), false);
  const d = spawnSync(process.execPath, ['--jitless', bin, 'doctor'], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, MOCO3_NATIVE: '0' } });
  assert.match(d.stdout, /^--backend auto takes: cpu .*disabled by MOCO3_NATIVE=0\), and the wasm backend failed to start \(.*wasm.*\)\)$/m);
});

test('MOCO3_NATIVE_POOL_MB unset, empty or blank is the default free list (a quarter of RAM, at most 4 GiB); a number is MiB', () => {
  const want = Math.min(4 * 2 ** 30, Math.floor(totalmem() / 4));
  const was = process.env.MOCO3_NATIVE_POOL_MB;
  try {
    for (const [v, bytes] of [[undefined, want], ['', want], [' ', want], ['64', 64 * 2 ** 20], ['0', 0]] as const) {
      if (v === undefined) delete process.env.MOCO3_NATIVE_POOL_MB;
      else process.env.MOCO3_NATIVE_POOL_MB = v;
      assert.equal(defaultFreeListBytes(), bytes, JSON.stringify(v));
    }
  } finally {
    if (was === undefined) delete process.env.MOCO3_NATIVE_POOL_MB;
    else process.env.MOCO3_NATIVE_POOL_MB = was;
  }
});

test('MOCO3_NATIVE_PATH naming no file, or a file that is no addon: doctor and --backend native say which, not "not built"', () => {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'moco3.js');
  const bad = join(tempDir('moco3-native-path-'), 'bad.node');
  writeFileSync(bad, 'x');
  const run = (args: string[], path: string) => spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, MOCO3_NATIVE_PATH: path }, encoding: 'utf8', timeout: 120_000 });
  // the file asked for, not the default build in its place
  assert.match(run(['doctor'], '/nonexistent/moco3_native.node').stdout, /^native: not loaded \(MOCO3_NATIVE_PATH=\/nonexistent\/moco3_native\.node: no such file\)$/m);
  assert.match(run(['doctor'], bad).stdout, /^native: not loaded \(.*bad\.node: file too short\)$/m);
  // a folder, and a JavaScript file: said in one line, the script never run (require() would have run it)
  const dir = tempDir('moco3-native-dir-');
  assert.match(run(['doctor'], dir).stdout, new RegExp(`^native: not loaded \\(MOCO3_NATIVE_PATH=${dir}: not a file \\(expected the addon, moco3_native\\.node\\)\\)$`, 'm'));
  const js = join(dir, 'x.js');
  writeFileSync(js, 'console.log("ran as a script")\n');
  const ran = run(['doctor'], js);
  assert.ok(!ran.stdout.includes('ran as a script'), ran.stdout);
  assert.match(ran.stdout, /^native: not loaded \(\S*x\.js: [^\n]*\)$/m);
  assert.ok(!/Require stack/.test(ran.stdout), ran.stdout);
  const r = run(['bench', '--preset', 'smoke', '--backend', 'native', '--steps', '1'], bad);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /^moco3: backend 'native' asked for, but moco3's native kernels do not load \(\S*bad\.node: file too short\) \(run `moco3 doctor`\)$/m);
  // auto trains on the next backend, and its line says why the built kernels are not used
  const out = join(tempDir('moco3-native-auto-'), 'run');
  const auto = run(['train', '--preset', 'smoke', '--data', 'synthetic', '--backend', 'auto', '--set', 'train.max_steps=1', '--set', 'eval.linear.enabled=false', '--out', out], bad);
  assert.equal(auto.status, 0, auto.stderr);
  assert.match(auto.stderr, /^moco3: backend (wasm|cpu): .*\(tfjs-node is not installed, moco3's native kernels do not load \(\S*bad\.node: file too short\)/m);
});
