import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { tar } from '../helpers/archives.ts';
import { cli } from '../helpers/cli.ts';
import { encodeIdx } from '../../src/data/idx.ts';
import { SOURCES } from '../../src/data/checksums.ts';
import { tempDir } from '../helpers/tmp.ts';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The lines moco3 wrote as its own verdict (`moco3: ...`). */
const verdicts = (err: string) => err.split('\n').filter((l) => l.startsWith('moco3:'));

const FM = '/usr/share/datasets/fashion-mnist';
const root = tempDir('moco3-data-cli-');
let n = 0;
const fresh = () => join(root, `d${++n}`);

// a mirror on 127.0.0.1: /wrong/<file> serves a small wrong body, /slow/<file> announces the real size, sends 1000 bytes and hangs
const server = http.createServer((req, res) => {
  const url = req.url ?? '';
  if (url.startsWith('/wrong/')) {
    res.writeHead(200, { 'content-length': 7 });
    res.end('not it\n');
  } else if (url.startsWith('/slow/')) {
    const f = SOURCES['fashion-mnist'].files.find((k) => url.endsWith(k.name));
    res.writeHead(200, { 'content-length': f?.size ?? 1 });
    res.write(Buffer.alloc(1000, 1));
    slowHits++;
  } else {
    res.writeHead(404);
    res.end();
  }
});
let slowHits = 0;
let mirror = '';
let closedPort = 0;
before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
});
after(() => {
  server.closeAllConnections();
  server.close();
  rmSync(root, { recursive: true, force: true });
});

test('data fetch: connection refused gives exit 1 (not bad input: it may work later) and one line with the URL, the error and the manual way, fast', async () => {
  const dir = fresh();
  const t0 = performance.now();
  const r = await cli(['data', 'fetch', 'cifar10', '--dir', dir, '--mirror', `http://127.0.0.1:${closedPort}/`]);
  assert.equal(r.code, 1, r.err);
  assert.ok(performance.now() - t0 < 3000);
  assert.deepEqual(verdicts(r.err), [
    `moco3: cannot download http://127.0.0.1:${closedPort}/cifar-10-binary.tar.gz: connection refused (ECONNREFUSED); download it yourself and put it in ${dir} (a folder to make: this fetch removed the empty one it made), or use --mirror URL`,
  ]);
  assert.equal(r.out, '');
  // nothing left, not even the folder it made for the download
  assert.equal(existsSync(dir), false);
});

test('data fetch: $MOCO3_MIRROR is the mirror when --mirror is not given; HTTP 404 is one line, exit 1', async () => {
  const dir = fresh();
  const r = await cli(['data', 'fetch', 'cifar100', '--dir', dir], { MOCO3_MIRROR: `${mirror}/missing` });
  assert.equal(r.code, 1, r.err);
  assert.deepEqual(verdicts(r.err), [
    `moco3: cannot download ${mirror}/missing/cifar-100-binary.tar.gz: HTTP 404 Not Found; download it yourself and put it in ${dir} (a folder to make: this fetch removed the empty one it made), or use --mirror URL`,
  ]);
});

test('data fetch: --mirror wins over $MOCO3_MIRROR (the flag given on the line is the one used)', async () => {
  const dir = fresh();
  const r = await cli(['data', 'fetch', 'cifar10', '--dir', dir, '--mirror', `${mirror}/missing/`], { MOCO3_MIRROR: `http://127.0.0.1:${closedPort}/env/` });
  assert.equal(r.code, 1, r.err);
  assert.deepEqual(verdicts(r.err), [
    `moco3: cannot download ${mirror}/missing/cifar-10-binary.tar.gz: HTTP 404 Not Found; download it yourself and put it in ${dir} (a folder to make: this fetch removed the empty one it made), or use --mirror URL`,
  ]);
  // a bad $MOCO3_MIRROR beside a good --mirror is not read
  const bad = await cli(['data', 'fetch', 'cifar10', '--dir', dir, '--mirror', `${mirror}/missing/`], { MOCO3_MIRROR: 'ftp://x' });
  assert.equal(bad.code, 1, bad.err);
  assert.doesNotMatch(bad.err, /MOCO3_MIRROR/);
});

test('data fetch: a mirror serving the wrong file is refused (expected size and sha256 named), exit 1, nothing kept', async () => {
  const dir = fresh();
  const r = await cli(['data', 'fetch', 'fashion-mnist', '--dir', dir, '--mirror', `${mirror}/wrong/`]);
  assert.equal(r.code, 1, r.err);
  const k = SOURCES['fashion-mnist'].files[0]!;
  // a Fashion-MNIST file may come gzipped differently, so its size alone does not refuse it: its content does
  assert.equal(verdicts(r.err).length, 1);
  assert.match(verdicts(r.err)[0]!, new RegExp(`^moco3: ${k.name}: checksum mismatch after download from ${mirror}/wrong/${k.name}: expected ${k.size} bytes sha256 ${k.sha256}, got 7 bytes .*\\(deleted; try again or use --mirror URL\\)$`));
  // nor the folders the fetch made for it
  assert.equal(existsSync(dir), false);
});

test('data fetch: a server whose file is of another size than the published one is refused at its Content-Length, exit 1', async () => {
  const dir = fresh();
  const r = await cli(['data', 'fetch', 'cifar10', '--dir', dir, '--mirror', `${mirror}/wrong/`]);
  assert.equal(r.code, 1, r.err);
  assert.match(verdicts(r.err)[0]!, new RegExp(`^moco3: cifar-10-binary\\.tar\\.gz: ${mirror}/wrong/cifar-10-binary\\.tar\\.gz is 7 bytes, expected \\d+ \\(sha256 [0-9a-f]{64}\\); nothing was kept$`));
  assert.equal(existsSync(dir), false);
});

