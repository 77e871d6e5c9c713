import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { evalCommand } from '../../src/cli/eval.ts';

test("eval knn|linear --help: --checkpoint takes step-N, N or a checkpoint's folder, as it accepts them", () => {
  for (const sub of evalCommand().commands) {
    const opt = sub.options.find((o) => o.long === '--checkpoint');
    assert.ok(opt, sub.name());
    assert.equal(opt.flags, '--checkpoint <step>', sub.name());
    assert.match(opt.description, /^the checkpoint to evaluate: step-N, N or its folder \(default: the newest in <run-dir>\/checkpoints\)$/, sub.name());
  }
});

test("moco3 help <group> <command> prints the command's help (commander's stopped at the group's)", () => {
  const out = execFileSync(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'moco3.js'), 'help', 'eval', 'knn'], { encoding: 'utf8' });
  assert.match(out, /^Usage: moco3 eval knn \[options\] <run-dir>/);
  assert.match(out, /--checkpoint <step>/);
  // words past a command of no sub-commands (a sweep's name, --help) leave its help as it is
  for (const extra of [['sweep', 'batch-size'], ['eval', 'knn', '--help']]) {
    const more = execFileSync(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'moco3.js'), 'help', ...extra], { encoding: 'utf8' });
    assert.match(more, new RegExp(`^Usage: moco3 ${extra[0]} `), extra.join(' '));
  }
});

test('moco3 --version and -V print the version of package.json, exit 0 (it was an unknown option, exit 2)', () => {
  const root = join(import.meta.dirname, '..', '..');
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const out = execFileSync(process.execPath, [join(root, 'bin', 'moco3.js'), flag], { encoding: 'utf8' });
    assert.equal(out, `${version}\n`, flag);
  }
});
