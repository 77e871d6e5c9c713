/**
 * The GPU check as it runs on a bare machine: `npm run bundle:gpu` makes the folder, and its gpu-check.sh
 * runs with no Node on the PATH and no node_modules around it (BENCH=0: the driver search, doctor and the
 * two-step webgpu-vs-CPU replay, on lavapipe here). Once as it is, once on a machine whose C++ runtime is
 * older than Dawn's: a copy of this one with GCC 12's version (GLIBCXX_3.4.30) renamed, first on the
 * library path, as on RHEL 9 (GCC 11's runtime).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { tempDir } from '../helpers/tmp.ts';

const repo = join(import.meta.dirname, '..', '..');
const root = tempDir('moco3-gpu-bundle-');
const folder = join(root, 'moco3-gpu');
const bin = join(root, 'bin');
after(() => rmSync(root, { recursive: true, force: true }));

/** What gpu-check.sh calls, and no `node`: links in a folder that is the whole PATH. */
function barePath(): void {
  mkdirSync(bin);
  for (const c of ['bash', 'sh', 'dirname', 'mktemp', 'rm', 'mv', 'xz', 'chmod', 'grep', 'head', 'tail', 'cat', 'timeout', 'env']) {
    const where = spawnSync('sh', ['-c', `command -v ${c}`], { encoding: 'utf8' }).stdout.trim();
    if (where) symlinkSync(where, join(bin, c));
  }
}

function check(extraEnv: Record<string, string>, out: string): { code: number | null; stderr: string; json: Record<string, any> } {
  const env = { PATH: bin, HOME: root, BENCH: '0', OUT: out, ...extraEnv };
  const r = spawnSync(join(folder, 'gpu-check.sh'), [], { cwd: root, env, encoding: 'utf8', timeout: 300_000 });
  let json: Record<string, any> = {};
  try {
    // a relative OUT is of the folder the check was started in
    json = JSON.parse(readFileSync(isAbsolute(out) ? out : join(root, out), 'utf8'));
  } catch {
    // asserted below
  }
  return { code: r.status, stderr: r.stderr, json };
}

let bundled: { code: number | null; stdout: string; stderr: string };
before(() => {
  const r = spawnSync(process.execPath, [join(repo, 'scripts', 'bundle-gpu.mjs'), '--out', folder], { encoding: 'utf8', timeout: 600_000 });
  bundled = { code: r.status, stdout: r.stdout, stderr: r.stderr };
  barePath();
});

test('npm run bundle:gpu: one folder under 60 MiB with Node, moco3, Dawn, the Vulkan loader and the C++ runtime', () => {
  assert.equal(bundled.code, 0, bundled.stderr);
  const mib = Number(/: ([\d.]+) MiB/.exec(bundled.stdout)?.[1]);
  assert.ok(mib > 20 && mib <= 60, bundled.stdout);
  for (const f of ['node.xz', 'moco3.mjs', 'gpu-check.sh', 'lib/libvulkan.so.1', 'lib/compat/libstdc++.so.6', 'node_modules/webgpu/dist/linux-x64/dawn.node']) {
    assert.ok(readFileSync(join(folder, f)).length > 0, f);
  }
  // the test's PATH really has no Node
  assert.notEqual(spawnSync('sh', ['-c', 'command -v node'], { env: { PATH: bin } }).status, 0);
});

function assertReplay(json: Record<string, any>, label: string): void {
  for (const key of ['replay', 'replay_per_parameter']) {
    const r = json[key];
    assert.equal(r?.ok, true, `${label} ${key}: ${JSON.stringify(r)}`);
    assert.match(r.device, /WebGPU \(Dawn\)/);
    for (const part of ['whole_batch', 'micro_batch_4']) {
      assert.equal(r[part]?.ok, true, `${label} ${key}.${part}`);
      assert.ok(r[part].worst.param < 1e-3, `${label} ${key}.${part}: ${JSON.stringify(r[part].worst)}`);
    }
  }
}

test('gpu-check.sh with no Node on the PATH: doctor names the software adapter, the replay agrees with the CPU, the benches are skipped', () => {
  const r = check({}, join(root, 'plain.json'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.cxx_runtime, 'system');
  assert.equal(r.json.vulkan_icd, 'none'); // no hardware adapter here: every ICD tried, none taken
  assert.ok(r.json.doctor.some((l: string) => /^webgpu: .*adapter .*software/.test(l)), r.json.doctor.join('\n'));
  // what the bundle leaves out is said as such, not how to build it from a checkout
  for (const b of ['native', 'wasm']) assert.ok(r.json.doctor.includes(`${b}: not part of the GPU check bundle (it trains on webgpu)`), r.json.doctor.join('\n'));
  assertReplay(r.json, 'plain');
  assert.match(r.json.bench_webgpu['1024'].skipped, /software adapter/);
  assert.match(r.stderr, /wrote /);
});

test("gpu-check.sh where the machine's C++ runtime is older than Dawn's: it takes the bundled one and the replay runs", () => {
  const old = join(root, 'old-cxx');
  mkdirSync(old);
  const lib = readFileSync(join(folder, 'lib', 'compat', 'libstdc++.so.6'));
  const name = Buffer.from('GLIBCXX_3.4.30\0');
  const at = lib.indexOf(name);
  assert.ok(at > 0, 'GLIBCXX_3.4.30 in the bundled libstdc++');
  Buffer.from('GLIBCXX_3.4.3X\0').copy(lib, at);
  writeFileSync(join(old, 'libstdc++.so.6'), lib);

  // without the bundled runtime Dawn does not load: the situation is real (`node`: unpacked by the check above)
  const doctor = spawnSync(join(folder, 'node'), [join(folder, 'moco3.mjs'), 'doctor'], { env: { PATH: bin, HOME: root, LD_LIBRARY_PATH: `${join(folder, 'lib')}:${old}` }, encoding: 'utf8' });
  assert.match(doctor.stdout, /^webgpu: .*does not load here .*GLIBCXX_3\.4\.30/m);

  const r = check({ LD_LIBRARY_PATH: old }, 'old-cxx.json');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /C\+\+ runtime is older than Dawn's: using the bundled one/);
  assert.equal(r.json.cxx_runtime, 'bundled');
  assertReplay(r.json, 'old C++ runtime');

  // the bundled runtime needs the build machine's C library: on an older one (here its version need renamed
  // to one no C library has) Node would not start with it; the check takes it back and says so (it went on
  // to write nothing, and said "wrote")
  const compat = join(folder, 'lib', 'compat', 'libstdc++.so.6');
  const mine = readFileSync(compat);
  const need = /GLIBC_2\.3[5-9]\0/.exec(mine.toString('latin1'));
  assert.ok(need, 'a GLIBC_2.35+ version need in the bundled libstdc++');
  const patched = Buffer.from(mine);
  Buffer.from('GLIBC_2.99\0').copy(patched, need.index);
  writeFileSync(compat, patched);
  try {
    const u = check({ LD_LIBRARY_PATH: old }, 'unusable.json');
    assert.equal(u.code, 0, u.stderr);
    assert.match(u.stderr, /the bundled one needs a newer C library \(glibc 2\.\d+ or newer\) than this machine's: webgpu cannot run here \(GLIBC_2\.99' not found\)/);
    assert.equal(u.json.cxx_runtime, 'unusable');
    assert.match(u.stderr, /wrote /);
  } finally {
    writeFileSync(compat, mine);
  }
});
