/**
 * The webgpu backend's choice and lifetime: software adapters are recognised and `auto` does not take
 * them, `moco3 doctor` names the adapter, and a CLI run on webgpu ends by itself (Dawn's device would keep
 * Node alive) with its GPU memory reported. On CI the adapter is Mesa's lavapipe (installed by .ci/run).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { summarizeAdapter, describeAdapter, describeLimits, readBack } from '../../src/engine/webgpu.ts';
import { gpuDeviceNodes } from '../../src/engine/backend.ts';
import { packingDefault } from '../../src/engine/webgpu-kernels.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** An ES module of moco3's sources run in a child (its own process: a device or fd 2 it changes stays there). */
const moduleScript = (script: string, timeout: number) =>
  spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout });
/**
 * A module script on the webgpu backend: tf, the named exports of src/engine/webgpu.ts, `backendInfo` (what
 * initBackend returned), then `body`; it exits 0 at its end.
 */
const onWebGpu = (names: string, body: string[]) =>
  [
    "import * as tf from '@tensorflow/tfjs-core';",
    "import { initBackend } from './src/engine/backend.ts';",
    `import { ${names} } from './src/engine/webgpu.ts';`,
    "const backendInfo = await initBackend('webgpu', { quiet: true });",
    ...body,
    'process.exit(0);',
  ].join('\n');
const moco3 = (args: string[], timeout: number, env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [join(root, 'bin', 'moco3.js'), ...args], { cwd: root, encoding: 'utf8', timeout, env: { ...process.env, ...env } });

