#!/usr/bin/env node
// Builds moco3's optional native CPU kernels (native/) into build/Release/moco3_native.node.
// Runs at `npm install` / `npm ci`. Never fails the install: when something is missing it prints one
// warning that says what and how to add it, and moco3 falls back to the wasm or cpu backend.
//
//   node scripts/build-native.mjs            build (skips when the addon is newer than its sources and loads)
//   node scripts/build-native.mjs --force    rebuild
//   MOCO3_SKIP_NATIVE=1                      skip entirely
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const outDir = join(root, 'build', 'Release');
const outFile = join(outDir, 'moco3_native.node');
const force = process.argv.includes('--force');
const isMac = process.platform === 'darwin';
const FIX = isMac ? 'xcode-select --install' : 'apt-get install g++ libopenblas-dev';

const say = (line) => console.log(`moco3: ${line}`);
function skip(reason) {
  // an addon older than its sources could miss functions the TypeScript side calls
  rmSync(outFile, { force: true });
  say(`WARNING: native kernels not built: ${reason}.`);
  say(`  moco3 still works (wasm or cpu backend, much slower). To build them: ${FIX}, then \`node scripts/build-native.mjs\`.`);
  process.exit(0);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, error: r.error, status: r.status, signal: r.signal };
}

function newestSource() {
  let t = statSync(join(nativeDir, 'binding.gyp')).mtimeMs;
  for (const f of readdirSync(join(nativeDir, 'src'))) t = Math.max(t, statSync(join(nativeDir, 'src', f)).mtimeMs);
  return t;
}

/** Loads the addon in a child process and asks it what it has. */
function loadCheck() {
  return run(process.execPath, ['-e', `const m=require(${JSON.stringify(outFile)});const i=m.info();console.log(i.blas+', '+i.threads+' threads, '+i.isa)`]);
}

/** The line of Node's output that says why a load failed (the first is where in Node's loader it was thrown). */
const loadError = (r) => {
  const lines = r.out.trim().split('\n');
  const line = (lines.find((l) => /^\w*Error\b|^Error:/.test(l.trim())) ?? lines[0] ?? '').trim();
  // a file cut short can kill Node as it maps it (SIGBUS), with nothing printed
  return line || (r.signal ? `Node was killed by ${r.signal} loading it` : `Node exited ${r.status} loading it`);
};

function main() {
  if (process.env.MOCO3_SKIP_NATIVE === '1') {
    say('native kernels skipped (MOCO3_SKIP_NATIVE=1)');
    return;
  }
  if (process.platform === 'win32') skip('Windows is not supported by the native build');
  if (!existsSync(join(nativeDir, 'binding.gyp'))) skip('native/ sources are missing from this copy');
  if (!force && existsSync(outFile) && statSync(outFile).mtimeMs >= newestSource()) {
    // newer than its sources, and it loads: a damaged file, or one built against another Node, is rebuilt
    const loads = loadCheck();
    if (loads.ok) {
      say(`native kernels up to date (${outFile})`);
      return;
    }
    say(`the native kernels at ${outFile} do not load (${loadError(loads)}); building them again`);
  }

  // a C++ compiler
  const cxx = process.env.CXX || (isMac ? 'clang++' : 'g++');
  if (!run(cxx, ['--version']).ok) skip(`no C++ compiler (${cxx})`);

  // BLAS: Accelerate on macOS; OpenBLAS headers and library elsewhere
  if (!isMac) {
    const probe = '#include <cblas.h>\nint main(){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);openblas_set_num_threads(1);return c==1.f?0:1;}\n';
    const r = run(cxx, ['-x', 'c++', '-', '-I/usr/include/openblas', '-lopenblas', '-o', '/dev/null'], { input: probe });
    if (!r.ok) skip('OpenBLAS (cblas.h / libopenblas) not found');
  }

  // node-addon-api headers
  let addonApiInclude;
  try {
    addonApiInclude = createRequire(join(root, 'package.json'))('node-addon-api').include_dir;
  } catch {
    skip('the node-addon-api package is not installed');
  }

  // node-gyp: the one npm points at, else the one npm ships
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter(Boolean);
  const nodeGyp = candidates.find((p) => existsSync(p));

  // Node headers shipped next to node (distro packages, official tarballs) spare node-gyp a download
  const prefix = resolve(dirname(process.execPath), '..');
  const localHeaders = existsSync(join(prefix, 'include', 'node', 'node_api.h'));
  const gypArgs = ['rebuild', '--release', `--jobs=${Math.max(1, Math.min(4, availableParallelism()))}`];
  if (!process.env.npm_config_nodedir && localHeaders) gypArgs.push(`--nodedir=${prefix}`);

  const started = Date.now();
  let built = false;
  let log = '';
  if (nodeGyp) {
    const r = run(process.execPath, [nodeGyp, ...gypArgs], { cwd: nativeDir });
    log = r.out;
    const product = join(nativeDir, 'build', 'Release', 'moco3_native.node');
    if (r.ok && existsSync(product)) {
      mkdirSync(outDir, { recursive: true });
      // copy then rename: a running moco3 keeps its mapping of the old file (overwriting it in place crashes it)
      copyFileSync(product, `${outFile}.tmp`);
      renameSync(`${outFile}.tmp`, outFile);
      built = true;
    }
  }
  // no node-gyp, or it could not get headers: compile directly when the headers are next to node
  if (!built && localHeaders && !isMac) {
    mkdirSync(outDir, { recursive: true });
    const r = run(cxx, [
      '-O3', '-std=gnu++17', '-fPIC', '-shared', '-pthread', '-fno-math-errno', '-fno-trapping-math', '-fvisibility=hidden',
      '-Wno-psabi', '-DNAPI_VERSION=8', '-DNAPI_DISABLE_CPP_EXCEPTIONS', '-DNODE_ADDON_API_DISABLE_DEPRECATED',
      `-I${join(prefix, 'include', 'node')}`, `-I${addonApiInclude}`, '-I/usr/include/openblas',
      ...['addon.cc', 'augment.cc', 'kernels.cc', 'kernels_base.cc', 'kernels_avx2.cc'].map((f) => join(nativeDir, 'src', f)),
      '-o', `${outFile}.tmp`, '-lopenblas',
    ]);
    log += r.out;
    built = r.ok;
    if (built) renameSync(`${outFile}.tmp`, outFile);
  }
  if (!built) {
    const tail = log.trim().split('\n').slice(-15).join('\n');
    if (tail) console.log(tail);
    skip(nodeGyp ? 'the compile failed (output above)' : 'node-gyp was not found and Node headers are not installed');
  }

  // load it once: a library missing at run time shows up here rather than at training time
  const check = loadCheck();
  if (!check.ok) skip(`the built addon does not load: ${loadError(check)}`);
  say(`native kernels built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${check.out.trim()}`);
}

try {
  main();
} catch (err) {
  say(`WARNING: native kernels not built: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(0);
}