test('data fetch into a folder that does not exist yet: a failure leaves no folder behind', async () => {
  const dir = join(fresh(), 'new', 'data');
  const r = await cli(['data', 'fetch', 'fashion-mnist', '--dir', dir, '--mirror', `http://127.0.0.1:${closedPort}/`]);
  assert.equal(r.code, 1, r.err);
  assert.equal(existsSync(join(dir, '..', '..', 'new')), false);
});

test('data fetch --dir where no folder can be made (/proc) fails with one line, exit 2, at once (a real process)', async () => {
  const script = `const { main } = await import(${JSON.stringify(join(repo, 'src/cli/main.ts'))}); process.exitCode = await main(process.argv.slice(1));`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, 'data', 'fetch', 'fashion-mnist', '--dir', '/proc/moco3-nope', '--mirror', `http://127.0.0.1:${closedPort}/`], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d) => (err += String(d)));
  // Node's recursive mkdir loops there for ever (EEXIST from /proc): stopped after 20 s
  const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(timer);
  assert.equal(code, 2, `exit ${code}: ${err}`);
  assert.deepEqual(verdicts(err), ['moco3: /proc/moco3-nope: cannot make this folder (no such file or directory, ENOENT); fetch into a folder that can be written (--dir DIR)']);
});

test('data fetch: datasets with nothing to fetch, unknown names and bad mirrors are usage errors (exit 2)', async () => {
  for (const [args, pattern] of [
    [['data', 'fetch', 'synthetic'], /^moco3: data fetch synthetic: nothing to download for 'synthetic' \(fetchable: fashion-mnist, cifar10, cifar100\)$/],
    [['data', 'fetch', 'mnist'], /^moco3: data fetch mnist: unknown dataset 'mnist'/],
    [['data', 'fetch', 'cifar10', '--mirror', 'ftp://x/'], /^moco3: --mirror ftp:\/\/x\/: expected an http:\/\/ or https:\/\/ URL$/],
    // no host (the file's name became one), a port past 65535, nothing: said up front, naming the flag
    [['data', 'fetch', 'cifar10', '--mirror', 'http://'], /^moco3: --mirror http:\/\/: expected an http:\/\/ or https:\/\/ URL with a host \(and a port up to 65535\)$/],
    [['data', 'fetch', 'cifar10', '--mirror', 'http://x:99999/'], /^moco3: --mirror http:\/\/x:99999\/: expected an http:\/\/ or https:\/\/ URL with a host/],
    [['data', 'fetch', 'cifar10', '--mirror', ''], /^moco3: --mirror '': expected an http:\/\/ or https:\/\/ URL$/],
    // a query or fragment: the file's name would go into it (http://x/m?y=1/cifar-10-binary.tar.gz)
    [['data', 'fetch', 'cifar10', '--mirror', 'http://x/m?y=1'], /^moco3: --mirror http:\/\/x\/m\?y=1: expected an http:\/\/ or https:\/\/ URL without a query or fragment \(\? or #\): the file names are added to its path$/],
    [['data', 'fetch', 'cifar10', '--mirror', 'http://x/m#top'], /^moco3: --mirror http:\/\/x\/m#top: expected an http:\/\/ or https:\/\/ URL without a query or fragment/],
    [['data', 'info', 'mnist'], /^moco3: data info mnist: unknown dataset 'mnist' \(expected one of: synthetic, fashion-mnist, cifar10, cifar100/],
    [['data', 'info', 'cifar10', '--dir', '/a', '--data-path', '/b'], /^moco3: data info: give --data-path or --dir, not both$/],
  ] as const) {
    const r = await cli([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.equal(verdicts(r.err).length, 1, r.err);
    assert.match(verdicts(r.err)[0]!, pattern);
  }
});

for (const sig of ['SIGINT', 'SIGTERM'] as const) test(`data fetch: ${sig} (Ctrl-C, kill) exits 130 and keeps only the .part (a real process)`, { timeout: 15000 }, async () => {
  const dir = fresh();
  slowHits = 0;
  const script = `const { main } = await import(${JSON.stringify(join(repo, 'src/cli/main.ts'))}); process.exitCode = await main(process.argv.slice(1));`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, 'data', 'fetch', 'fashion-mnist', '--dir', dir, '--mirror', `${mirror}/slow/`], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d) => (err += String(d)));
  const part = join(dir, 'fashion-mnist', `${SOURCES['fashion-mnist'].files[0]!.name}.part`);
  const t0 = performance.now();
  while (!(existsSync(part) && statSync(part).size === 1000) && performance.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
  assert.equal(slowHits, 1, err);
  child.kill(sig);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  server.closeAllConnections();
  assert.equal(code, 130, err);
  assert.match(err, /moco3: interrupted; 1000 of \d+ bytes kept in .*\.part; run the same command again to resume/);
  assert.deepEqual(readdirSync(join(dir, 'fashion-mnist')), [`${SOURCES['fashion-mnist'].files[0]!.name}.part`]);
});


test('data fetch: files already in place and checked are not downloaded; it prints the --data flag to use', async () => {
  assert.ok(existsSync(join(FM, 't10k-labels-idx1-ubyte.gz')), 'needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist (.ci/run does)');
  const dir = fresh();
  mkdirSync(join(dir, 'fashion-mnist'), { recursive: true });
  for (const k of SOURCES['fashion-mnist'].files) symlinkSync(join(FM, k.name), join(dir, 'fashion-mnist', k.name));
  // the mirror is a closed port: any download would fail
  const r = await cli(['data', 'fetch', 'fashion-mnist', '--dir', dir, '--mirror', `http://127.0.0.1:${closedPort}/`]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err.split('\n').filter((l) => /: already there, checksum ok/.test(l)).length, 4, r.err);
  assert.equal(r.out, `fashion-mnist: ready in ${dir}/fashion-mnist (4 files, checksums ok)\nuse: moco3 train --data fashion-mnist:${dir}/fashion-mnist\n`);
  // the packaged copy is what plain --data fashion-mnist reads: said, since the flag to use names this one
  assert.match(r.err, /^note: \/usr\/share\/datasets\/fashion-mnist\/? holds Fashion-MNIST too; plain --data fashion-mnist reads that copy$/m);
  // that copy itself (checked, not written): plain --data fashion-mnist, and no note about it
  const own = await cli(['data', 'fetch', 'fashion-mnist', '--dir', dirname(FM), '--mirror', `http://127.0.0.1:${closedPort}/`]);
  assert.equal(own.code, 0, own.err);
  assert.equal(own.out, `fashion-mnist: ready in ${FM} (4 files, checksums ok)\nuse: moco3 train --data fashion-mnist\n`);
  assert.doesNotMatch(own.err, /note:/);
  // $MOCO3_MIRROR set but empty is unset, as every other variable: no mirror, and nothing to download here
  const empty = await cli(['data', 'fetch', 'fashion-mnist', '--dir', dir], { MOCO3_MIRROR: '' });
  assert.equal(empty.code, 0, empty.err);
  assert.equal(empty.out, r.out);
});

test('data info fashion-mnist --data-path: 60000/10000 images, 10 classes, 28x28, checksums ok', async () => {
  assert.ok(existsSync(FM), 'needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist (.ci/run does)');
  const r = await cli(['data', 'info', 'fashion-mnist', '--data-path', FM]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /images: train 60000, test 10000; 28x28, 1 channel/);
  assert.match(r.out, /classes \(10\): T-shirt\/top, Trouser, .*Ankle boot/);
  assert.match(r.out, /mean 0\.2860, std 0\.3530 \(measured on train: mean 0\.28\d\d, std 0\.35\d\d\)/);
  const sums = r.out.split('\n').filter((l) => /idx\d-ubyte/.test(l));
  assert.equal(sums.length, 4, r.out);
  for (const l of sums) assert.match(l, / ok( |$)/);
  assert.doesNotMatch(r.err, /moco3:/);
});

test('data info: missing data is one line saying where it looked and the fetch command, exit 2', async () => {
  const dir = fresh();
  mkdirSync(join(dir, 'loose'), { recursive: true });
  writeFileSync(join(dir, 'loose', 'test_batch.bin'), 'not a batch');
  writeFileSync(join(dir, 'loose', 'batch'), 'a file of another name');
  // three of the four Fashion-MNIST files: the one missing is named
  const part = join(dir, 'part', 'fashion-mnist');
  mkdirSync(part, { recursive: true });
  for (const f of ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte']) writeFileSync(join(part, f), 'x');
  const notArchive = (file: string, fill: string) =>
    `moco3: cifar10: ${file} is a file, not cifar-10-binary.tar.gz or a folder holding it (run: moco3 data fetch cifar10 --dir ${fill}; or download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz into ${fill}, or give --data-path PATH with the archive or its folder)`;
  for (const [args, line] of [
    [['fashion-mnist', '--data-path', part], `moco3: fashion-mnist: missing file t10k-labels-idx1-ubyte[.gz] (tried ${['t10k-labels-idx1-ubyte.gz', 't10k-labels-idx1-ubyte', 't10k-labels.idx1-ubyte.gz', 't10k-labels.idx1-ubyte'].map((f) => join(part, f)).join(', ')})`],
    [['cifar10', '--dir', dir], `moco3: cifar10: no data at ${dir}/cifar-10-batches-bin/ or ${dir}/cifar-10-binary.tar.gz (get it with: moco3 data fetch cifar10 --dir ${dir})`],
    [['fashion-mnist', '--dir', dir], `moco3: fashion-mnist: no data at ${dir}/fashion-mnist (get it with: moco3 data fetch fashion-mnist --dir ${dir})`],
    // a folder with a blank: the command is quoted for the shell
    [['fashion-mnist', '--dir', join(dir, 'my data')], `moco3: fashion-mnist: no data at ${dir}/my data/fashion-mnist (get it with: moco3 data fetch fashion-mnist --dir '${dir}/my data')`],
    [['cifar10', '--data-path', join(dir, 'my data', 'x.bin')], `moco3: cifar10: no data at ${dir}/my data/x.bin/cifar-10-batches-bin/ or ${dir}/my data/x.bin/cifar-10-binary.tar.gz (get it with: moco3 data fetch cifar10 --dir '${dir}/my data')`],
    [['fashion-mnist', '--data-path', join(dir, 'fashion-mnist')], `moco3: fashion-mnist: no data at ${dir}/fashion-mnist (get it with: moco3 data fetch fashion-mnist --dir ${dir})`],
    // the unpacked folder named: fetch fills the folder above it
    [['cifar10', '--data-path', join(dir, 'cifar-10-batches-bin')], `moco3: cifar10: no data at ${dir}/cifar-10-batches-bin/cifar-10-batches-bin/ or ${dir}/cifar-10-batches-bin/cifar-10-binary.tar.gz (get it with: moco3 data fetch cifar10 --dir ${dir})`],
    // a file named (one of the batches): said as the reader says it, no paths below the file; fetch fills its folder
    [['cifar10', '--data-path', join(dir, 'loose', 'test_batch.bin')], notArchive(join(dir, 'loose', 'test_batch.bin'), join(dir, 'loose'))],
    [['cifar10', '--data-path', join(dir, 'loose', 'batch')], notArchive(join(dir, 'loose', 'batch'), join(dir, 'loose'))],
    // a batch file that is not there: the unpacked folder's, so fetch fills the folder above it
    [['cifar10', '--data-path', join(dir, 'cifar-10-batches-bin', 'test_batch.bin')], `moco3: cifar10: no data at ${dir}/cifar-10-batches-bin/test_batch.bin/cifar-10-batches-bin/ or ${dir}/cifar-10-batches-bin/test_batch.bin/cifar-10-binary.tar.gz (get it with: moco3 data fetch cifar10 --dir ${dir})`],
    // a path below a file: the file named, no fetch command (fetch refuses a folder below a file)
    [['cifar10', '--data-path', join(dir, 'loose', 'batch', 'data')], `moco3: --data-path ${dir}/loose/batch/data: ${dir}/loose/batch is a file, not a folder: give a folder path`],
    [['fashion-mnist', '--data-path', join(dir, 'loose', 'batch', 'data')], `moco3: --data-path ${dir}/loose/batch/data: ${dir}/loose/batch is a file, not a folder: give a folder path`],
  ] as const) {
    const r = await cli(['data', 'info', ...args]);
    assert.equal(r.code, 2, r.err);
    assert.deepEqual(verdicts(r.err), [line]);
    assert.equal(r.out, '');
  }
});

test('data info, and the readers, with $MOCO3_DATA set to a file: said so, not a fetch command that fetch refuses (a real process)', async () => {
  const file = join(fresh(), 'data');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, 'not a folder');
  const run = async (args: string[]) => {
    const script = `const { main } = await import(${JSON.stringify(join(repo, 'src/cli/main.ts'))}); process.exitCode = await main(process.argv.slice(1));`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, ...args], {
      cwd: repo,
      env: { ...process.env, MOCO3_DATA: file },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += String(d)));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 2, `exit ${code}: ${err}`);
    return verdicts(err);
  };
  for (const name of ['cifar10', 'cifar100']) {
    assert.deepEqual(await run(['data', 'info', name]), [`moco3: $MOCO3_DATA ${file}: is a file, not a folder: give a folder path`]);
  }
  // the readers, as train and preview reach them: the variable named, no fetch offered beside the file
  const out = join(dirname(file), 'v.png');
  assert.deepEqual(await run(['data', 'preview', 'cifar10', '--out', out]), [`moco3: cifar10: $MOCO3_DATA ${file}: is a file, not a folder: set it to a data folder (or unset it for ~/.moco3/data)`]);
  assert.deepEqual(await run(['data', 'preview', 'imagefolder', '--out', out]), [`moco3: ${file}/imagenet: ${file} is a file, not a folder ($MOCO3_DATA names it): give the image folder (--data-path PATH)`]);
  assert.equal(existsSync(out), false);
  // doctor offers no fetch into it as it is: the fetch would be refused
  const doctor = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `const { main } = await import(${JSON.stringify(join(repo, 'src/cli/main.ts'))}); process.exitCode = await main(process.argv.slice(1));`, 'doctor'], {
    cwd: repo,
    env: { ...process.env, MOCO3_DATA: file },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let said = '';
  doctor.stdout.on('data', (d) => (said += String(d)));
  assert.equal(await new Promise<number | null>((r) => doctor.on('exit', (c) => r(c))), 0);
  for (const name of ['cifar10', 'cifar100']) {
    assert.ok(said.includes(`\n${name}: not found in ${file} — ${file} is a file, not a folder: set $MOCO3_DATA to a folder, then moco3 data fetch ${name}\n`), said);
  }
});

test('data info with $MOCO3_DATA blank: the default data directory, named as such, not as the variable (a real process)', async () => {
  const home = fresh();
  mkdirSync(join(home, '.moco3'), { recursive: true });
  writeFileSync(join(home, '.moco3', 'data'), 'not a folder');
  const script = `const { main } = await import(${JSON.stringify(join(repo, 'src/cli/main.ts'))}); process.exitCode = await main(process.argv.slice(1));`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, 'data', 'info', 'cifar10'], {
    cwd: repo,
    env: { ...process.env, HOME: home, MOCO3_DATA: ' ' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d) => (err += String(d)));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.equal(code, 2, err);
  assert.deepEqual(verdicts(err), [`moco3: the data directory ${join(home, '.moco3', 'data')}: is a file, not a folder: give a folder path`]);
});

