/**
 * bench/native-profile.ts, the per-backend speed of the training step for comparing backends: ms/step is the
 * median of the timed steps, the warmup steps left out (its clock scripted through a module loaded first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nativeStatus } from '../../src/engine/native.ts';
import { tempDir } from '../helpers/tmp.ts';

const repo = join(import.meta.dirname, '..', '..');

test('native-profile: ms/step is the median of the timed steps only (the two warmup steps left out), img/s and the fastest step from them', () => {
  assert.ok(nativeStatus().built, 'the native addon is built (node scripts/build-native.mjs)');
  // the script's clock: two warmup steps' starts (its default --warmup), then four timed steps of 40, 10, 20 and
  // 90 ms (median 30; the mean would be 40, and with a warmup step five steps); tfjs's own reads go through
  const clock = join(tempDir('moco3-native-profile-'), 'clock.mjs');
  writeFileSync(
    clock,
    [
      'const seq = [0, 5, 100, 140, 200, 210, 300, 320, 400, 490];',
      'let i = 0;',
      'const real = performance.now.bind(performance);',
      "performance.now = () => (/bench\\/native-profile\\.ts/.test(new Error().stack.split('\\n')[2] ?? '') ? seq[i++] : real());",
      '',
    ].join('\n'),
  );
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', clock, join(repo, 'bench', 'native-profile.ts'), '--backends', 'native', '--arch', 'vit-test', '--batch', '2', '--steps', '4', '--threads', '1'], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  // 2 images / 30 ms = 66.7 img/s
  assert.match(r.stdout, /^native  \(1 threads\) vit-test batch 2: 30 ms\/step, 66\.7 img\/s \[min 10 ms, .*, 4 steps, load [\d.]+\]$/m);
});