test('adapters: lavapipe, llvmpipe and SwiftShader are software, an NVIDIA GPU is hardware', () => {
  const limits = { maxBufferSize: 2 ** 32 - 1, maxStorageBufferBindingSize: 2 ** 31 };
  const lavapipe = summarizeAdapter(
    { vendor: 'mesa', architecture: '', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7', isFallbackAdapter: false },
    limits,
    ['timestamp-query', 'depth-clip-control'],
  );
  assert.equal(lavapipe.software, true);
  assert.deepEqual(lavapipe.features, ['timestamp-query']);
  assert.equal(lavapipe.limits.maxStorageBufferBindingSize, 2 ** 31);
  assert.equal(summarizeAdapter({ vendor: 'google', architecture: '', device: 'SwiftShader Device (Subzero)', description: '' }, limits, []).software, true);
  assert.equal(summarizeAdapter({ vendor: 'x', architecture: 'y', isFallbackAdapter: true }, limits, []).software, true);
  const h200 = summarizeAdapter({ vendor: 'nvidia', architecture: 'hopper', device: 'NVIDIA H200', description: 'NVIDIA 580.65.06' }, limits, []);
  assert.equal(h200.software, false);
  assert.match(describeAdapter(h200), /^vendor nvidia, architecture hopper, device NVIDIA H200, driver NVIDIA 580\.65\.06: hardware$/);
});

test("an adapter whose architecture is 'software' is software; its features are those the backend uses; its limits in MiB and KiB", () => {
  assert.equal(summarizeAdapter({ vendor: 'acme', architecture: 'software', device: 'Acme GPU' }, {}, []).software, true);
  const a = summarizeAdapter(
    { vendor: 'amd', architecture: 'rdna-3', device: 'Radeon', description: '' },
    {
      maxBufferSize: 2 ** 31,
      maxStorageBufferBindingSize: 2 ** 27,
      maxComputeWorkgroupStorageSize: 32768,
      maxComputeInvocationsPerWorkgroup: 1024,
      maxComputeWorkgroupSizeX: 512,
      maxComputeWorkgroupsPerDimension: 65535,
    },
    ['texture-compression-bc', 'timestamp-query', 'subgroups', 'shader-f16', 'depth-clip-control'],
  );
  assert.equal(a.software, false);
  assert.deepEqual(a.features, ['shader-f16', 'subgroups', 'timestamp-query']);
  assert.equal(a.limits.maxComputeWorkgroupSizeZ, 0, 'a limit the adapter does not report');
  assert.equal(
    describeLimits(a),
    'buffer 2048 MiB, storage binding 128 MiB, workgroup 1024 invocations (x 512), 32 KiB shared, 65535 groups/dim; features shader-f16, subgroups, timestamp-query',
  );
  assert.equal(describeLimits({ ...a, features: [] }), 'buffer 2048 MiB, storage binding 128 MiB, workgroup 1024 invocations (x 512), 32 KiB shared, 65535 groups/dim');
});

test("readBack off webgpu passes a read's error on as it is: an empty message or an AbortError there is no GPU's", async () => {
  const empty = new Error('');
  await assert.rejects(readBack(Promise.reject(empty), 'a test'), (e) => e === empty);
  const abort = Object.assign(new Error('aborted'), { name: 'AbortError' });
  await assert.rejects(readBack(Promise.reject(abort), 'a test'), (e) => e === abort);
  assert.equal(await readBack(Promise.resolve(5), 'a test'), 5);
});

test('doctor names the WebGPU adapter; auto declines a software one; a data directory that is a file is said, no fetch offered into it', () => {
  const file = join(tempDir('moco3-doctor-'), 'data');
  writeFileSync(file, '');
  const r = moco3(['doctor'], 120_000, { MOCO3_DATA: file });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^webgpu: @tensorflow\/tfjs-backend-webgpu 4\.22\.0 \+ Dawn \(webgpu 0\.6\.\d+\): adapter vendor \S+, .*: (software|hardware)/m);
  assert.match(r.stdout, /^ {2}limits: buffer \d+ MiB, storage binding \d+ MiB, workgroup \d+ invocations/m);
  const software = /adapter .*: software/.test(r.stdout);
  assert.match(r.stdout, packingDefault(software) ? /^ {2}optimizer updates: one dispatch per parameter group/m : /^ {2}optimizer updates: one dispatch per parameter( \(|$)/m);
  if (/adapter .*: software/.test(r.stdout)) assert.match(r.stdout, /^--backend auto takes: (?!webgpu)/m);
  // a dataset found is said to be present, not checked: its contents are data info's to check
  assert.match(r.stdout, /^fashion-mnist: (\S+ \(files present; moco3 data info fashion-mnist checks their contents\)|not found — )/m);
  assert.match(r.stdout, new RegExp(`^cifar10: not found in ${file} — ${file} is a file, not a folder: set \\$MOCO3_DATA to a folder, then moco3 data fetch cifar10$`, 'm'));
});

test("doctor's stderr is free of Dawn's 'artificially reduced' limit warnings; other stderr output passes through", () => {
  const r = moco3(['doctor'], 120_000);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /artificially reduced/);
  // the same probe without the native addon's redirect: the driver here does make Dawn warn, so the filter is what removes it
  const raw = spawnSync(process.execPath, [join(root, 'bin', 'moco3.js'), 'doctor'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, MOCO3_NATIVE: '0' },
  });
  assert.equal(raw.status, 0, raw.stderr);
  if (/vendor mesa/.test(raw.stdout)) assert.match(raw.stderr, /artificially reduced from \d+ to 16/);
  // what else reaches fd 2 while it is held comes out afterwards, in order
  const script = [
    "import { writeSync } from 'node:fs';",
    "import { withoutDawnNoise } from './src/engine/webgpu.ts';",
    "const v = withoutDawnNoise(() => { writeSync(2, 'kept 1\\nWarning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit.\\nkept 2\\n'); return 7; });",
    "writeSync(2, `after ${v}\\n`);",
    // only Dawn's own warning goes; a line that merely quotes it stays, and nothing written adds nothing
    "withoutDawnNoise(() => writeSync(2, 'kept 3: Warning: x artificially reduced from 1 to 2\\n'));",
    'withoutDawnNoise(() => 0);',
    "writeSync(2, 'end\\n');",
  ].join('\n');
  const p = moduleScript(script, 60_000);
  assert.equal(p.status, 0, p.stderr);
  assert.equal(p.stderr, 'kept 1\nkept 2\nafter 7\nkept 3: Warning: x artificially reduced from 1 to 2\nend\n');
});

