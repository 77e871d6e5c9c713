/**
 * scripts/build-native.mjs, as `npm install` runs it: an addon newer than its sources is kept only when it
 * loads; a damaged one (a copy cut short, one built for another Node) is built again, not reported as up to
 * date and then passed over by moco3 for a slower backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.ts';

const repo = join(import.meta.dirname, '..', '..');

test('build-native: a damaged addon newer than its sources is built again; a good one is left as it is', () => {
  // a copy of what the script reads: its own folder, native/, package.json and node_modules
  const root = tempDir('moco3-build-native-');
  mkdirSync(join(root, 'scripts'));
  cpSync(join(repo, 'scripts', 'build-native.mjs'), join(root, 'scripts', 'build-native.mjs'));
  mkdirSync(join(root, 'native'));
  cpSync(join(repo, 'native', 'binding.gyp'), join(root, 'native', 'binding.gyp'));
  cpSync(join(repo, 'native', 'src'), join(root, 'native', 'src'), { recursive: true });
  cpSync(join(repo, 'package.json'), join(root, 'package.json'));
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'));
  const addon = join(root, 'build', 'Release', 'moco3_native.node');
  mkdirSync(join(root, 'build', 'Release'), { recursive: true });
  writeFileSync(addon, 'not an addon');
  const later = new Date(Date.now() + 60_000);
  utimesSync(addon, later, later);
  const build = () => spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { cwd: root, encoding: 'utf8', timeout: 600_000 });
  const first = build();
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /moco3: the native kernels at \S+moco3_native\.node do not load \(Error: \S+moco3_native\.node: (file too short|invalid ELF header)\); building them again\n/);
  assert.match(first.stdout, /moco3: native kernels built in [\d.]+ s: /);
  const built = readFileSync(addon);
  assert.notEqual(built.toString('latin1', 0, 12), 'not an addon');
  // built and loading: up to date, untouched
  const again = build();
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /^moco3: native kernels up to date \(/);
  assert.deepEqual(readFileSync(addon), built);
});
