/**
 * Stack traces only with MOCO3_DEBUG=1: bad input (exit 2) and a failure (exit 1, here a checkpoint that
 * cannot be written, injected through test/sweep/fixtures/cli.ts) are at most two lines without it, and
 * the same line with the stack trace of where it happened with it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-debug-');
after(() => rmSync(root, { recursive: true, force: true }));

const repo = join(import.meta.dirname, '..', '..');
const cli = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'cli.ts');
const TINY = [
  '--preset', 'smoke', '--backend', 'cpu', '-q',
  ...['model.arch=vit-test', 'data.image_size=8', 'data.train_size=64', 'data.test_size=32', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16', 'optim.batch_size=16', 'optim.epochs=1', 'optim.warmup_epochs=0', 'train.checkpoint_every=3', 'eval.linear.enabled=false']
    .flatMap((s) => ['--set', s]),
];

function run(args: string[], env: Record<string, string>) {
  const { MOCO3_DEBUG: _d, ...base } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repo, env: { ...base, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise<{ code: number | null; lines: string[]; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, stderr, lines: stderr.trimEnd().split('\n').filter((l) => l && !l.startsWith('moco3: backend ')) })),
  );
}

const FRAME = /^ {4}at .+:\d+:\d+\)?$/m;

const errors: [what: string, code: number, args: () => string[], env: Record<string, string>, line: RegExp][] = [
  ['bad input', 2, () => ['train', ...TINY, '--set', 'optim.epochs=many', '--dry-run'], {}, /^moco3: --set optim\.epochs=many: optim\.epochs: expected number, got "many"$/],
  [
    'a failure (a checkpoint that cannot be written)',
    1,
    () => ['train', ...TINY, '--out', join(root, `run-${process.hrtime.bigint()}`)],
    { MOCO3_TEST_WRITE_ERROR: 'EIO:mkdir:1:/.step-0000000.' },
    /^moco3: error: .*could not write the checkpoint of step 0 \(EIO: input\/output error\); there is no earlier checkpoint/,
  ],
];

for (const [what, code, args, env, line] of errors) {
  test(`${what}: without MOCO3_DEBUG at most two lines and no stack trace; with MOCO3_DEBUG=1 the line and a stack trace`, async () => {
    const plain = await run(args(), env);
    assert.equal(plain.code, code, plain.stderr);
    assert.ok(plain.lines.length >= 1 && plain.lines.length <= 2, plain.stderr);
    assert.match(plain.lines[0]!, line);
    assert.doesNotMatch(plain.stderr, FRAME);
    assert.doesNotMatch(plain.stderr, /^\s+at /m);
    // a failure's line says how to see where it happened; bad input's needs no trace
    assert.equal(plain.lines.includes('(MOCO3_DEBUG=1 shows where it happened)'), code === 1, plain.stderr);

    const debug = await run(args(), { ...env, MOCO3_DEBUG: '1' });
    assert.equal(debug.code, code, debug.stderr);
    assert.match(debug.stderr, FRAME, 'no stack trace with MOCO3_DEBUG=1');
    assert.ok(debug.stderr.match(new RegExp(FRAME.source, 'gm'))!.length >= 2, debug.stderr);
    assert.ok(debug.lines.some((l) => line.test(l)), debug.stderr);
    assert.doesNotMatch(debug.stderr, /MOCO3_DEBUG=1 shows/);
  });
}