test('bench --backend webgpu --profile runs on the adapter, reports GPU memory and kernel times, and the process ends by itself', () => {
  const args = ['bench', '--backend', 'webgpu', '--preset', 'smoke', '--set', 'model.arch=vit-test', '--set', 'data.image_size=8'];
  args.push('--set', 'moco.proj_hidden=16', '--set', 'moco.proj_dim=8', '--set', 'moco.pred_hidden=16', '--set', 'train.micro_batch=4');
  args.push('--data', 'synthetic', '--batch', '8', '--steps', '1', '--warmup', '1', '--json', '--profile');
  const r = moco3(args, 240_000);
  assert.equal(r.signal, null, `killed by ${r.signal}: the process did not end by itself`);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    backend: string;
    device: string;
    gpu_peak_mb: number | null;
    webgpu_packed: boolean | null;
    num_tensors_start: number;
    num_tensors_end: number;
    profile: { kernel: string; calls: number; ms: number }[];
    profile_timer: string;
  };
  assert.equal(out.backend, 'webgpu');
  assert.match(out.device, /^WebGPU \(Dawn\): vendor /);
  assert.ok(out.gpu_peak_mb !== null && out.gpu_peak_mb > 0, `gpu_peak_mb ${out.gpu_peak_mb}`);
  assert.equal(out.num_tensors_end, out.num_tensors_start, 'tensor count flat across steps');
  // optimizer updates packed per group on a hardware adapter, per parameter on a software one
  assert.equal(out.webgpu_packed, packingDefault(/: software/.test(out.device)), out.device);
  // --profile: the step's kernels by name, timed on the GPU where the adapter has timestamp-query
  const mm = out.profile.find((k) => k.kernel === 'BatchMatMul');
  assert.ok(mm && mm.calls > 0, 'BatchMatMul in the profile');
  // moco3's kernels run in the step (src/engine/webgpu-kernels.ts)
  for (const k of ['Moco3GeluFwd', 'Moco3LayerNormBwd', 'Moco3AttentionFwd', 'Moco3AttentionBwd', 'Moco3BatchNormFwd', 'Moco3ColumnSum', 'Moco3Ema', 'Moco3AdamW', 'Moco3GradStats']) {
    assert.ok(out.profile.some((p) => p.kernel === k), `${k} in the profile`);
  }
  assert.match(out.profile_timer, /^(GPU timestamp-query|none: )/);
  if (out.profile_timer === 'GPU timestamp-query') assert.ok(out.profile.reduce((a, k) => a + k.ms, 0) > 0, 'kernel times');
});

test('doctor --replay: two steps on webgpu and on the CPU agree, as JSON', () => {
  const r = moco3(['doctor', '--replay'], 240_000);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; whole_batch: { worst: Record<string, number> }; micro_batch_4: { worst: Record<string, number> } };
  assert.equal(out.ok, true);
  for (const part of [out.whole_batch, out.micro_batch_4]) {
    assert.deepEqual(Object.keys(part.worst).sort(), ['grad1', 'loss', 'param', 'slot', 'state']);
    for (const [k, v] of Object.entries(part.worst)) assert.ok(v >= 0 && v <= 1e-3, `${k}: ${v}`);
  }
});

