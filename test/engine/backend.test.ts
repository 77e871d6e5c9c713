/**
 * initBackend's choice, in this process: what each backend asked for by name says of itself (the line the
 * CLI prints, the wasm heap the step's out-of-memory message names), what `auto` takes where no GPU device
 * node exists, and the error an unknown name gets. setBackendSaying's report of a backend that fails to
 * start, and the shutdown hooks. Dawn is loaded here only with its null backend, which makes no device
 * (test/engine/webgpu.test.ts runs real adapters in children).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend, backendLine, BackendError, initBackend, type BackendName } from '../../src/engine/backend.ts';
import { registerNativeBackend } from '../../src/engine/native.ts';
import { setBackendSaying } from '../../src/engine/set-backend.ts';
import { onShutdown, runShutdown } from '../../src/engine/shutdown.ts';

after(async () => {
  await tf.setBackend('cpu');
});

/** initBackend(name) with its log lines kept. */
async function init(name: BackendName, opts: { quiet?: boolean; gpuNodes?: string[] | null } = {}) {
  const lines: string[] = [];
  const info = await initBackend(name, { ...opts, log: (l) => void lines.push(l) });
  return { info, lines };
}

test('cpu, native and wasm by name: each says what it is and why, on one line unless quiet, and is the active backend', async () => {
  const cpu = await init('cpu');
  assert.deepEqual(cpu.info, { name: 'cpu', requested: 'cpu', device: 'CPU, pure JavaScript', reason: 'asked for', gpu: false, heapLimit: null });
  assert.deepEqual(cpu.lines, ['backend cpu: CPU, pure JavaScript (asked for)']);
  assert.equal(tf.getBackend(), 'cpu');
  assert.equal(activeBackend(), cpu.info);
  // production mode: tfjs's debug checks and its banners off
  assert.equal(tf.env().getBool('PROD'), true);

  const native = await init('native', { quiet: true });
  assert.deepEqual(native.lines, [], 'quiet: nothing logged');
  const { blas, threads } = registerNativeBackend()!;
  assert.deepEqual(native.info, {
    name: 'native',
    requested: 'native',
    device: `CPU, moco3 native kernels (${blas}, ${threads} thread${threads === 1 ? '' : 's'})`,
    reason: 'moco3 native kernels are built',
    gpu: false,
    heapLimit: null,
  });
  assert.equal(tf.getBackend(), 'native');
  assert.equal(activeBackend(), native.info);

  const wasm = await init('wasm');
  assert.equal(tf.getBackend(), 'wasm');
  // the heap the step's out-of-memory message names (src/train/loop.ts)
  assert.equal(wasm.info.heapLimit, 4 * 2 ** 30);
  assert.deepEqual([wasm.info.name, wasm.info.reason, wasm.info.gpu], ['wasm', 'asked for', false]);
  assert.deepEqual(wasm.lines, [backendLine(wasm.info)]);
  assert.equal(backendLine(wasm.info), 'backend wasm: CPU, WebAssembly (XNNPACK, SIMD, 1 thread) (asked for)');
});

test('auto where no GPU device node exists: the native kernels, and the reason says so (no GPU device named)', async () => {
  const auto = await init('auto', { gpuNodes: [] });
  assert.equal(auto.info.name, 'native');
  assert.equal(auto.info.requested, 'auto');
  assert.equal(auto.info.reason, 'moco3 native kernels are built');
  assert.equal(auto.info.gpu, false);
  assert.deepEqual(auto.lines, [backendLine(auto.info)]);
  assert.equal(tf.getBackend(), 'native');
});

test('an unknown backend name is a BackendError naming the choices', async () => {
  const before = activeBackend();
  await assert.rejects(
    initBackend('metal' as BackendName, { quiet: true }),
    (e: Error) => e instanceof BackendError && e.message === "unknown backend 'metal' (expected one of auto, tensorflow, webgpu, native, wasm, cpu)",
  );
  assert.equal(activeBackend(), before, 'the active backend is the one before');
});

test("webgpu asked for where Dawn has no adapter to train on (its null backend, among other flags) is a BackendError saying why, and to run doctor", async () => {
  const was = process.env.MOCO3_DAWN_FLAGS;
  // two of Dawn's flags, each passed as its own
  process.env.MOCO3_DAWN_FLAGS = 'backend=null,enable-dawn-features=allow_unsafe_apis';
  try {
    await assert.rejects(
      initBackend('webgpu', { quiet: true }),
      (e: Error) =>
        e instanceof BackendError &&
        e.message ===
          "backend 'webgpu' asked for, but Dawn's null backend (MOCO3_DAWN_FLAGS=backend=null,enable-dawn-features=allow_unsafe_apis) runs no work: it is no adapter to train on (run `moco3 doctor`)",
    );
  } finally {
    if (was === undefined) delete process.env.MOCO3_DAWN_FLAGS;
    else process.env.MOCO3_DAWN_FLAGS = was;
  }
});

test("setBackendSaying: a backend that fails to start says its error's first line, and console.warn and PROD are as they were", async () => {
  await tf.setBackend('cpu');
  tf.registerBackend('moco3-test-broken', () => {
    throw new Error('no device here\nat some place');
  }, 0);
  try {
    const warn = console.warn;
    for (const prod of [true, false]) {
      tf.env().set('PROD', prod);
      assert.equal(await setBackendSaying('moco3-test-broken'), 'Error: no device here');
      assert.equal(console.warn, warn, 'console.warn restored');
      assert.equal(tf.env().getBool('PROD'), prod, 'PROD restored');
    }
    assert.equal(await setBackendSaying('cpu'), null);
    assert.equal(tf.getBackend(), 'cpu');
  } finally {
    tf.env().set('PROD', true);
    tf.removeBackend('moco3-test-broken');
  }
});

test('shutdown hooks: each runs once, in order, and one that throws does not keep the others from running', () => {
  const ran: string[] = [];
  onShutdown(() => ran.push('a'));
  onShutdown(() => {
    ran.push('b');
    throw new Error('b failed');
  });
  onShutdown(() => ran.push('c'));
  runShutdown();
  assert.deepEqual(ran, ['a', 'b', 'c']);
  runShutdown();
  assert.deepEqual(ran, ['a', 'b', 'c'], 'a second shutdown runs none again');
});
