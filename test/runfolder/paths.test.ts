/** Reading a run folder's records (src/runfolder/paths.ts): a damaged file is one line naming it, what is wrong and what to do. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonChecked, readJsonObject, readYamlChecked, RunFolderError, samePath } from '../../src/runfolder/paths.ts';
import { tempDir } from '../helpers/tmp.ts';

test('readJsonChecked / readYamlChecked: null when missing; empty, torn or not an object is a RunFolderError naming the file and what to do', () => {
  const dir = tempDir('moco3-paths-');
  const path = join(dir, 'status.json');
  assert.equal(readJsonChecked(path, 'remove it'), null);
  for (const [text, what] of [
    ['', 'empty'],
    ['{"status": "runn', 'not valid JSON (truncated?)'],
    ['[1, 2]', 'expected a JSON object, got [1,2]'],
    ['5', 'expected a JSON object, got 5'],
    ['null', 'expected a JSON object, got null'],
  ]) {
    writeFileSync(path, text);
    assert.throws(() => readJsonChecked(path, 'remove it'), (e: Error) => e instanceof RunFolderError && e.message === `${path}: ${what}; remove it`, text);
    assert.equal(readJsonObject(path), null, text);
  }
  writeFileSync(path, '{"status": "completed"}');
  assert.deepEqual(readJsonChecked(path, 'remove it'), { status: 'completed' });
  const yaml = join(dir, 'sweep.yaml');
  writeFileSync(yaml, '- a\n- b\n');
  assert.throws(() => readYamlChecked(yaml, 'plan it again'), (e: Error) => e instanceof RunFolderError && e.message === `${yaml}: expected a YAML mapping, got ["a","b"]; plan it again`);
});

test('samePath: a symbolic link and the folder it points to are the same', () => {
  const dir = tempDir('moco3-paths-');
  mkdirSync(join(dir, 'run'));
  symlinkSync(join(dir, 'run'), join(dir, 'link'));
  assert.equal(samePath(join(dir, 'link'), join(dir, 'run')), true);
  assert.equal(samePath(join(dir, 'run', '..', 'run'), join(dir, 'run')), true);
  assert.equal(samePath(join(dir, 'run'), join(dir, 'other')), false);
});