test('GPU device nodes: DRM render nodes and /dev/nvidiaN count; control nodes, cards and other systems do not', () => {
  const dev = tempDir('moco3-dev-');
  assert.deepEqual(gpuDeviceNodes(dev, 'linux'), []);
  mkdirSync(join(dev, 'dri'));
  for (const f of ['dri/card0', 'nvidiactl', 'nvidia-uvm', 'nvidia-caps', 'null']) writeFileSync(join(dev, f), '');
  assert.deepEqual(gpuDeviceNodes(dev, 'linux'), []);
  for (const f of ['dri/renderD128', 'nvidia1', 'nvidia0']) writeFileSync(join(dev, f), '');
  assert.deepEqual(gpuDeviceNodes(dev, 'linux'), [join(dev, 'dri', 'renderD128'), join(dev, 'nvidia0'), join(dev, 'nvidia1')]);
  // other systems have no device nodes to go by (Metal, D3D12): null, and auto asks Dawn there
  for (const platform of ['darwin', 'win32', 'freebsd'] as const) assert.equal(gpuDeviceNodes(dev, platform), null, platform);
});

test('auto loads Dawn only where a GPU device node exists; with one it still declines the software adapter', () => {
  const probe = (nodes: string) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'test', 'engine', 'fixtures', 'auto-dawn.ts'), nodes], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { backend: string; dawn: boolean; reason: string };
  };
  const none = probe('');
  assert.deepEqual([none.backend, none.dawn], ['native', false]);
  assert.doesNotMatch(none.reason, /GPU device/);
  // a device node (here a made-up one): Dawn is asked, finds this machine's software adapter, and auto goes
  // on, saying why the GPU was not used
  const one = probe('/dev/dri/renderD128');
  assert.deepEqual([one.backend, one.dawn], ['native', true]);
  assert.match(one.reason, /; this machine has a GPU device \(\/dev\/dri\/renderD128\), but webgpu declined: the only WebGPU adapter is a software one \(vendor /);
  // and where to point Dawn for the GPU's own driver
  assert.match(one.reason, /software \(a CPU emulating a GPU\)\); for the GPU itself Dawn needs its Vulkan driver \(on Linux: the GPU vendor's Vulkan ICD, e\.g\. VK_DRIVER_FILES=\S+nvidia_icd\.json, .*NVIDIA_DRIVER_CAPABILITIES must include graphics\)$/);
  // a system with no device nodes to go by (macOS, Windows: null): Dawn is asked all the same, and the
  // software adapter it declines there is no GPU's to speak of
  const unknown = probe('unknown');
  assert.deepEqual([unknown.backend, unknown.dawn], ['native', true]);
  assert.equal(unknown.reason, 'moco3 native kernels are built');
});

test("auto takes a hardware WebGPU adapter where a GPU device node exists (this machine's adapter, presented as an NVIDIA GPU) and computes on it", () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'test', 'engine', 'fixtures', 'hardware-dawn.ts'), 'auto'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)!), {
    name: 'webgpu',
    requested: 'auto',
    device: 'WebGPU (Dawn): vendor nvidia, architecture hopper, device NVIDIA H200, driver NVIDIA 580.65.06: hardware',
    reason: 'a hardware WebGPU adapter is present',
    gpu: true,
    heapLimit: null,
    value: 2,
  });
});

test('a read-back that fails on a device gone (destroyed here, as a lost one fails) is a WebGpuDeviceError that says so, not an AbortError of no message', () => {
  const script = onWebGpu('readBack', [
    'const x = tf.add(tf.ones([1000]), 2);',
    // an error that is not the device's passes as it is
    'const y = tf.ones([3]); y.dispose();',
    "try { await readBack(y.data(), 'a test'); } catch (e) { console.log(`disposed: ${e.name}`); }",
    'tf.backend().device.destroy();',
    "try { await readBack(x.data(), 'a test'); console.log('no error'); } catch (e) { console.log(`${e.name} | ${e.message}`); }",
  ]);
  const p = moduleScript(script, 120_000);
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /^WebGpuDeviceError \| webgpu: a read from the GPU failed during a test \(AbortError\): the device may have been lost$/m);
  assert.match(p.stdout, /^disposed: Error$/m);
});

