/** Progress bars: only on a terminal that draws them, narrower on a narrow one, and the terminal given back at exit. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { barSize, barsOn } from '../../src/cli/progress.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const stream = (o: { isTTY?: boolean; columns?: number }) => o as unknown as NodeJS.WriteStream;

test('bars on a terminal only, not on a dumb one (TERM=dumb: an editor buffer) nor a file; 8 cells wide under 110 columns', () => {
  const term = process.env.TERM;
  try {
    process.env.TERM = 'xterm-256color';
    assert.equal(barsOn(stream({ isTTY: true })), true);
    assert.equal(barsOn(stream({ isTTY: false })), false);
    assert.equal(barsOn(stream({})), false);
    process.env.TERM = 'dumb';
    assert.equal(barsOn(stream({ isTTY: true })), false);
  } finally {
    if (term === undefined) delete process.env.TERM;
    else process.env.TERM = term;
  }
  assert.equal(barSize(stream({ columns: 80 })), 8);
  assert.equal(barSize(stream({ columns: 200 })), 24);
  assert.equal(barSize(stream({})), 24);
});

test('a process that exits while a bar hides the cursor and line wrapping (a second Ctrl-C) turns both back on', () => {
  const script = "import { barOptions } from './src/cli/progress.ts'; barOptions(process.stdout); process.stdout.write('x'); process.exit(130);";
  const p = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.equal(p.status, 130, p.stderr);
  assert.equal(p.stdout, 'x\u001b[?25h\u001b[?7h');
});
