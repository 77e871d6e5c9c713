/** `moco3 bench --backend all`: one process per backend, which a stop signal to moco3 stops too. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'moco3.js');

/** The processes whose command line matches `pattern`, from /proc. */
function processesWith(pattern: RegExp): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return pattern.test(readFileSync(join('/proc', d, 'cmdline'), 'utf8').split('\0').join(' '));
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('bench --backend all stopped by a signal (kill, a scheduler) stops the backend it is running, exit 130', async () => {
  // steps enough that no backend ends by itself; the number marks this test's processes
  const steps = '7654321';
  const child = spawn(process.execPath, [bin, 'bench', '--preset', 'smoke', '--batch', '8', '--steps', steps, '--warmup', '0', '--backend', 'all'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  // a backend's own process that runs until stopped: not tensorflow's, which is not installed and ends at once;
  // the same one seen a second apart
  const running = new RegExp(`--steps ${steps} --warmup 0 --backend (webgpu|native|wasm|cpu)\\b`);
  const deadline = Date.now() + 90_000;
  for (let seen: number[] = []; ; ) {
    assert.ok(Date.now() < deadline, `no backend process kept running: ${stderr}`);
    const now = processesWith(running);
    if (now.some((p) => seen.includes(p))) break;
    seen = now;
    await new Promise((r) => setTimeout(r, 1000));
  }
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    new Promise<number | null>((resolve) => child.on('close', resolve)),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still running 60 s after the signal'), 60_000))),
  ]);
  clearTimeout(timer);
  if (code === 'still running 60 s after the signal') for (const p of processesWith(new RegExp(`--steps ${steps}`))) process.kill(p, 'SIGKILL');
  assert.equal(code, 130, stderr);
  assert.match(stderr, /^moco3: bench: SIGTERM: stopped at the (webgpu|native|wasm|cpu) backend$/m);
  // nothing of it left running
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(processesWith(new RegExp(`--steps ${steps}`)), []);
});
