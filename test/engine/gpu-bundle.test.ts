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
import { copyFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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

test('gpu-check.sh within its deadline: a Vulkan driver that hangs is given up on and said in vulkan_tried, a step the deadline leaves no time for is skipped and said, the JSON written', () => {
  // a driver whose first entry point never returns (as a driver stuck on a GPU it cannot reach)
  const drv = join(root, 'hang');
  mkdirSync(drv);
  writeFileSync(join(drv, 'hang.cc'), '#include <unistd.h>\n#include <cstdint>\nextern "C" __attribute__((visibility("default"))) int vk_icdNegotiateLoaderICDInterfaceVersion(uint32_t*) { for (;;) sleep(1000); }\nextern "C" __attribute__((visibility("default"))) void* vk_icdGetInstanceProcAddr(void*, const char*) { for (;;) sleep(1000); }\n');
  const cc = spawnSync('g++', ['-shared', '-fPIC', '-o', join(drv, 'libhang.so'), join(drv, 'hang.cc')], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  writeFileSync(join(drv, 'hang_icd.json'), JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: join(drv, 'libhang.so'), api_version: '1.3.0' } }));
  const t0 = Date.now();
  const r = check({ VK_ICD_CANDIDATES: join(drv, 'hang_icd.json'), DEADLINE: '30' }, join(root, 'hang.json'));
  const took = (Date.now() - t0) / 1000;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(took < 45, `the check took ${took} s with a deadline of 30`);
  assert.deepEqual(r.json.vulkan_tried.map((t: Record<string, string>) => t.file), [join(drv, 'hang_icd.json')]);
  assert.match(r.json.vulkan_tried[0].stderr, /^timed out after \d+ s \(the driver hung\?\)$/);
  assert.equal(r.json.deadline_s, 30);
  assert.deepEqual(r.json.replay, { skipped: "the check's deadline (DEADLINE=30 s) came first" });
  assert.match(r.stderr, /replay: skipped, the check's deadline \(DEADLINE=30 s\) came first/);
});

test('gpu-check.sh stopped by a signal part way: the JSON keeps what was measured, the step running says it was stopped, and it leaves no process behind', async () => {
  const out = join(root, 'stopped.json');
  const { spawn } = await import('node:child_process');
  // its temporary folder in one of the test's own, to see it gone afterwards
  const tmpdir = join(root, 'tmp-stopped');
  mkdirSync(tmpdir);
  const p = spawn(join(folder, 'gpu-check.sh'), [], { cwd: root, env: { PATH: bin, HOME: root, BENCH: '1', STEPS: '1', OUT: out, TMPDIR: tmpdir }, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  p.stderr!.on('data', (b) => (stderr += String(b)));
  const ended = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
  // the check's own processes (moco3 on its bundled Node), by the folder's path
  const running = () => spawnSync('pgrep', ['-f', join(folder, 'moco3.mjs')], { encoding: 'utf8' }).stdout.trim();
  try {
    // once the first bench has started (the replay is in the JSON), a TERM as a machine's time limit sends
    const t0 = Date.now();
    while (!/bench webgpu 256/.test(stderr) && Date.now() - t0 < 120_000) await new Promise((res) => setTimeout(res, 200));
    assert.match(stderr, /bench webgpu 256/);
    process.kill(p.pid!, 'SIGTERM');
    const signalled = Date.now();
    assert.equal(await ended, 130, stderr);
    // at once, not when the step would have ended by itself (its limit is minutes)
    assert.ok(Date.now() - signalled < 30_000, `the check took ${((Date.now() - signalled) / 1000).toFixed(0)} s to stop`);
    // the bench it stopped is gone (its `timeout` passed the TERM on), nothing of the check's left running
    // (a process reaped a moment after the check's exit counts as gone: up to 5 s); seen before the cleanup below
    const t1 = Date.now();
    while (running() && Date.now() - t1 < 5000) await new Promise((res) => setTimeout(res, 100));
    assert.equal(running(), '', 'left running');
  } finally {
    // whatever failed above, nothing of this check outlives the test
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
    for (const pid of running().split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  const json = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(json.stopped, 'stopped by a signal during the check');
  assert.equal(json.replay.ok, true);
  assert.match(json.bench_webgpu['256'].error, /Error: stopped by a signal to the check$/);
  assert.deepEqual(json.bench_webgpu['1024'], { not_run: 'not reached' });
  assert.deepEqual(readdirSync(tmpdir), [], 'its temporary files removed');
});

test('gpu-check.sh with an OUT it cannot write (a folder, a file under a file): one line, exit 2, before anything runs', () => {
  for (const [out, line] of [
    [root, `OUT=${root} is a folder: give a file name`],
    [join(root, 'plain.json', 'x.json'), `cannot write ${join(root, 'plain.json', 'x.json')}: give OUT a file in a folder you can write to`],
  ] as const) {
    const t0 = Date.now();
    const r = check({}, out);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`gpu-check: ${line}`), r.stderr);
    assert.ok(Date.now() - t0 < 5000, 'before anything runs');
  }
  // a link is written through (renaming over it would have replaced the link and left its target stale);
  // DEADLINE=08 is eight seconds (bash would have read it as a bad octal number)
  const target = join(root, 'target.json');
  writeFileSync(target, '{"old": true}\n');
  const link = join(root, 'link.json');
  symlinkSync(target, link);
  const tmpdir = join(root, 'tmp-link');
  mkdirSync(tmpdir);
  const r = check({ DEADLINE: '08', TMPDIR: tmpdir }, link);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(tmpdir), [], 'its temporary files removed');
  assert.equal(r.json.deadline_s, 8);
  // and every step measured against eight seconds: none has time left
  assert.deepEqual(r.json.replay, { skipped: "the check's deadline (DEADLINE=8 s) came first" });
  assert.ok(lstatSync(link).isSymbolicLink(), 'still a link');
  assert.equal(JSON.parse(readFileSync(target, 'utf8')).deadline_s, 8, 'its target written');
});

test('gpu-check.sh with a node.xz that is no Node (a damaged or foreign file): one line, exit 1, and no `node` kept for the next run', () => {
  // the check alone beside its node.xz: unpacking and trying Node come before anything else
  const dir = join(root, 'foreign');
  mkdirSync(dir);
  copyFileSync(join(folder, 'gpu-check.sh'), join(dir, 'gpu-check.sh'));
  const run = () => spawnSync(join(dir, 'gpu-check.sh'), [], { cwd: dir, env: { PATH: bin, HOME: root, OUT: join(dir, 'out.json') }, encoding: 'utf8', timeout: 60_000 });
  // a program that runs and exits 0, but is not Node
  writeFileSync(join(dir, 'node.plain'), '#!/bin/sh\necho not node\n');
  assert.equal(spawnSync('sh', ['-c', 'xz -c node.plain > node.xz'], { cwd: dir, env: { PATH: bin } }).status, 0);
  const foreign = run();
  assert.equal(foreign.status, 1, foreign.stderr);
  assert.equal(foreign.stderr, 'gpu-check: the bundled Node does not run here: not node\n');
  // not xz data at all
  writeFileSync(join(dir, 'node.xz'), 'not xz');
  const damaged = run();
  assert.equal(damaged.status, 1, damaged.stderr);
  assert.match(damaged.stderr, /^gpu-check: node\.xz did not unpack \(damaged in the copy\?\): copy the folder over again\n$/m);
  assert.deepEqual(readdirSync(dir).sort(), ['gpu-check.sh', 'node.plain', 'node.xz']);
});
