/**
 * bench/native-torch.py, PyTorch's side of the benchmark: its flags are checked before torch loads (one line
 * naming the flag, exit 2, as moco3's own), so this needs python3 only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

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