test('data info: a damaged batch unpacked under $MOCO3_DATA: the command that unpacks it again has no --dir (fetch goes there anyway), elsewhere it names the folder (a real process)', async () => {
  const data = fresh();
  const folder = join(data, 'cifar-10-batches-bin');
  mkdirSync(folder, { recursive: true });
  for (let b = 1; b <= 5; b++) writeFileSync(join(folder, `data_batch_${b}.bin`), new Uint8Array(3073));
  writeFileSync(join(folder, 'test_batch.bin'), new Uint8Array(3073 + 100));
  const run = async (args: string[]) => {
    const script = `const { main } = await import(${JSON.stringify(join(repo, 'src/cli/main.ts'))}); process.exitCode = await main(process.argv.slice(1));`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, ...args], { cwd: repo, env: { ...process.env, MOCO3_DATA: data }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += String(d)));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 2, `exit ${code}: ${err}`);
    return verdicts(err);
  };
  assert.deepEqual(await run(['data', 'info', 'cifar10']), [`moco3: ${folder}: test_batch.bin: 3173 bytes is not a whole number of 3073-byte cifar10 records; \`moco3 data fetch cifar10\` unpacks it again`]);
  // the same folder given by its path: no longer under the data directory's name, so --dir names it
  const copy = fresh();
  cpSync(folder, join(copy, 'cifar-10-batches-bin'), { recursive: true });
  assert.deepEqual(await run(['data', 'info', 'cifar10', '--data-path', copy]), [`moco3: ${join(copy, 'cifar-10-batches-bin')}: test_batch.bin: 3173 bytes is not a whole number of 3073-byte cifar10 records; \`moco3 data fetch cifar10 --dir ${copy}\` unpacks it again`]);
});

