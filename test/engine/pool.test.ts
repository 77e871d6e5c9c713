/**
 * The native kernels' thread pool (native/src/pool.h) under stress: native/test/pool_stress.cc runs
 * back-to-back jobs with threads stalled where the OS may deschedule them, and counts chunks run twice,
 * chunks missing when run() returned, chunks running after it returned, and chunks run on another job's
 * context. Any of these let a kernel return while a worker still writes through its stack frame (the
 * segmentation faults seen in long runs on busy machines). Needs g++, as the addon's build does. And the
 * addon's own pool: as many threads as the cores the process may use, and as many as the system gives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/tmp.ts';

test('thread pool: every chunk runs once, on its own job, before run() returns, with threads stalled at the race points', () => {
  const dir = tempDir('moco3-pool-');
  try {
    const exe = join(dir, 'pool_stress');
    const cxx = process.env.CXX ?? 'g++';
    const build = spawnSync(cxx, ['-O2', '-std=gnu++17', '-pthread', '-I', 'native/src', 'native/test/pool_stress.cc', '-o', exe], { encoding: 'utf8' });
    assert.equal(build.status, 0, `${cxx} failed (it builds the native addon too): ${build.error?.message ?? build.stderr}`);
    const run = spawnSync(exe, ['2'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.status, 0, run.stderr);
    const n = (k: string) => Number(new RegExp(`\\b${k} (\\d+)`).exec(run.stdout)?.[1] ?? NaN);
    // enough jobs ran on both threads for the stalls to line up with a job boundary many times
    assert.ok(n('jobs') >= 2000, run.stdout);
    assert.ok(n('parallel') >= n('jobs') / 2, run.stdout);
    for (const k of ['twice', 'missing', 'late', 'wrong_context']) assert.equal(n(k), 0, `${k}: ${run.stdout}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const addon = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'Release', 'moco3_native.node');
/**
 * The addon's threads, and a parallel kernel's result (exp of a million values), in a process started by
 * `sh` with `prefix`; `env` adds to this process's environment, less its MOCO3_THREADS.
 */
function poolRun(prefix: string, env: Record<string, string> = {}): { threads: number; sum: number } {
  const js = `const a = require(${JSON.stringify(addon)}); const x = new Float32Array(1 << 20).map((_, i) => (i % 1000) / 1000); ` +
    'const o = new Float32Array(x.length); a.unary(0, x, o, 0); let s = 0; for (const v of o) s += v; ' +
    'console.log(JSON.stringify({ threads: a.info().threads, sum: s }));';
  const { MOCO3_THREADS: _, ...base } = process.env;
  void _;
  const r = spawnSync('sh', ['-c', `${prefix} "$NODE" -e "$JS"`], { env: { ...base, NODE: process.execPath, JS: js, ...env }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${prefix}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test("the addon's pool: one thread per core the process may use; fewer threads than MOCO3_THREADS asks, when the system gives fewer", () => {
  const plain = poolRun('');
  // taskset: one core allowed (a Slurm task's or a container's cpuset alike), where the machine has more
  assert.equal(poolRun('taskset -c 0').threads, 1);
  assert.equal(poolRun('taskset -c 0', { MOCO3_THREADS: '3' }).threads, 3, 'MOCO3_THREADS says how many, whatever the cores');
  // as moco3's check of the variable reads it (a trailing space from a script)
  assert.equal(poolRun('taskset -c 0', { MOCO3_THREADS: '3 ' }).threads, 3);
  // 256 threads' stacks do not fit 1.5 GB of address space: the process runs with the threads it got (it was killed)
  const limited = poolRun('ulimit -s 8192; ulimit -v 1500000;', { MOCO3_THREADS: '256' });
  assert.ok(limited.threads > 1 && limited.threads < 256, `threads ${limited.threads}`);
  assert.equal(limited.sum, plain.sum, 'the same result');
});
