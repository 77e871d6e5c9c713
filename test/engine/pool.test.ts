/**
 * The native kernels' thread pool (native/src/pool.h) under stress: native/test/pool_stress.cc runs
 * back-to-back jobs with threads stalled where the OS may deschedule them, and counts chunks run twice,
 * chunks missing when run() returned, chunks running after it returned, and chunks run on another job's
 * context. Any of these let a kernel return while a worker still writes through its stack frame (the
 * segmentation faults seen in long runs on busy machines). Needs g++, as the addon's build does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
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