test('data info: files that are not the published ones show as mismatch; extracted CIFAR files as not checked', async () => {
  const dir = fresh();
  // a tiny Fashion-MNIST where `data fetch --dir` puts it
  const fm = join(dir, 'fashion-mnist');
  mkdirSync(fm, { recursive: true });
  writeFileSync(join(fm, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdx([2, 28, 28], new Uint8Array(2 * 784).fill(51))));
  writeFileSync(join(fm, 'train-labels-idx1-ubyte.gz'), gzipSync(encodeIdx([2], Uint8Array.from([3, 4]))));
  writeFileSync(join(fm, 't10k-images-idx3-ubyte'), encodeIdx([1, 28, 28], new Uint8Array(784)));
  writeFileSync(join(fm, 't10k-labels-idx1-ubyte'), encodeIdx([1], Uint8Array.from([0])));
  const r = await cli(['data', 'info', 'fashion-mnist', '--dir', dir, '--json']);
  // described, and exit 2: damaged data is bad input (`data info && train` stops there)
  assert.equal(r.code, 2, r.err);
  const o = JSON.parse(r.out);
  assert.deepEqual([o.train, o.test, o.source], [2, 1, fm]);
  assert.deepEqual(o.measured_mean.map((x: number) => x.toFixed(3)), ['0.200']);
  assert.deepEqual(
    o.files.map((f: { path: string; status: string }) => [f.path.slice(fm.length + 1), f.status]),
    [
      ['train-images-idx3-ubyte.gz', 'mismatch'],
      ['train-labels-idx1-ubyte.gz', 'mismatch'],
      ['t10k-images-idx3-ubyte', 'mismatch'],
      ['t10k-labels-idx1-ubyte', 'mismatch'],
    ],
  );
  assert.match(r.err, /^moco3: fashion-mnist: some files do not match the published checksums; to download them again, moco3 data fetch fashion-mnist --dir /);
  assert.ok(r.err.includes(`--dir ${dir}\n`), r.err);
  // the same files named by --data-path: fetch goes where they are, not to the default folder
  const byPath = await cli(['data', 'info', 'fashion-mnist', '--data-path', fm, '--json']);
  assert.ok(byPath.err.includes(`to download them again, moco3 data fetch fashion-mnist --dir ${dir}\n`), byPath.err);
  // in a folder fetch would not fill (its name is not fashion-mnist): it says so
  const other = join(dir, 'fmnist-copy');
  cpSync(fm, other, { recursive: true });
  const copy = await cli(['data', 'info', 'fashion-mnist', '--data-path', other, '--json']);
  assert.ok(copy.err.includes(`to download them again, put the four files in ${other}, or get them with: moco3 data fetch fashion-mnist --dir DIR (into DIR/fashion-mnist) and give that folder`), copy.err);
  // CIFAR-10 as an extracted folder, no archive
  const cf = join(dir, 'cifar-10-batches-bin');
  mkdirSync(cf);
  for (const f of ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin']) {
    writeFileSync(join(cf, f), Uint8Array.from({ length: 3073 }, (_, i) => (i === 0 ? 4 : i % 256)));
  }
  const c = await cli(['data', 'info', 'cifar10', '--dir', dir]);
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /^cifar10: .*cifar-10-batches-bin\n/);
  assert.match(c.out, /images: train 5, test 1; 32x32, 3 channels/);
  assert.match(c.out, /classes \(10\): airplane, automobile, bird/);
  assert.match(c.out, new RegExp(`${dir}/cifar-10-binary\\.tar\\.gz +missing`));
  assert.equal(c.out.split('\n').filter((l) => /\.bin +not checked$/.test(l)).length, 6, c.out);
  // the same batches in a gzipped tar of another name (the reader takes any gzip file): the archive itself is checked
  const tgz = join(dir, 'cifar10.tgz');
  writeFileSync(tgz, gzipSync(tar(Object.fromEntries(readdirSync(cf).map((f) => [`cifar-10-batches-bin/${f}`, Uint8Array.from({ length: 3073 }, (_, i) => (i === 0 ? 4 : i % 256))])))));
  const t = await cli(['data', 'info', 'cifar10', '--data-path', tgz, '--json']);
  assert.equal(t.code, 2, t.err);
  assert.deepEqual(JSON.parse(t.out).files.map((f: { path: string; status: string }) => [f.path, f.status]), [[tgz, 'mismatch']]);
});

