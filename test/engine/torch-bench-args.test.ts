/**
 * bench/native-torch.py, PyTorch's side of the benchmark: its flags are checked before torch loads (one line
 * naming the flag, exit 2, as moco3's own), so this needs python3 only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildConfig } from '../../src/config/load.ts';
import { modelConfigOf } from '../../src/components/index.ts';
import { modelConfig } from '../../src/model/archs.ts';
import { tempDir } from '../helpers/tmp.ts';

const script = join(import.meta.dirname, '..', '..', 'bench', 'native-torch.py');

test('native-torch.py: a bad flag is one line naming it, exit 2 (they were tracebacks, exit 1, or ran on the CPU for --device cpux)', () => {
  for (const [args, said] of [
    [['--steps', '0'], 'argument --steps: expected a whole number >= 1, got 0'],
    [['--warmup', '-1'], 'argument --warmup: expected a whole number >= 0, got -1'],
    [['--batch', 'abc'], "argument --batch: expected batch sizes such as 64 or 64,128, got 'abc'"],
    [['--batch', '64,1'], "argument --batch: expected batch sizes >= 2, got '64,1'"],
    [['--threads', '0'], 'argument --threads: expected a whole number >= 1, got 0'],
    [['--blas-threads', 'two'], "argument --blas-threads: expected a whole number, got 'two'"],
    [['--device', 'cpux'], "argument --device: expected cpu, cuda or cuda:N, got 'cpux'"],
  ] as const) {
    const p = spawnSync('python3', [script, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(p.status, 2, `${args.join(' ')}: ${p.stderr}`);
    const lines = p.stderr.trim().split('\n');
    assert.equal(lines.at(-1), `native-torch.py: error: ${said}`, args.join(' '));
    assert.ok(!/Traceback/.test(p.stderr), p.stderr);
  }
});

/**
 * The flags as main() has them once parsed, and the thread variables it sets before torch loads: a stand-in
 * `torch` package on PYTHONPATH reads them from main()'s frame at its import and ends the run there.
 */
function parsedFlags(args: string[], taskset: string[] = []): { args: Record<string, unknown>; env: Record<string, string | null>; models: Record<string, Record<string, unknown>> } {
  const stub = tempDir('moco3-torch-stub-');
  mkdirSync(join(stub, 'torch'));
  writeFileSync(
    join(stub, 'torch', '__init__.py'),
    [
      'import json, os, sys',
      'f = sys._getframe(1)',
      "while f.f_code.co_name != 'main':",
      '    f = f.f_back',
      "env = {k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')}",
      "print(json.dumps({'args': vars(f.f_locals['a']), 'env': env, 'models': f.f_globals['MODELS']}))",
      'sys.exit(0)',
      '',
    ].join('\n'),
  );
  const cmd = taskset.length ? 'taskset' : 'python3';
  const p = spawnSync(cmd, [...taskset, ...(taskset.length ? ['python3'] : []), script, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, PYTHONPATH: stub, OMP_NUM_THREADS: '', OPENBLAS_NUM_THREADS: '', MKL_NUM_THREADS: '' },
  });
  assert.equal(p.status, 0, p.stderr);
  return JSON.parse(p.stdout);
}

test('native-torch.py defaults: 5 timed steps after 2 untimed, batch 64, the micro model on the CPU, OpenMP on the cores this process may use and one OpenBLAS thread', () => {
  // one core allowed (taskset -c 0): PyTorch's threads are those, not the machine's
  const d = parsedFlags([], ['-c', '0']);
  assert.deepEqual(d.args, { batch: [64], steps: 5, warmup: 2, threads: 1, blas_threads: 1, device: 'cpu', model: 'micro', tf32: false, json: false });
  assert.deepEqual(d.env, { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' });
});

test('native-torch.py: the smallest values allowed are taken (--steps 1, --warmup 0, --batch 2), and the thread flags reach OpenMP and OpenBLAS', () => {
  const d = parsedFlags(['--steps', '1', '--warmup', '0', '--batch', '2,8', '--threads', '3', '--blas-threads', '2', '--device', 'cuda:1', '--model', 'gpu', '--tf32', '--json']);
  assert.deepEqual(d.args, { batch: [2, 8], steps: 1, warmup: 0, threads: 3, blas_threads: 2, device: 'cuda:1', model: 'gpu', tf32: true, json: true });
  assert.deepEqual(d.env, { OMP_NUM_THREADS: '3', OPENBLAS_NUM_THREADS: '2', MKL_NUM_THREADS: '2' });
});

test("native-torch.py's models are those of `moco3 bench --preset cpu`, `--preset gpu` and bench/native-profile.ts", () => {
  const { models } = parsedFlags([]);
  const asTorch = (m: ReturnType<typeof modelConfigOf>) => ({
    img: m.imageSize,
    patch: m.patchSize,
    dim: m.dim,
    depth: m.depth,
    heads: m.heads,
    mlp: m.mlpRatio,
    proj: [m.projHidden, m.projDim],
    pred: m.predHidden,
    frozen: m.patchProj === 'frozen',
  });
  assert.deepEqual(models.cpu, asTorch(modelConfigOf(buildConfig({ preset: 'cpu', sets: [] }))));
  assert.deepEqual(models.gpu, asTorch(modelConfigOf(buildConfig({ preset: 'gpu', sets: [] }))));
  // bench/native-profile.ts: vit-micro with heads 256 -> 64
  assert.deepEqual(models.micro, asTorch(modelConfig('vit-micro', { projHidden: 256, projDim: 64, predHidden: 256 })));
});

/** A python3 with PyTorch: the one on the PATH, else the system's (where the script's header runs it). */
function pythonWithTorch(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    if (spawnSync(py, ['-c', 'import torch'], { timeout: 60_000 }).status === 0) return py;
  }
  return null;
}

test('native-torch.py on the CPU: ms/step is the median of the timed steps only, the untimed ones left out; img/s from it', () => {
  const python = pythonWithTorch();
  assert.ok(python, 'a python3 with PyTorch (Debian: python3-torch libopenblas0-pthread)');
  // its clock, scripted: the matmul check's start and end, one untimed step's start, then four timed steps of
  // 40, 10, 20 and 90 ms (median 30, where the mean would be 40 and the warmup step would make five)
  const clock = [0, 1, 5, 10, 10.04, 20, 20.01, 30, 30.02, 40, 40.09];
  const run = [
    'import json, runpy, sys, time',
    'seq = iter(json.loads(sys.argv[1]))',
    'def clock():',
    '    try:',
    '        return next(seq)',
    '    except StopIteration:',
    "        raise RuntimeError('the clock was read more often than scripted')",
    'time.perf_counter = clock',
    'sys.argv = sys.argv[2:]',
    "runpy.run_path(sys.argv[0], run_name='__main__')",
  ].join('\n');
  const p = spawnSync(python, ['-c', run, JSON.stringify(clock), script, '--batch', '2', '--steps', '4', '--warmup', '1', '--threads', '1'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(p.status, 0, p.stderr);
  const line = p.stdout.split('\n').find((l) => l.startsWith('torch   '));
  assert.ok(line, p.stdout);
  // 2 images / 30 ms = 66.7 img/s; the fastest step 10 ms
  assert.match(line, /^torch   \(1 threads, BLAS 1\) micro batch 2: 30 ms\/step, 66\.7 img\/s \[min 10 ms, .*, 4 steps, load /);
});