test('the kNN evaluation and the linear probe read back through readBack: a device gone is said so, not an AbortError of no message', () => {
  const script = onWebGpu('closeWebGpu', [
    "const { knnScores } = await import('./src/eval/knn.ts');",
    "const { cachedSource, evaluateProbe, LinearHead, trainLinearProbe } = await import('./src/eval/linear.ts');",
    'const bank = tf.randomNormal([20, 4]); const queries = tf.randomNormal([5, 4]);',
    'const head = new LinearHead(4, 3, 0);',
    'tf.backend().device.destroy();',
    "try { await knnScores(bank, new Int32Array(20), queries, { k: 3, t: 0.1, numClasses: 2 }); console.log('knn: no error'); } catch (e) { console.log(`knn: ${e.name} | ${e.message}`); }",
    "try { await evaluateProbe(head, queries, new Int32Array(5), 3); console.log('probe: no error'); } catch (e) { console.log(`probe: ${e.name} | ${e.message}`); }",
    "try { await trainLinearProbe(cachedSource(queries, new Int32Array(5)), 4, { epochs: 1, batchSize: 5, baseLr: 0.1, numClasses: 3, seed: 0 }); console.log('training: no error'); } catch (e) { console.log(`training: ${e.name} | ${e.message}`); }",
  ]);
  const p = moduleScript(script, 120_000);
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /^knn: WebGpuDeviceError \| webgpu: a read from the GPU failed during the kNN evaluation \(AbortError\): the device may have been lost$/m);
  assert.match(p.stdout, /^probe: WebGpuDeviceError \| webgpu: a read from the GPU failed during the linear probe's evaluation \(AbortError\): the device may have been lost$/m);
  assert.match(p.stdout, /^training: WebGpuDeviceError \| webgpu: a read from the GPU failed during the linear probe \(AbortError\): the device may have been lost$/m);
});

test("webgpu's device holds the adapter's own limits and its timestamp-query; registered again after closeWebGpu it gets a device (an adapter makes one: it is asked for again)", () => {
  const script = onWebGpu('closeWebGpu, registerWebGpuBackend, webgpuAdapter, webgpuInUse, WEBGPU_LIMITS', [
    'const ad = await webgpuAdapter(); const dev = tf.backend().device;',
    'console.log(`info: ${backendInfo.reason}, gpu ${backendInfo.gpu}, software ${ad.software}`);',
    'console.log(`limits: ${JSON.stringify(WEBGPU_LIMITS.filter((k) => dev.limits[k] !== ad.limits[k]))}`);',
    "console.log(`timestamp-query: ${ad.features.includes('timestamp-query')} ${dev.features.has('timestamp-query')}`);",
    'const a = tf.add(tf.ones([4]), 1); console.log(`first: ${(await a.data())[0]}`);',
    'closeWebGpu();',
    'const again = await registerWebGpuBackend({ allowSoftware: true });',
    "console.log(`again: ${typeof again === 'string' ? again : 'ok'}`);",
    'const b = tf.add(tf.ones([4]), 2); console.log(`second: ${(await b.data())[0]}`);',
    // the CLI's end (src/cli/main.ts) destroys the device, which Dawn may otherwise keep the process alive for
    "const { runShutdown } = await import('./src/engine/shutdown.ts');",
    'runShutdown(); console.log(`in use after shutdown: ${webgpuInUse()}`);',
  ]);
  const p = moduleScript(script, 120_000);
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /^first: 2\nagain: ok\nsecond: 3\nin use after shutdown: false$/m);
  // the default device allows 128 MiB bindings and no timestamps: the adapter here offers more, and has them
  assert.match(p.stdout, /^limits: \[\]$/m);
  assert.match(p.stdout, /^timestamp-query: (true true|false false)$/m);
  // asked for by name; a GPU executes the kernels only where the adapter is hardware
  assert.match(p.stdout, /^info: asked for, gpu (true, software false|false, software true)$/m);
});