test('data info: a file of other bytes is shown with the published size and SHA-256 and its own, the first 16 hex digits of each, aligned', async () => {
  const dir = fresh();
  const fm = join(dir, 'fashion-mnist');
  mkdirSync(fm, { recursive: true });
  const files: Record<string, Buffer> = {
    'train-images-idx3-ubyte.gz': gzipSync(encodeIdx([2, 28, 28], new Uint8Array(2 * 784).fill(9))),
    'train-labels-idx1-ubyte.gz': gzipSync(encodeIdx([2], Uint8Array.from([1, 2]))),
    't10k-images-idx3-ubyte.gz': gzipSync(encodeIdx([1, 28, 28], new Uint8Array(784))),
    't10k-labels-idx1-ubyte.gz': gzipSync(encodeIdx([1], Uint8Array.from([0]))),
  };
  for (const [f, b] of Object.entries(files)) writeFileSync(join(fm, f), b);
  const r = await cli(['data', 'info', 'fashion-mnist', '--dir', dir]);
  assert.equal(r.code, 2, r.err);
  // the text form points at the lines below
  assert.equal(verdicts(r.err)[0], `moco3: fashion-mnist: some files do not match the published checksums (see the checksums); to download them again, moco3 data fetch fashion-mnist --dir ${dir}`);
  const lines = r.out.split('\n').filter((l) => l.includes('MISMATCH'));
  assert.equal(lines.length, 4, r.out);
  for (const k of SOURCES['fashion-mnist'].files) {
    const b = files[k.name]!;
    const sha = createHash('sha256').update(b).digest('hex');
    const line = lines.find((l) => l.startsWith(`    ${join(fm, k.name)} `));
    assert.ok(line, `${k.name}: ${r.out}`);
    assert.match(line!, new RegExp(`^    ${join(fm, k.name)} +MISMATCH: expected ${k.size} bytes sha256 ${k.sha256.slice(0, 16)}\\.\\.\\., got ${b.length} bytes sha256 ${sha.slice(0, 16)}\\.\\.\\.$`));
  }
  assert.equal(new Set(lines.map((l) => l.indexOf('MISMATCH'))).size, 1, r.out);
  // --image-size is checked as data.image_size is, for every dataset: up to 4096
  const big = await cli(['data', 'info', 'synthetic', '--image-size', '4097']);
  assert.equal(big.code, 2);
  assert.equal(big.err, 'moco3: --image-size 4097: expected an integer from 1 to 4096\n');
  assert.equal((await cli(['data', 'info', 'synthetic', '--image-size', '4096', '--json'])).code, 0);
  // the synthetic dataset given a folder: the flag given is the one named
  const syn = await cli(['data', 'info', 'synthetic', '--dir', dir]);
  assert.equal(syn.code, 2);
  assert.equal(syn.err, 'moco3: --dir: the synthetic dataset is built in; it reads no path\n');
});

