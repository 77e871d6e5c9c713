/**
 * A checkpoint write that fails (a full disk): the previous checkpoint stays intact and last.json names
 * it, the run is marked failed with the reason in one line, and the same command with --resume finishes
 * the run once there is room again. As root (CI), the disk is a real small tmpfs filled while the run
 * pauses after a checkpoint; otherwise the write error is injected.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkCheckpoint } from '../../src/runfolder/resume.ts';
import { tinyTrainArgs } from '../helpers/tiny.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-diskfull-');
const mnt = join(root, 'disk');
mkdirSync(mnt);
let mounted = false;
if (process.getuid?.() === 0) {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = true;
  } catch {
    /* no mount in this container: the injected error below */
  }
}
after(() => {
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(root, { recursive: true, force: true });
});

const repo = join(import.meta.dirname, '..', '..');
const cli = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'cli.ts');
const TINY = tinyTrainArgs();

function run(args: string[], env: Record<string, string>, onPause?: () => void) {
  const marker = join(root, `.pause-${process.hrtime.bigint()}`);
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repo, env: { ...process.env, ...env, MOCO3_TEST_MARKER: marker }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const poll = setInterval(() => {
    if (!existsSync(marker)) return;
    rmSync(marker);
    onPause?.();
    writeFileSync(`${marker}.go`, '');
  }, 20);
  return new Promise<{ code: number | null; stderr: string }>((resolve) => {
    child.on('exit', (code) => {
      clearInterval(poll);
      rmSync(`${marker}.go`, { force: true });
      resolve({ code, stderr });
    });
  });
}

test(`a checkpoint write that fails (${mounted ? 'a full tmpfs' : 'an injected ENOSPC'}) keeps the previous checkpoint, marks the run failed, and --resume finishes it`, async () => {
  const out = join(mnt, 'run');
  const filler = join(mnt, 'filler');
  // after the checkpoints of steps 0 and 3 are complete, the disk is filled to a few pages
  const r = await run(
    ['train', ...TINY, '--out', out],
    mounted ? { MOCO3_TEST_PAUSE: 'ckpt-done:2' } : { MOCO3_TEST_WRITE_ERROR: 'ENOSPC:open:3:.model.safetensors.' },
    () => {
      const fs = statfsSync(mnt);
      writeFileSync(filler, Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - 12 * 1024)));
    },
  );
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('moco3: backend'));
  assert.equal(r.code, 1, r.stderr);
  assert.ok(lines.length <= 2, r.stderr);
  assert.match(lines[0]!, /could not write the checkpoint of step 6 \(ENOSPC: no space left on the disk\); the checkpoint of step 3 is intact: once the cause is gone, resume with --resume \(a sweep: run it again\)/);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
  const status = JSON.parse(readFileSync(join(out, 'status.json'), 'utf8'));
  assert.equal(status.status, 'failed');
  assert.match(status.error, /ENOSPC/);
  assert.equal(existsSync(join(out, 'summary.json')), false);
  const ckpts = join(out, 'checkpoints');
  assert.deepEqual(JSON.parse(readFileSync(join(ckpts, 'last.json'), 'utf8')), { step: 3, dir: 'step-0000003' });
  assert.equal(checkCheckpoint(join(ckpts, 'step-0000003')).step, 3);
  assert.deepEqual(readdirSync(ckpts).filter((d) => d.endsWith('.tmp')), [], 'no temporary folder left');

  // the cause gone, the same command with --resume finishes the run
  rmSync(filler, { force: true });
  const again = await run(['train', ...TINY, '--out', out, '--resume'], {});
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(readFileSync(join(out, 'status.json'), 'utf8')).status, 'completed');
  assert.equal(JSON.parse(readFileSync(join(ckpts, 'last.json'), 'utf8')).step, 8);
  const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step as number);
  assert.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b));
  assert.equal(steps.at(-1), 8);
});