test("Dawn's null backend is no adapter (it runs nothing: a run on it 'completed' with garbage); flags that chose another backend are named, not a Vulkan driver", () => {
  // the sources' doctor (bin/moco3.js runs dist/, which npm test does not build)
  const script = `const { main } = await import(${JSON.stringify(join(root, 'src/cli/main.ts'))}); process.exitCode = await main(process.argv.slice(1));`;
  const doctor = (flags: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, 'doctor'], { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, MOCO3_DAWN_FLAGS: flags } });
  const nul = doctor('backend=null');
  assert.equal(nul.status, 0, nul.stderr);
  assert.match(nul.stdout, /^webgpu: .*: no adapter — Dawn's null backend \(MOCO3_DAWN_FLAGS=backend=null\) runs no work: it is no adapter to train on$/m);
  const gl = doctor('backend=opengl');
  assert.equal(gl.status, 0, gl.stderr);
  assert.match(gl.stdout, /^webgpu: .*: no adapter — Dawn found no WebGPU adapter with MOCO3_DAWN_FLAGS=backend=opengl: unset MOCO3_DAWN_FLAGS or give backend=vulkan$/m);
});

test('the GPU buffers TensorFlow.js keeps for reuse are given back between runs, and the pool goes on working after', () => {
  const script = onWebGpu('releaseFreeGpuBuffers', [
    'const gpu = () => tf.memory().numBytesAllocatedInGPU;',
    'const pool = tf.backend().bufferManager;',
    'for (const n of [123457, 54321]) { const a = tf.add(tf.ones([n]), 1); await a.data(); a.dispose(); }',
    'const before = gpu();',
    'const kept = pool.getNumFreeBuffers();',
    'const freed = releaseFreeGpuBuffers();',
    'const after = gpu();',
    'const left = pool.getNumFreeBuffers();',
    // later tensors compute, and their buffers, released, are kept for reuse again (not dropped untracked)
    'let v = 0;',
    'for (const n of [777, 4321]) { const b = tf.add(tf.ones([n]), 2); v = (await b.data())[0]; b.dispose(); }',
    'console.log(JSON.stringify({ before, kept, freed, after, left, v, again: pool.getNumFreeBuffers() }));',
  ]);
  const p = moduleScript(script, 120_000);
  assert.equal(p.status, 0, p.stderr);
  const r = JSON.parse(p.stdout.trim().split('\n').at(-1)!);
  assert.ok(r.kept > 0, p.stdout);
  assert.ok(r.freed >= 4 * (123457 + 54321), p.stdout);
  assert.equal(r.after, r.before - r.freed, p.stdout);
  assert.equal(r.left, 0);
  assert.equal(r.v, 3);
  assert.ok(r.again > 0, p.stdout);
});

test("a training run on webgpu checks its weights where a checkpoint or kNN uses them: a sane lr completes, an update that overflows is a divergence at its step", () => {
  const dir = tempDir('moco3-webgpu-train-');
  const train = (out: string, lr: string) =>
    moco3(['train', '--preset', 'smoke', '--backend', 'webgpu', '-q', '--out', join(dir, out), ...['data.train_size=256', 'data.test_size=64', 'train.max_steps=4', 'train.checkpoint_every=1', 'train.knn_every=2', 'eval.linear.enabled=false', `optim.base_lr=${lr}`].flatMap((x) => ['--set', x])], 300_000);
  const ok = train('sane', '1.5e-4');
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^completed 4\/4 steps in /);
  // base lr 1e40: step 2's loss is finite and its update leaves non-finite weights
  const over = train('over', '1e40');
  assert.equal(over.status, 0, over.stderr);
  assert.match(over.stdout, /^diverged 2\/4 steps in .*diverged at step 2\n/);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'over', 'checkpoints', 'last.json'), 'utf8')).step, 1);
});