test('data info synthetic: built in, abbreviated nothing, no files', async () => {
  const r = await cli(['data', 'info', 'synthetic', '--json']);
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out);
  assert.deepEqual([o.name, o.train, o.test, o.num_classes, o.channels, o.files.length], ['synthetic', 5000, 1000, 10, 3, 0]);
  // the sizes a run generates are its config's: the line says so, with the smoke preset's
  const t = await cli(['data', 'info', 'synthetic']);
  // (the 16x16 shown is the generator's own size; a run's is data.image_size, 224 by default)
  assert.ok(
    t.out.includes(
      "(built in: no files; shown here at 16x16; a run generates them at the sizes data.train_size, data.test_size and data.image_size give: " +
        "train 5000 and test 1000 when those are null (their default), at data.image_size (default 224); the smoke preset's: train 2560, test 500, 16x16)\n",
    ),
    t.out,
  );
  assert.match(t.out, /images: train 5000, test 1000; 16x16, 3 channels/);
});

test('data preview: writes the PNG sheet of a dataset\'s training views; bad flags give one line, exit 2, no file', async () => {
  const dir = tempDir('moco3-preview-');
  try {
    const out = join(dir, 'views.png');
    const r = await cli(['data', 'preview', 'synthetic', '--out', out, '--images', '3', '--pairs', '2', '--step', '4']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /3 synthetic images \(16x16\) of step 4's batch, 2 pairs of views at 16 px \(preset smoke/);
    const png = (await import('node:fs')).readFileSync(out);
    assert.deepEqual([...png.subarray(1, 4)].map((b) => String.fromCharCode(b)).join(''), 'PNG');
    assert.deepEqual(readdirSync(dir), ['views.png'], 'no temporary file left');
    // a preview trains nothing: a train split smaller than the preset's batch is no reason to refuse it
    const few = await cli(['data', 'preview', 'synthetic', '--set', 'data.train_size=8', '--images', '4', '--out', join(dir, 'few.png')]);
    assert.equal(few.code, 0, few.err);
    assert.match(few.out, /4 synthetic images \(16x16\) of step 0's batch/);
    rmSync(join(dir, 'few.png'));
    for (const [args, msg] of [
      [['data', 'preview', 'synthetic', '--out', join(dir, 'v.jpg')], /--out .*v\.jpg: expected a \.png file name/],
      [['data', 'preview', 'mnist', '--out', join(dir, 'x.png')], /^moco3: data preview mnist: unknown dataset 'mnist'/],
      [['data', 'preview', 'synthetic', '--images', '0', '--out', join(dir, 'x.png')], /--images 0: expected an integer from 1 to 64/],
      [['data', 'preview', 'fashion-mnist', '--data-path', join(dir, 'nowhere'), '--out', join(dir, 'x.png')], /fashion-mnist: directory .*nowhere not found/],
    ] as const) {
      const e = await cli([...args]);
      assert.equal(e.code, 2, `${args.join(' ')}: ${e.err}`);
      assert.match(e.err, msg);
      assert.equal(e.err.trim().split('\n').length, 1);
    }
    assert.deepEqual(readdirSync(dir), ['views.png']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data preview: the preset follows the dataset (fashion-mnist: cpu); a train split under --images shows all of it; --seed is the run seed; bounds of --images and --pairs; a folder as --out, or --data-path without a name, refused', async () => {
  const dir = fresh();
  const fm = join(dir, 'fashion-mnist');
  mkdirSync(fm, { recursive: true });
  writeFileSync(join(fm, 'train-images-idx3-ubyte'), encodeIdx([3, 28, 28], Uint8Array.from({ length: 3 * 784 }, (_, i) => (i * 7) % 256)));
  writeFileSync(join(fm, 'train-labels-idx1-ubyte'), encodeIdx([3], Uint8Array.from([1, 2, 3])));
  writeFileSync(join(fm, 't10k-images-idx3-ubyte'), encodeIdx([1, 28, 28], new Uint8Array(784)));
  writeFileSync(join(fm, 't10k-labels-idx1-ubyte'), encodeIdx([1], Uint8Array.from([0])));
  // an upper-case .PNG is a PNG name too
  const out = join(dir, 'fm.PNG');
  const r = await cli(['data', 'preview', 'fashion-mnist', '--data-path', fm, '--images', '8', '--pairs', '1', '--out', out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^${out}: 3 fashion-mnist images \\(28x28\\) of step 0's batch, 1 pair of views at 28 px \\(preset cpu, `));
  assert.ok(existsSync(out));
  // the same seed, the same sheet; another seed, other images and views
  const sheet = async (seed: string) => {
    const png = join(dir, `s${seed}-${++n}.png`);
    const s = await cli(['data', 'preview', 'synthetic', '--images', '2', '--pairs', '1', '--seed', seed, '--out', png]);
    assert.equal(s.code, 0, s.err);
    return readFileSync(png);
  };
  const one = await sheet('1');
  assert.deepEqual(await sheet('1'), one);
  assert.notDeepEqual(await sheet('2'), one);
  // train.shuffle=false: the batch is the split's first images, not the seed's draw
  const ordered = join(dir, 'ordered.png');
  const o = await cli(['data', 'preview', 'synthetic', '--images', '2', '--pairs', '1', '--seed', '1', '--set', 'train.shuffle=false', '--out', ordered]);
  assert.equal(o.code, 0, o.err);
  assert.notDeepEqual(readFileSync(ordered), one);
  const before = readdirSync(dir).sort();
  mkdirSync(join(dir, 'folder.png'));
  for (const [args, line] of [
    [['synthetic', '--images', '65'], 'moco3: --images 65: expected an integer from 1 to 64'],
    [['synthetic', '--pairs', '9'], 'moco3: --pairs 9: expected an integer from 1 to 8'],
    [['synthetic', '--pairs', '0'], 'moco3: --pairs 0: expected an integer from 1 to 8'],
    [['synthetic', '--step', '-1'], 'moco3: --step -1: expected a non-negative integer'],
    [['--data-path', fm], 'moco3: --data-path needs the dataset name too'],
    // a --set of what the dataset argument gives: the argument named as given, not as train's --data
    [['fashion-mnist', '--data-path', fm, '--set', 'data.name=cifar10'], `moco3: data preview fashion-mnist --data-path ${fm}: --set data.name=cifar10 sets data.name too; give one of them`],
  ] as const) {
    const e = await cli(['data', 'preview', ...args, '--out', join(dir, 'x.png')]);
    assert.equal(e.code, 2, `${args.join(' ')}: ${e.err}`);
    assert.equal(e.err, `${line}\n`);
  }
  const folder = await cli(['data', 'preview', 'synthetic', '--out', join(dir, 'folder.png')]);
  assert.equal(folder.code, 2);
  assert.equal(folder.err, `moco3: --out ${join(dir, 'folder.png')}: is a folder; give a .png file name\n`);
  assert.deepEqual(readdirSync(join(dir, 'folder.png')), []);
  assert.deepEqual(readdirSync(dir).sort(), [...before, 'folder.png'].sort());
});

test('data info: up to 12 class names are all listed; more are the first five and the last two', async () => {
  const dir = fresh();
  const sharp = (await import('sharp')).default;
  const names = Array.from({ length: 13 }, (_, i) => `k${String(i).padStart(2, '0')}`);
  for (const split of ['train', 'val']) {
    for (const c of names) {
      mkdirSync(join(dir, split, c), { recursive: true });
      await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toFile(join(dir, split, c, 'a.png'));
    }
  }
  const classes = async () => {
    const r = await cli(['data', 'info', 'imagefolder', '--data-path', dir, '--image-size', '8']);
    assert.equal(r.code, 0, r.err);
    return r.out.split('\n').find((l) => l.startsWith('  classes ('));
  };
  assert.equal(await classes(), '  classes (13): k00, k01, k02, k03, k04, ... , k11, k12');
  for (const split of ['train', 'val']) rmSync(join(dir, split, 'k12'), { recursive: true });
  assert.equal(await classes(), `  classes (12): ${names.slice(0, 12).join(', ')}`);
});

test('data info of an image folder: the train pixels measured per channel over every image of a split of 201', async () => {
  const dir = fresh();
  const sharp = (await import('sharp')).default;
  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 51, g: 102, b: 153 } } }).png().toBuffer();
  for (const [split, c, count] of [['train', 'a', 101], ['train', 'b', 100], ['val', 'a', 1], ['val', 'b', 1]] as const) {
    mkdirSync(join(dir, split, c), { recursive: true });
    for (let i = 0; i < count; i++) writeFileSync(join(dir, split, c, `${i}.png`), png);
  }
  const r = await cli(['data', 'info', 'imagefolder', '--data-path', dir, '--image-size', '8']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^  images: train 201, test 2; /m);
  // 51, 102 and 153 of 255 in every pixel
  assert.match(r.out, /^  normalisation: .* \(measured on train: mean 0\.2000 0\.4000 0\.6000, std 0\.0000 0\.0000 0\.0000\)$/m);
});

test('corrupt data reaches the user as one line naming the file, exit 2: an undecodable image, a bad IDX magic', async () => {
  const dir = tempDir('moco3-corrupt-');
  try {
    const folder = join(dir, 'folder');
    for (const split of ['train', 'val']) for (const cls of ['a', 'b']) mkdirSync(join(folder, split, cls), { recursive: true });
    const sharp = (await import('sharp')).default;
    for (const f of ['train/a/ok.png', 'val/a/ok.png', 'val/b/ok.png']) {
      await sharp({ create: { width: 20, height: 16, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toFile(join(folder, f));
    }
    writeFileSync(join(folder, 'train', 'b', 'broken.jpg'), Buffer.from('this is not a jpeg'));
    const r = await cli(['data', 'info', 'imagefolder', '--data-path', folder]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /broken\.jpg.*(decode|corrupt|unsupported)/i);
    assert.equal(r.err.trim().split('\n').length, 1);

    const fm = join(dir, 'fm');
    mkdirSync(fm);
    const good = encodeIdx([4, 28, 28], new Uint8Array(4 * 28 * 28));
    const labels = encodeIdx([4], new Uint8Array([0, 1, 2, 3]));
    writeFileSync(join(fm, 'train-images-idx3-ubyte'), good);
    writeFileSync(join(fm, 'train-labels-idx1-ubyte'), labels);
    writeFileSync(join(fm, 't10k-images-idx3-ubyte'), Buffer.concat([Buffer.from([0, 0, 9, 9]), good.subarray(4)]));
    writeFileSync(join(fm, 't10k-labels-idx1-ubyte'), labels);
    const m = await cli(['data', 'info', 'fashion-mnist', '--data-path', fm]);
    assert.equal(m.code, 2, m.err);
    assert.match(m.err, /t10k-images-idx3-ubyte.*magic/i);
    assert.equal(m.err.trim().split('\n').length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data info imagefolder: counts and classes, at the cache size of the given training image size', async () => {
  const dir = tempDir('moco3-info-if-');
  try {
    const sharp = (await import('sharp')).default;
    const files = ['train/cat/a.png', 'train/cat/b.jpg', 'train/dog/c.png', 'val/cat/d.png', 'val/dog/e.jpg'];
    for (const f of files) {
      mkdirSync(dirname(join(dir, f)), { recursive: true });
      const img = sharp({ create: { width: 48, height: 40, channels: 3, background: { r: 30, g: 140, b: 220 } } });
      await (f.endsWith('.png') ? img.png() : img.jpeg()).toFile(join(dir, f));
    }
    const r = await cli(['data', 'info', 'imagefolder', '--data-path', dir, '--image-size', '32', '--json']);
    assert.equal(r.code, 0, r.err);
    const o = JSON.parse(r.out) as { train: number; test: number; num_classes: number; class_names: string[]; height: number; width: number };
    // round(32 * 256 / 224) = 37 px squares
    assert.deepEqual([o.train, o.test, o.num_classes, o.class_names, o.height, o.width], [3, 2, 2, ['cat', 'dog'], 37, 37]);
    // without --image-size: data.image_size's default, 224; the cache side is the images' shorter side (40 px,
    // under 256) but at least the training size: 224
    const def = await cli(['data', 'info', 'imagefolder', '--data-path', dir, '--json']);
    assert.equal(def.code, 0, def.err);
    assert.deepEqual([JSON.parse(def.out).height, JSON.parse(def.out).width], [224, 224]);
    // --dir names a data directory: its imagenet/ folder is read, as the reader's default under $MOCO3_DATA
    const data = join(dir, 'data');
    cpSync(join(dir, 'train'), join(data, 'imagenet', 'train'), { recursive: true });
    cpSync(join(dir, 'val'), join(data, 'imagenet', 'val'), { recursive: true });
    const byDir = await cli(['data', 'info', 'imagefolder', '--dir', data, '--image-size', '32', '--json']);
    assert.equal(byDir.code, 0, byDir.err);
    assert.deepEqual([JSON.parse(byDir.out).train, JSON.parse(byDir.out).source], [3, join(data, 'imagenet')]);
    const bad = await cli(['data', 'info', 'imagefolder', '--data-path', dir, '--image-size', 'x']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--image-size x: expected an integer from 1 to 4096/);
    // the hint names this command's flag for the folder, not train's --data NAME:PATH
    const gone = await cli(['data', 'info', 'imagefolder', '--data-path', join(dir, 'nope')]);
    assert.equal(gone.code, 2);
    assert.match(gone.err, /nope: image folder not found \(--data-path PATH, /);
    const preview = await cli(['data', 'preview', 'imagefolder', '--data-path', join(dir, 'nope'), '--out', join(dir, 'v.png')]);
    assert.equal(preview.code, 2);
    assert.match(preview.err, /nope: image folder not found \(--data-path PATH, /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
