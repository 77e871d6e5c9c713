/** `moco3 bench --backend all`: one process per backend, which a stop signal to moco3 stops too. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'moco3.js');

/** The processes whose command line holds `needle`, from /proc. */
function processesWith(needle: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(join('/proc', d, 'cmdline'), 'utf8').split('\0').join(' ').includes(needle);
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
  // a backend's own process is running (the first, tensorflow, is not installed here: said at once)
  const deadline = Date.now() + 60_000;
  while (processesWith(`--steps ${steps} --warmup 0 --backend `).filter((p) => p !== child.pid).length === 0) {
    assert.ok(Date.now() < deadline, `no backend process started: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /^moco3: bench: SIGTERM: stopped at the \w+ backend$/m);
  // nothing of it left running
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(processesWith(`--steps ${steps}`), []);
});
