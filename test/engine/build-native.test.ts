/**
 * scripts/build-native.mjs, as `npm install` runs it: an addon newer than its sources is kept only when it
 * loads; a damaged one (a copy cut short, one built for another Node) is built again, not reported as up to
 * date and then passed over by moco3 for a slower backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tempDir } from '../helpers/tmp.ts';

const repo = join(import.meta.dirname, '..', '..');

/** A copy of what the script reads: its own folder, native/, package.json and node_modules. */
function copyOfRepo(): string {
  const root = tempDir('moco3-build-native-');
  mkdirSync(join(root, 'scripts'));
  cpSync(join(repo, 'scripts', 'build-native.mjs'), join(root, 'scripts', 'build-native.mjs'));
  mkdirSync(join(root, 'native'));
  cpSync(join(repo, 'native', 'binding.gyp'), join(root, 'native', 'binding.gyp'));
  cpSync(join(repo, 'native', 'src'), join(root, 'native', 'src'), { recursive: true });
  cpSync(join(repo, 'package.json'), join(root, 'package.json'));
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'));
  return root;
}

/** The script in `root`, as `npm install` runs it, with `env` added. */
function buildIn(root: string, args: string[] = [], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), ...args], { cwd: root, encoding: 'utf8', timeout: 600_000, env: { ...process.env, ...env } });
}

/** The one warning of a build that did not happen (the install goes on; moco3 uses another backend). */
const notBuilt = (why: string) =>
  new RegExp(`^moco3: WARNING: native kernels not built: ${why}\\.?\nmoco3:   moco3 still works \\(wasm or cpu backend, much slower\\)\\. To build them: .+, then \`node scripts/build-native\\.mjs\`\\.\n$`);

test('build-native: a damaged addon newer than its sources is built again; a good one is left as it is', () => {
  const root = copyOfRepo();
  const addon = join(root, 'build', 'Release', 'moco3_native.node');
  mkdirSync(join(root, 'build', 'Release'), { recursive: true });
  writeFileSync(addon, 'not an addon');
  const later = new Date(Date.now() + 60_000);
  utimesSync(addon, later, later);
  const build = () => buildIn(root);
  const damaged = statSync(addon).ino;
  const first = build();
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /moco3: the native kernels at \S+moco3_native\.node do not load \(Error: \S+moco3_native\.node: (file too short|invalid ELF header)\); building them again\n/);
  assert.match(first.stdout, /moco3: native kernels built in [\d.]+ s: /);
  const built = readFileSync(addon);
  assert.notEqual(built.toString('latin1', 0, 12), 'not an addon');
  // a new file put in its place, not the old one written over: a running moco3 keeps its mapping of the old
  assert.notEqual(statSync(addon).ino, damaged);
  // built and loading: up to date, untouched
  const again = build();
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /^moco3: native kernels up to date \(/);
  assert.deepEqual(readFileSync(addon), built);

  // a source changed after the addon was built (a header too), and --force, go to the build: with no compiler
  // there (CXX names none) that is one warning, exit 0, and the addon, stale now, taken away, not left to load
  const noCompiler = { CXX: join(root, 'no-such-compiler') };
  const edited = new Date(Date.now() + 120_000);
  utimesSync(join(root, 'native', 'src', 'kernels.h'), edited, edited);
  const changed = buildIn(root, [], noCompiler);
  assert.equal(changed.status, 0, changed.stderr);
  assert.match(changed.stdout, notBuilt(`no C\\+\\+ compiler \\(${noCompiler.CXX}\\)`));
  assert.ok(!existsSync(addon), 'the addon older than its sources is removed');
  // the same addon put back, newer than every source: up to date, unless --force
  writeFileSync(addon, built);
  const newest = new Date(Date.now() + 180_000);
  utimesSync(addon, newest, newest);
  assert.match(buildIn(root, [], noCompiler).stdout, /^moco3: native kernels up to date \(/);
  const forced = buildIn(root, ['--force'], noCompiler);
  assert.equal(forced.status, 0, forced.stderr);
  assert.match(forced.stdout, notBuilt(`no C\\+\\+ compiler \\(${noCompiler.CXX}\\)`));
});

test('build-native never fails the install: MOCO3_SKIP_NATIVE=1 skips it, missing sources and an unexpected error are one warning, exit 0', () => {
  const root = copyOfRepo();
  const addon = join(root, 'build', 'Release', 'moco3_native.node');
  const skipped = buildIn(root, [], { MOCO3_SKIP_NATIVE: '1' });
  assert.equal(skipped.status, 0, skipped.stderr);
  assert.equal(skipped.stdout, 'moco3: native kernels skipped (MOCO3_SKIP_NATIVE=1)\n');
  assert.ok(!existsSync(join(root, 'build')), 'nothing built');
  // native/src gone with binding.gyp left and an addon there: reading the sources' times throws
  mkdirSync(join(root, 'build', 'Release'), { recursive: true });
  writeFileSync(addon, 'an addon');
  rmSync(join(root, 'native', 'src'), { recursive: true });
  const thrown = buildIn(root);
  assert.equal(thrown.status, 0, thrown.stderr);
  assert.match(thrown.stdout, /^moco3: WARNING: native kernels not built: ENOENT: .*native\/src/);
  // no native/ at all (a copy without it): said, and the addon of other sources taken away
  rmSync(join(root, 'native'), { recursive: true });
  const none = buildIn(root);
  assert.equal(none.status, 0, none.stderr);
  assert.match(none.stdout, notBuilt('native/ sources are missing from this copy'));
  assert.ok(!existsSync(addon));
});

test('build-native without node-gyp: the addon is compiled directly against the Node headers installed next to node, and loads', () => {
  // distro packages and official tarballs install them; the usual native build uses them too (scripts/build-native.mjs)
  assert.ok(existsSync(join(dirname(process.execPath), '..', 'include', 'node', 'node_api.h')), 'Node headers next to node (include/node/node_api.h)');
  const root = copyOfRepo();
  // a Node with its headers beside it and no npm (so no node-gyp) next to it
  const prefix = tempDir('moco3-node-prefix-');
  mkdirSync(join(prefix, 'bin'));
  copyFileSync(process.execPath, join(prefix, 'bin', 'node'));
  symlinkSync(join(dirname(process.execPath), '..', 'include'), join(prefix, 'include'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_(node_gyp|nodedir)$/i.test(k)));
  const r = spawnSync(join(prefix, 'bin', 'node'), [join(root, 'scripts', 'build-native.mjs')], { cwd: root, encoding: 'utf8', timeout: 600_000, env });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^moco3: native kernels built in [\d.]+ s: /m);
  const addon = join(root, 'build', 'Release', 'moco3_native.node');
  assert.ok(existsSync(addon));
  assert.ok(!existsSync(join(root, 'native', 'build')), 'node-gyp did not run');
  // every source compiled in: Node loads an addon lazily, so a kernel left out would show only when first
  // called, mid-training; the only symbols it may lack are Node's own (napi_*)
  const ldd = spawnSync('ldd', ['-r', addon], { encoding: 'utf8' });
  const undefinedSymbols = `${ldd.stdout}${ldd.stderr}`.split('\n').filter((l) => /undefined symbol/.test(l));
  assert.ok(undefinedSymbols.length > 0, 'ldd -r lists the napi_ symbols Node provides');
  assert.deepEqual(undefinedSymbols.filter((l) => !/undefined symbol: napi_/.test(l)), []);
});
