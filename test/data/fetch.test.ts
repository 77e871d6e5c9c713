import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import fs, { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadDataset } from '../../src/data/index.ts';
import { encodeIdx } from '../../src/data/idx.ts';
import { hostTag } from '../../src/engine/files.ts';
import { DataError } from '../../src/data/types.ts';
import { checkFile, SOURCES, type DatasetSource, type KnownFile } from '../../src/data/checksums.ts';
import { isNotInputFault } from '../../src/config/errors.ts';
import { extractArchive, FETCH_LOCK, fetchDataset, FetchInterrupted, mb, urlFor } from '../../src/data/fetch.ts';
import { cifarRecords as records, tar } from '../helpers/archives.ts';
import { tempDir } from '../helpers/tmp.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const known = (name: string, body: Uint8Array): KnownFile => ({ name, size: body.length, sha256: sha(body) });

// ---- fixtures: a tiny Fashion-MNIST (4 gzipped IDX files) and a tiny CIFAR-10 archive ----

const fm = {
  'train-images-idx3-ubyte.gz': gzipSync(encodeIdx([3, 2, 2], Uint8Array.from([0, 1, 2, 3, 10, 11, 12, 13, 250, 251, 252, 255]))),
  'train-labels-idx1-ubyte.gz': gzipSync(encodeIdx([3], Uint8Array.from([9, 0, 4]))),
  't10k-images-idx3-ubyte.gz': gzipSync(encodeIdx([2, 2, 2], Uint8Array.from([5, 6, 7, 8, 100, 101, 102, 103]))),
  't10k-labels-idx1-ubyte.gz': gzipSync(encodeIdx([2], Uint8Array.from([1, 2]))),
} as Record<string, Buffer>;
// one file big enough to arrive in several chunks (resume, interruption): 300 images of 28x28 noise
const bigImages = gzipSync(encodeIdx([300, 28, 28], Uint8Array.from({ length: 300 * 784 }, (_, i) => (i * 2654435761) >>> 24)), { level: 0 });


const cifarFiles: Record<string, Uint8Array> = { 'cifar-10-batches-bin/batches.meta.txt': Buffer.from('airplane\nautomobile\n') };
for (let b = 1; b <= 5; b++) cifarFiles[`cifar-10-batches-bin/data_batch_${b}.bin`] = records(2, 1, b);
cifarFiles['cifar-10-batches-bin/test_batch.bin'] = records(3, 1, 7);
const cifarTgz = gzipSync(tar(cifarFiles));
// a gzip that checks out but holds a tar cut in the middle of a file
const cifarCut = gzipSync(tar(cifarFiles).subarray(0, 512 * 10));

// ---- a local server: files by name, Range on or off, and a few misbehaviours ----

// star-range: a 206 whose Content-Range gives no total (bytes A-B/*); chunked: a 200 with no Content-Length;
// encoded: a 200 saying Content-Encoding: gzip (the body as served, its Content-Length that body's)
type Mode = 'range' | 'ignore-range' | 'wrong-range' | 'star-range' | 'chunked' | 'encoded' | 'cut' | 'hang-after-half' | 'pause-at-half' | 'no-answer';
const served = new Map<string, Uint8Array>();
let mode: Mode = 'range';
let seen: Array<{ url: string; range: string | undefined; encoding?: string | undefined }> = [];
const server = http.createServer((req, res) => {
  seen.push({ url: req.url ?? '', range: req.headers.range, encoding: req.headers['accept-encoding'] });
  if (mode === 'no-answer') return; // accepts, never answers
  const url = req.url ?? '/';
  if (url.startsWith('/old/')) {
    res.writeHead(302, { location: `/files/${url.slice(5)}` });
    res.end();
    return;
  }
  const body = url.startsWith('/files/') ? served.get(decodeURIComponent(url.slice(7))) : undefined;
  if (!body) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not here');
    return;
  }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m && mode === 'wrong-range') {
    // the whole file, said as a range from byte 0, whatever was asked
    res.writeHead(206, { 'content-length': body.length, 'content-range': `bytes 0-${body.length - 1}/${body.length}` });
    res.end(body);
    return;
  }
  if (m && mode !== 'ignore-range') {
    const from = Number(m[1]);
    res.writeHead(206, { 'content-length': body.length - from, 'content-range': `bytes ${from}-${body.length - 1}/${mode === 'star-range' ? '*' : body.length}` });
    res.end(body.subarray(from));
    return;
  }
  res.writeHead(200, mode === 'chunked' ? {} : mode === 'encoded' ? { 'content-length': body.length, 'content-encoding': 'gzip' } : { 'content-length': body.length });
  if (mode === 'pause-at-half') {
    res.write(body.subarray(0, body.length >> 1));
    setTimeout(() => res.end(body.subarray(body.length >> 1)), 150);
    return;
  }
  if (mode === 'cut' || mode === 'hang-after-half') {
    res.write(body.subarray(0, body.length >> 1));
    if (mode === 'cut') setTimeout(() => res.socket?.destroy(), 30);
    return;
  }
  res.end(body);
});
let base = '';

const root = tempDir('moco3-fetch-');
before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/files/`;
});
after(() => {
  server.closeAllConnections();
  server.close();
  rmSync(root, { recursive: true, force: true });
});
beforeEach(() => {
  mode = 'range';
  seen = [];
  served.clear();
});

let n = 0;
const freshDir = () => join(root, `d${++n}`);

function fmSource(files = fm): DatasetSource {
  for (const [name, body] of Object.entries(files)) served.set(name, body);
  return { name: 'fashion-mnist', baseUrl: base, subdir: 'fashion-mnist', files: Object.entries(files).map(([k, v]) => known(k, v)) };
}

function oneFile(name: string, body: Uint8Array, extra: Partial<DatasetSource> = {}): DatasetSource {
  served.set(name, body);
  return { name: 'fashion-mnist', baseUrl: base, subdir: '', files: [known(name, body)], ...extra };
}

const leftovers = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.part') || f.endsWith('.tmp') || f.endsWith('.old')) : []);

// ---- the table ----

test('the real table: every file has a size and a 64-hex SHA-256, URLs at the datasets\' homes', () => {
  for (const s of Object.values(SOURCES)) {
    assert.ok(s.files.length > 0);
    for (const f of s.files) {
      assert.match(f.sha256, /^[0-9a-f]{64}$/, f.name);
      assert.ok(Number.isInteger(f.size) && f.size > 1000, f.name);
      if (f.content) assert.match(f.content.sha256, /^[0-9a-f]{64}$/);
    }
  }
  assert.equal(urlFor(SOURCES.cifar10.baseUrl, SOURCES.cifar10.files[0]!.name), 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz');
  assert.equal(urlFor(SOURCES['fashion-mnist'].baseUrl, 't10k-labels-idx1-ubyte.gz'), 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz');
  assert.equal(urlFor('http://m.example/data', 'x.gz'), 'http://m.example/data/x.gz');
  // tensorflow_datasets/url_checksums/cifar10.txt, cifar100.txt
  assert.equal(SOURCES.cifar10.files[0]!.size, 170052171);
  assert.equal(SOURCES.cifar100.files[0]!.sha256, '58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec');
});

test('the table holds the published files: sizes and SHA-256 as tensorflow_datasets lists them (url_checksums), folders as the archives unpack', () => {
  const table = Object.fromEntries(Object.values(SOURCES).flatMap((s) => s.files.map((f) => [f.name, [f.size, f.sha256]])));
  assert.deepEqual(table, {
    'train-images-idx3-ubyte.gz': [26421880, '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84'],
    'train-labels-idx1-ubyte.gz': [29515, 'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845'],
    't10k-images-idx3-ubyte.gz': [4422102, '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073'],
    't10k-labels-idx1-ubyte.gz': [5148, '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5'],
    'cifar-10-binary.tar.gz': [170052171, 'c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd'],
    'cifar-100-binary.tar.gz': [168513733, '58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec'],
  });
  assert.deepEqual([SOURCES.cifar10.extract, SOURCES.cifar100.extract], [
    { archive: 'cifar-10-binary.tar.gz', folder: 'cifar-10-batches-bin' },
    { archive: 'cifar-100-binary.tar.gz', folder: 'cifar-100-binary' },
  ]);
});

test('the Debian Fashion-MNIST files check as the published content (their gzip header differs)', async () => {
  assert.ok(existsSync('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'), 'needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist (.ci/run does)');
  const k = SOURCES['fashion-mnist'].files.find((f) => f.name === 't10k-labels-idx1-ubyte.gz')!;
  const c = await checkFile('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz', k);
  assert.equal(c.status, 'ok');
  assert.equal(c.how, 'content');
  // the same bytes decompressed: an uncompressed copy checks too; a changed byte does not
  const { gunzipSync } = await import('node:zlib');
  const raw = gunzipSync(readFileSync('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'));
  const dir = freshDir();
  mkdirSync(dir);
  writeFileSync(join(dir, 'raw'), raw);
  assert.equal((await checkFile(join(dir, 'raw'), k)).status, 'ok');
  raw[100] = (raw[100]! + 1) % 10;
  writeFileSync(join(dir, 'raw'), raw);
  const bad = await checkFile(join(dir, 'raw'), k);
  assert.equal(bad.status, 'mismatch');
  // said against the decompressed file it is, not against the .gz
  assert.deepEqual([bad.expected, bad.got?.size], [k.content, raw.length]);
});

// ---- downloads ----

test('a fresh download is verified and appears under its name only when whole; the reader reads it', async () => {
  const dir = freshDir();
  const src = fmSource();
  const during: string[] = [];
  const lines: string[] = [];
  let updates = 0;
  const r = await fetchDataset(src, {
    dir,
    log: (l) => lines.push(l),
    progress: (file) => ({
      start: () => {},
      update: () => {
        updates++;
        // while bytes arrive, the final name does not exist yet
        if (existsSync(join(dir, 'fashion-mnist', file))) during.push(`${file} visible during download`);
      },
      stop: () => {},
    }),
  });
  assert.deepEqual(during, []);
  assert.equal(updates > 0, true);
  assert.equal(r.dir, join(dir, 'fashion-mnist'));
  assert.deepEqual(r.files.map((f) => f.action), ['downloaded', 'downloaded', 'downloaded', 'downloaded']);
  for (const [name, body] of Object.entries(fm)) assert.deepEqual(readFileSync(join(dir, 'fashion-mnist', name)), body);
  assert.deepEqual(leftovers(r.dir), []);
  assert.equal(r.dataFlag, `--data fashion-mnist:${join(dir, 'fashion-mnist')}`);
  assert.deepEqual(lines.filter((l) => /checksum ok/.test(l)), Object.keys(fm).map((name) => `${name}: checksum ok`), lines.join('\n'));
  const ds = await loadDataset({ name: 'fashion-mnist', path: r.dir, trainSize: null, testSize: null, seed: 0 });
  assert.equal(ds.train.n, 3);
  assert.deepEqual([...ds.test.labels], [1, 2]);
});

test('during a download only the .part exists; the file appears under its name once checked', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  mode = 'pause-at-half';
  let seenMidway: Promise<[boolean, number]> | null = null;
  const r = await fetchDataset(src, {
    dir,
    progress: () => ({
      start: () => {},
      update: (done) => {
        // the server pauses 150 ms after the first half: look while it does
        if (!seenMidway && done >= bigImages.length >> 1) {
          seenMidway = new Promise((ok) =>
            setTimeout(() => {
              const part = join(dir, 'train-images-idx3-ubyte.gz.part');
              ok([existsSync(join(dir, 'train-images-idx3-ubyte.gz')), existsSync(part) ? readFileSync(part).length : -1]);
            }, 75),
          );
        }
      },
      stop: () => {},
    }),
  });
  const midway = seenMidway as Promise<[boolean, number]> | null; // set in the callback
  assert.ok(midway, 'the download arrived in one piece');
  const [finalVisible, partBytes] = await midway;
  assert.equal(finalVisible, false);
  assert.equal(partBytes, bigImages.length >> 1);
  assert.equal(r.files[0]!.action, 'downloaded');
  assert.deepEqual(readFileSync(join(dir, 'train-images-idx3-ubyte.gz')), bigImages);
  assert.deepEqual(leftovers(dir), []);
});

test('a .part holding the first half is resumed with a Range request', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  const half = bigImages.length >> 1;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz.part'), bigImages.subarray(0, half));
  const lines: string[] = [];
  const r = await fetchDataset(src, { dir, log: (l) => lines.push(l) });
  assert.equal(r.files[0]!.action, 'resumed');
  assert.deepEqual(seen.map((s) => s.range), [`bytes=${half}-`]);
  // the file's own bytes asked for: no content coding (a server may use one where none is named), whose
  // bytes would not continue the .part
  assert.deepEqual(seen.map((s) => s.encoding), ['identity']);
  assert.equal(sha(readFileSync(join(dir, 'train-images-idx3-ubyte.gz'))), sha(bigImages));
  assert.deepEqual(leftovers(dir), []);
  assert.ok(lines.some((l) => /resuming at/.test(l)), lines.join('\n'));
  assert.ok(lines.includes(`train-images-idx3-ubyte.gz: resuming at ${mb(half)} of ${mb(bigImages.length)}`), lines.join('\n'));
  assert.notEqual(mb(half), mb(bigImages.length));
});

test('a resume whose server gives the file another size (a mirror holding another file) is refused: the .part is deleted, and the error is no fault of the input (exit 1)', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  const half = bigImages.length >> 1;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz.part'), bigImages.subarray(0, half));
  const other = Buffer.concat([bigImages, Buffer.alloc(1000, 1)]);
  served.set('train-images-idx3-ubyte.gz', other);
  await assert.rejects(fetchDataset(src, { dir }), (e: Error) => {
    assert.ok(e instanceof DataError);
    assert.equal(e.message, `train-images-idx3-ubyte.gz: ${base}train-images-idx3-ubyte.gz is ${other.length} bytes, expected ${bigImages.length} (sha256 ${sha(bigImages)}); the partial file was deleted`);
    assert.equal(isNotInputFault(e), true);
    return true;
  });
  assert.deepEqual(seen.map((s) => s.range), [`bytes=${half}-`]);
  assert.deepEqual(readdirSync(dir), []);
});

test('a server that ignores Range (200) makes the download start over, and the result is right', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  mkdirSync(dir, { recursive: true });
  // a .part whose bytes are wrong: appending to it would give a bad file
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz.part'), Buffer.alloc(1000, 7));
  mode = 'ignore-range';
  const lines: string[] = [];
  const r = await fetchDataset(src, { dir, log: (l) => lines.push(l) });
  assert.equal(seen[0]!.range, 'bytes=1000-');
  assert.equal(r.files[0]!.action, 'downloaded');
  assert.deepEqual(readFileSync(join(dir, 'train-images-idx3-ubyte.gz')), bigImages);
  assert.ok(lines.some((l) => /ignored the range request; starting over/.test(l)), lines.join('\n'));
});

test('a server answering a range request with another range makes the download start over (the .part was kept, and every run failed alike)', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz.part'), bigImages.subarray(0, 1000));
  mode = 'wrong-range';
  const lines: string[] = [];
  const r = await fetchDataset(src, { dir, log: (l) => lines.push(l) });
  assert.deepEqual(seen.map((s) => s.range), ['bytes=1000-', undefined]);
  assert.equal(r.files[0]!.action, 'downloaded');
  assert.deepEqual(readFileSync(join(dir, 'train-images-idx3-ubyte.gz')), bigImages);
  assert.deepEqual(leftovers(dir), []);
  assert.ok(lines.includes(`train-images-idx3-ubyte.gz: the server answered the range request with another range (bytes 0-${bigImages.length - 1}/${bigImages.length}); starting over`), lines.join('\n'));
});

test('a folder where the .part goes: one line naming it, before any request (it failed every run after one)', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  const part = join(dir, 'train-images-idx3-ubyte.gz.part');
  mkdirSync(part, { recursive: true });
  await assert.rejects(fetchDataset(src, { dir }), (e: Error) => e instanceof DataError && e.message === `${part}: is no file, where the partial download of train-images-idx3-ubyte.gz goes: move it away, or fetch into another --dir`);
  assert.deepEqual(seen, []);
  assert.ok(existsSync(part));
});

test('a checksum mismatch fails with one line naming the file, expected and got; nothing is kept', async () => {
  const dir = freshDir();
  const body = fm['t10k-labels-idx1-ubyte.gz']!;
  const src = oneFile('t10k-labels-idx1-ubyte.gz', body);
  const wrong = Buffer.from(body);
  wrong[wrong.length - 1] ^= 0xff; // same size, other bytes
  served.set('t10k-labels-idx1-ubyte.gz', wrong);
  await assert.rejects(fetchDataset(src, { dir }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, new RegExp(`^t10k-labels-idx1-ubyte\\.gz: checksum mismatch .*expected ${body.length} bytes sha256 ${sha(body)}, got ${wrong.length} bytes sha256 ${sha(wrong)}`));
    return true;
  });
  assert.equal(existsSync(join(dir, 't10k-labels-idx1-ubyte.gz')), false);
  assert.deepEqual(leftovers(dir), []);
});

test('a server announcing the wrong size is refused before anything is written', async () => {
  const dir = freshDir();
  const src = oneFile('t10k-labels-idx1-ubyte.gz', fm['t10k-labels-idx1-ubyte.gz']!);
  served.set('t10k-labels-idx1-ubyte.gz', Buffer.from('<html>a captive portal</html>'));
  await assert.rejects(fetchDataset(src, { dir }), /^DataError: t10k-labels-idx1-ubyte\.gz: http:\/\/127\.0\.0\.1:\d+\/files\/t10k-labels-idx1-ubyte\.gz is 29 bytes, expected \d+/);
  // nothing, not even the folder the fetch made
  assert.equal(existsSync(dir), false);
});

test('a server that sends more bytes than the file has (no Content-Length to refuse it by) is cut off there: the .part deleted, no fault of the input (exit 1)', async () => {
  const dir = freshDir();
  const body = fm['t10k-labels-idx1-ubyte.gz']!;
  const src = oneFile('t10k-labels-idx1-ubyte.gz', body);
  served.set('t10k-labels-idx1-ubyte.gz', Buffer.concat([body, Buffer.alloc(5000, 1)]));
  mode = 'chunked';
  await assert.rejects(fetchDataset(src, { dir }), (e: Error) => {
    assert.ok(e instanceof DataError);
    assert.equal(e.message, `t10k-labels-idx1-ubyte.gz: ${base}t10k-labels-idx1-ubyte.gz sent more than the ${body.length} bytes expected (sha256 ${sha(body)}); the partial file was deleted`);
    assert.equal(isNotInputFault(e), true);
    return true;
  });
  // nothing, not even the folder the fetch made
  assert.equal(existsSync(dir), false);
});

test('a refused download is cut at once, not read to its end (a wrong file of 160 MB was drained for minutes)', async () => {
  const dir = freshDir();
  const src = oneFile('t10k-labels-idx1-ubyte.gz', fm['t10k-labels-idx1-ubyte.gz']!);
  served.set('t10k-labels-idx1-ubyte.gz', Buffer.alloc(4 << 20));
  mode = 'hang-after-half'; // sends half its body, then waits: only the client can end the connection
  const closed = new Promise<string>((r) => server.once('request', (_req, res: http.ServerResponse) => res.on('close', () => r('closed'))));
  await assert.rejects(fetchDataset(src, { dir }), /is 4194304 bytes, expected \d+/);
  const open = new Promise<string>((r) => setTimeout(() => r('still open'), 3000).unref());
  assert.equal(await Promise.race([closed, open]), 'closed');
});

test('connection refused fails fast with one line: the URL, the error, and the way round it', async () => {
  const dir = freshDir();
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const src: DatasetSource = { name: 'cifar10', baseUrl: `http://127.0.0.1:${port}/`, subdir: '', files: [known('cifar-10-binary.tar.gz', cifarTgz)] };
  const t0 = performance.now();
  await assert.rejects(fetchDataset(src, { dir }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.equal(
      e.message,
      `cannot download http://127.0.0.1:${port}/cifar-10-binary.tar.gz: connection refused (ECONNREFUSED); download it yourself and put it in ${dir} (a folder to make: this fetch removed the empty one it made), or use --mirror URL`,
    );
    return true;
  });
  assert.ok(performance.now() - t0 < 2000);
  assert.equal(existsSync(dir), false);
  // into a folder that was there: named as it is
  mkdirSync(dir, { recursive: true });
  await assert.rejects(fetchDataset(src, { dir }), (e: Error) => e.message.endsWith(`download it yourself and put it in ${dir}, or use --mirror URL`));
  assert.ok(existsSync(dir));
  assert.deepEqual(leftovers(dir), []);
});

test('a server that never answers times out (connect timeout), one line', async () => {
  const dir = freshDir();
  const src = oneFile('t10k-labels-idx1-ubyte.gz', fm['t10k-labels-idx1-ubyte.gz']!);
  mode = 'no-answer';
  const t0 = performance.now();
  await assert.rejects(fetchDataset(src, { dir, connectTimeoutMs: 300 }), /^DataError: cannot download http:\/\/127\.0\.0\.1:\d+\/files\/t10k-labels-idx1-ubyte\.gz: no answer within 300 ms; download it yourself/);
  assert.ok(performance.now() - t0 < 2000);
  server.closeAllConnections();
});

test('HTTP 404 fails with one line naming the URL and the status', async () => {
  const dir = freshDir();
  const src: DatasetSource = { name: 'fashion-mnist', baseUrl: base, subdir: '', files: [known('nothere.gz', Buffer.from('x'))] };
  await assert.rejects(fetchDataset(src, { dir }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /^cannot download http:\/\/127\.0\.0\.1:\d+\/files\/nothere\.gz: HTTP 404 Not Found; download it yourself and put it in .*, or use --mirror URL$/);
    return true;
  });
  assert.equal(existsSync(dir), false);
});

test('redirects are followed; a mirror replaces the base URL', async () => {
  const dir = freshDir();
  const src = oneFile('t10k-labels-idx1-ubyte.gz', fm['t10k-labels-idx1-ubyte.gz']!, { baseUrl: 'http://127.0.0.1:9/nowhere/' });
  const r = await fetchDataset(src, { dir, mirror: base.replace('/files/', '/old') });
  assert.equal(r.files[0]!.action, 'downloaded');
  assert.deepEqual(seen.map((s) => s.url), ['/old/t10k-labels-idx1-ubyte.gz', '/files/t10k-labels-idx1-ubyte.gz']);
});

test('files already there and verified are skipped (no request); a wrong one is downloaded again', async () => {
  const dir = freshDir();
  const src = fmSource();
  await fetchDataset(src, { dir });
  seen = [];
  writeFileSync(join(dir, 'fashion-mnist', 't10k-labels-idx1-ubyte.gz'), 'garbage');
  const lines: string[] = [];
  const r = await fetchDataset(src, { dir, log: (l) => lines.push(l) });
  assert.deepEqual(r.files.map((f) => f.action), ['present', 'present', 'present', 'downloaded']);
  assert.deepEqual(seen.map((s) => s.url), ['/files/t10k-labels-idx1-ubyte.gz']);
  assert.equal(lines.filter((l) => /already there, checksum ok/.test(l)).length, 3);
  assert.deepEqual(readFileSync(join(dir, 'fashion-mnist', 't10k-labels-idx1-ubyte.gz')), fm['t10k-labels-idx1-ubyte.gz']);
});

test('a dropped connection keeps the .part (never the final name), and the next run resumes it', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  mode = 'cut';
  await assert.rejects(fetchDataset(src, { dir }), /^DataError: cannot download .*train-images-idx3-ubyte\.gz: .* after .* MB of .* MB \(kept in .*\.part: run the same command again to resume\)/);
  assert.equal(existsSync(join(dir, 'train-images-idx3-ubyte.gz')), false);
  const part = readFileSync(join(dir, 'train-images-idx3-ubyte.gz.part'));
  assert.ok(part.length > 0 && part.length < bigImages.length);
  mode = 'range';
  seen = [];
  const r = await fetchDataset(src, { dir });
  assert.equal(r.files[0]!.action, 'resumed');
  assert.deepEqual(seen.map((s) => s.range), [`bytes=${part.length}-`]);
  assert.deepEqual(readFileSync(join(dir, 'train-images-idx3-ubyte.gz')), bigImages);
});

test('Ctrl-C (the abort signal) stops a download with FetchInterrupted and keeps the .part', async () => {
  const dir = freshDir();
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  mode = 'hang-after-half';
  const ac = new AbortController();
  await assert.rejects(
    fetchDataset(src, { dir, signal: ac.signal, progress: () => ({ start: () => {}, update: (d) => d > 0 && setTimeout(() => ac.abort(), 20), stop: () => {} }) }),
    (e: unknown) => e instanceof FetchInterrupted && /kept in .*\.part/.test(e.message),
  );
  assert.equal(existsSync(join(dir, 'train-images-idx3-ubyte.gz')), false);
  assert.ok(existsSync(join(dir, 'train-images-idx3-ubyte.gz.part')));
  server.closeAllConnections();
});

// ---- CIFAR: download + extraction ----

test('a folder where a file goes, or a file where the unpacked folder goes: one line naming it, before any download', async () => {
  served.set('cifar-10-binary.tar.gz', cifarTgz);
  const src: DatasetSource = { ...SOURCES.cifar10, baseUrl: base, files: [known('cifar-10-binary.tar.gz', cifarTgz)] };
  const a = freshDir();
  mkdirSync(join(a, 'cifar-10-binary.tar.gz', 'inside'), { recursive: true });
  await assert.rejects(fetchDataset(src, { dir: a }), (e: Error) => e instanceof DataError && e.message === `${join(a, 'cifar-10-binary.tar.gz')}: is a folder, where the file cifar-10-binary.tar.gz goes: move it away, or fetch into another --dir`);
  const b = freshDir();
  mkdirSync(b);
  writeFileSync(join(b, 'cifar-10-batches-bin'), 'notes');
  await assert.rejects(fetchDataset(src, { dir: b }), (e: Error) => e instanceof DataError && e.message === `${join(b, 'cifar-10-batches-bin')}: is a file, where the unpacked folder goes: move it away, or fetch into another --dir`);
  assert.deepEqual(seen, []);
  assert.deepEqual(readdirSync(b), ['cifar-10-batches-bin']);
  assert.deepEqual(readdirSync(a), ['cifar-10-binary.tar.gz']);
});

test('a download whose file cannot be opened says nothing was kept (it said the bytes received were); a write the disk fails (EIO) is no fault of the input (exit 1), a file that may not be written is the folder given (exit 2)', async () => {
  served.set('cifar-10-binary.tar.gz', cifarTgz);
  const src: DatasetSource = { ...SOURCES.cifar10, baseUrl: base, files: [known('cifar-10-binary.tar.gz', cifarTgz)] };
  const d = freshDir();
  // the partial file's name links to a file no one may write, root included (as a folder the user cannot
  // write): the bytes received reach no disk. Root's write fails with EIO, another user's with EACCES
  mkdirSync(d, { recursive: true });
  symlinkSync('/proc/version', join(d, 'cifar-10-binary.tar.gz.part'));
  await assert.rejects(fetchDataset(src, { dir: d }), (e: Error) => {
    const said = e instanceof DataError && /^\S+cifar-10-binary\.tar\.gz\.part: cannot write \(E[A-Z]+\); nothing kept; (make the folder writable \(or give --dir\) and )?run the same command again$/.test(e.message);
    const code = /cannot write \((E[A-Z]+)\)/.exec(e.message)?.[1];
    return said && (code === 'EIO' ? isNotInputFault(e) : ['EACCES', 'EPERM', 'EROFS'].includes(code ?? '') && !isNotInputFault(e));
  });
});

test('a write the system denies (EACCES, EROFS) is the folder given (exit 2); one the disk fails (EIO, ENOSPC) is not (exit 1); what reached the disk is kept and said', async () => {
  const src = oneFile('train-images-idx3-ubyte.gz', bigImages);
  const half = bigImages.length >> 1;
  const real = { write: fs.write, writev: fs.writev };
  for (const code of ['EACCES', 'EROFS', 'EIO', 'ENOSPC']) {
    for (const held of [0, half]) {
      const dir = freshDir();
      const part = join(dir, 'train-images-idx3-ubyte.gz.part');
      if (held) {
        mkdirSync(dir, { recursive: true });
        writeFileSync(part, bigImages.subarray(0, held));
      }
      // the download's writes fail as the system fails them (the file is opened; its first write is refused)
      const fail = (...args: unknown[]) => process.nextTick(args.at(-1) as (e: Error) => void, Object.assign(new Error(`${code}: failed, write`), { code, syscall: 'write' }));
      Object.assign(fs, { write: fail, writev: fail });
      syncBuiltinESMExports();
      const denied = code === 'EACCES' || code === 'EROFS';
      const again = denied ? `make ${held ? 'the file and its folder' : 'the folder'} writable (or give --dir) and run the same command again` : 'run the same command again';
      try {
        await assert.rejects(fetchDataset(src, { dir }), (e: Error) => {
          assert.ok(e instanceof DataError, String(e));
          assert.equal(e.message, `${part}: cannot write (${code}); ${held ? `${mb(held)} of ${mb(bigImages.length)} kept, ${again} to resume` : `nothing kept; ${again}`}`);
          assert.equal(isNotInputFault(e), !denied, `${code}: no fault of the input`);
          return true;
        });
      } finally {
        Object.assign(fs, real);
        syncBuiltinESMExports();
      }
      assert.equal(readFileSync(part).length, held, `${code}: the .part as it was`);
      assert.deepEqual(readdirSync(dir), ['train-images-idx3-ubyte.gz.part'], code);
    }
  }
});

test('CIFAR: the archive is downloaded, checked and unpacked to the folder the reader reads', async () => {
  const dir = freshDir();
  served.set('cifar-10-binary.tar.gz', cifarTgz);
  const src: DatasetSource = { ...SOURCES.cifar10, baseUrl: base, files: [known('cifar-10-binary.tar.gz', cifarTgz)] };
  const r = await fetchDataset(src, { dir });
  assert.deepEqual(r.extracted, { path: join(dir, 'cifar-10-batches-bin'), action: 'extracted' });
  assert.deepEqual(readdirSync(dir).sort(), ['cifar-10-batches-bin', 'cifar-10-binary.tar.gz']);
  assert.equal(r.dataFlag, `--data cifar10:${dir}`);
  const ds = await loadDataset({ name: 'cifar10', path: dir, trainSize: null, testSize: null, seed: 0 });
  assert.equal(ds.source, join(dir, 'cifar-10-batches-bin'));
  assert.equal(ds.train.n, 10);
  assert.equal(ds.test.n, 3);
  assert.deepEqual([...ds.test.labels], [7, 8, 9]);
  assert.deepEqual([...ds.train.labels.subarray(0, 4)], [1, 2, 2, 3]);
  // again: nothing to do
  seen = [];
  const again = await fetchDataset(src, { dir });
  assert.equal(again.extracted?.action, 'present');
  assert.deepEqual(seen, []);
  // a file of the folder cut short (a whole number of records: the reader would take it) is unpacked again
  const batch = join(dir, 'cifar-10-batches-bin', 'data_batch_5.bin');
  const whole = readFileSync(batch);
  writeFileSync(batch, whole.subarray(0, 3073));
  // unpacking it again writes in the folder: not while another fetch holds it
  writeFileSync(join(dir, FETCH_LOCK), `${hostTag()} ${process.ppid}\n`);
  await assert.rejects(fetchDataset(src, { dir }), /another moco3 data fetch \(pid \d+\) is writing here/);
  assert.equal(readFileSync(batch).length, 3073);
  rmSync(join(dir, FETCH_LOCK));
  const lines: string[] = [];
  const mended = await fetchDataset(src, { dir, log: (l) => lines.push(l) });
  assert.equal(mended.extracted?.action, 'extracted');
  assert.ok(lines.includes('cifar-10-batches-bin: data_batch_5.bin is 3073 bytes, the archive\'s 6146; unpacking it again'), lines.join('\n'));
  assert.deepEqual(readFileSync(batch), whole);
  assert.deepEqual(seen, [], 'the archive is not downloaded again');
});

test('an extraction stopped half-way leaves no final folder and no temporary one; the next run completes it', async () => {
  const dir = freshDir();
  mkdirSync(dir);
  writeFileSync(join(dir, 'cifar-10-binary.tar.gz'), cifarTgz);
  let written = 0;
  await assert.rejects(
    extractArchive(join(dir, 'cifar-10-binary.tar.gz'), dir, 'cifar-10-batches-bin', {
      expect: ['test_batch.bin'],
      onExtractFile: () => {
        if (++written === 3) throw new Error('killed');
      },
    }),
    /killed/,
  );
  assert.equal(written, 3);
  assert.deepEqual(readdirSync(dir), ['cifar-10-binary.tar.gz']);
  // a temporary folder left by a process of this host that died is cleared on the next run (an earlier
  // version's name too); another host's, in a folder they share, only once an hour old
  mkdirSync(join(dir, `.cifar-10-batches-bin.${hostTag()}.999999999.tmp`, 'cifar-10-batches-bin'), { recursive: true });
  mkdirSync(join(dir, '.cifar-10-batches-bin.999999999.old'));
  mkdirSync(join(dir, `.cifar-10-batches-bin.node-7.${process.pid}.tmp`));
  assert.equal(await extractArchive(join(dir, 'cifar-10-binary.tar.gz'), dir, 'cifar-10-batches-bin', { expect: ['test_batch.bin'] }), 'extracted');
  assert.deepEqual(readdirSync(dir).sort(), [`.cifar-10-batches-bin.node-7.${process.pid}.tmp`, 'cifar-10-batches-bin', 'cifar-10-binary.tar.gz']);
  rmSync(join(dir, `.cifar-10-batches-bin.node-7.${process.pid}.tmp`), { recursive: true });
  assert.equal(readdirSync(join(dir, 'cifar-10-batches-bin')).length, 7);
});

test('a truncated archive (checksum ok, tar cut short) fails with one line and leaves no folder', async () => {
  const dir = freshDir();
  served.set('cifar-10-binary.tar.gz', cifarCut);
  const src: DatasetSource = { ...SOURCES.cifar10, baseUrl: base, files: [known('cifar-10-binary.tar.gz', cifarCut)] };
  await assert.rejects(fetchDataset(src, { dir }), /^DataError: .*cifar-10-binary\.tar\.gz: truncated tar archive at cifar-10-batches-bin\//);
  assert.deepEqual(readdirSync(dir), ['cifar-10-binary.tar.gz']);
});

test('unpacking writes each file as it is inflated: a file across many pieces comes out byte for byte', async () => {
  const dir = freshDir();
  mkdirSync(dir);
  const big = records(200, 1, 3); // 614,600 bytes: about ten inflated pieces
  const files = { ...cifarFiles, 'cifar-10-batches-bin/test_batch.bin': big, 'cifar-10-batches-bin/empty': new Uint8Array(0) };
  writeFileSync(join(dir, 'c.tar.gz'), gzipSync(tar(files), { level: 1 }));
  const written: string[] = [];
  assert.equal(await extractArchive(join(dir, 'c.tar.gz'), dir, 'cifar-10-batches-bin', { expect: ['test_batch.bin'], onExtractFile: (f) => written.push(f) }), 'extracted');
  assert.deepEqual(written, Object.keys(files));
  for (const [name, bytes] of Object.entries(files)) assert.equal(sha(readFileSync(join(dir, name))), sha(bytes), name);
});

test('Ctrl-C inside a file and an entry outside the folder stop the unpacking; nothing is left behind', async () => {
  const dir = freshDir();
  mkdirSync(dir);
  writeFileSync(join(dir, 'c.tar.gz'), gzipSync(tar({ 'cifar-10-batches-bin/test_batch.bin': records(200, 1, 3) }), { level: 1 }));
  // the signal turns aborted at its fourth look: the file's header, then its first two pieces pass
  let looks = 0;
  const signal = { get aborted() { return ++looks > 3; } } as AbortSignal;
  const pending = extractArchive(join(dir, 'c.tar.gz'), dir, 'cifar-10-batches-bin', { signal });
  await assert.rejects(pending, (e: Error) => e instanceof FetchInterrupted && /^interrupted while unpacking .*c\.tar\.gz; nothing was unpacked$/.test(e.message));
  assert.equal(looks, 4);
  assert.deepEqual(readdirSync(dir), ['c.tar.gz']);
  writeFileSync(join(dir, 'evil.tar.gz'), gzipSync(tar({ 'cifar-10-batches-bin/ok.bin': records(1, 1, 0), '../escape.bin': records(1, 1, 0) })));
  await assert.rejects(
    extractArchive(join(dir, 'evil.tar.gz'), dir, 'cifar-10-batches-bin'),
    (e: Error) => e instanceof DataError && e.message === `${join(dir, 'evil.tar.gz')}: refusing to unpack ../escape.bin (outside the archive's folder)`,
  );
  assert.deepEqual(readdirSync(dir).sort(), ['c.tar.gz', 'evil.tar.gz']);
  assert.ok(!existsSync(join(root, 'escape.bin')));
});

test('a mirror holding the published content gzipped differently (as Debian\'s copy) is accepted by content; other bytes are not', async () => {
  const idx = encodeIdx([300, 28, 28], Uint8Array.from({ length: 300 * 784 }, (_, i) => (i * 7) % 251));
  const published = gzipSync(idx, { level: 9 });
  const regzipped = gzipSync(idx, { level: 1 });
  assert.notEqual(regzipped.length, published.length);
  const file: KnownFile = { ...known('t10k-images-idx3-ubyte.gz', published), content: { size: idx.length, sha256: sha(idx) } };
  served.set(file.name, regzipped);
  const dir = freshDir();
  const lines: string[] = [];
  const r = await fetchDataset({ name: 'fashion-mnist', baseUrl: base, subdir: '', files: [file] }, { dir, log: (l) => lines.push(l) });
  assert.deepEqual(r.files.map((f) => f.action), ['downloaded']);
  assert.deepEqual(readFileSync(join(dir, file.name)), regzipped);
  // said once: how it matched
  assert.deepEqual(lines.filter((l) => /checksum ok/.test(l)), [`${file.name}: checksum ok (the published content, gzipped differently)`]);
  // such a copy larger than the published file, its download stopped past the published size: resumed
  const stored = gzipSync(idx, { level: 0 });
  served.set(file.name, stored);
  const resumed = freshDir();
  mkdirSync(resumed, { recursive: true });
  writeFileSync(join(resumed, `${file.name}.part`), stored.subarray(0, published.length + 1000));
  seen = [];
  const again = await fetchDataset({ name: 'fashion-mnist', baseUrl: base, subdir: '', files: [file] }, { dir: resumed });
  assert.deepEqual(again.files.map((f) => f.action), ['resumed']);
  assert.deepEqual(seen.map((x) => x.range), [`bytes=${published.length + 1000}-`]);
  assert.deepEqual(readFileSync(join(resumed, file.name)), stored);
  // such a copy whole in its .part (stopped before the rename), of another size than the published: kept, no request
  // (the server was asked the rest, refused with 416, and all was downloaded again)
  const whole = freshDir();
  mkdirSync(whole, { recursive: true });
  writeFileSync(join(whole, `${file.name}.part`), stored);
  seen = [];
  const lines2: string[] = [];
  const kept = await fetchDataset({ name: 'fashion-mnist', baseUrl: base, subdir: '', files: [file] }, { dir: whole, log: (l) => lines2.push(l) });
  assert.deepEqual(kept.files.map((f) => f.action), ['resumed']);
  assert.deepEqual(seen, []);
  assert.deepEqual(readFileSync(join(whole, file.name)), stored);
  assert.deepEqual(leftovers(whole), []);
  assert.ok(lines2.includes(`${file.name}: ${join(whole, `${file.name}.part`)} was whole; checksum ok (the published content, gzipped differently)`), lines2.join('\n'));
  // its download cut off: said against this copy's size (its Content-Length), not the published file's
  mode = 'cut';
  try {
    await assert.rejects(
      fetchDataset({ name: 'fashion-mnist', baseUrl: base, subdir: '', files: [file] }, { dir: freshDir() }),
      (e: Error) => e.message.includes(` of ${mb(stored.length)} (kept in `) && mb(stored.length) !== mb(published.length),
    );
  } finally {
    mode = 'range';
  }
  // bytes that are not the content: refused and deleted
  served.set(file.name, gzipSync(idx.subarray(0, idx.length - 1), { level: 1 }));
  const other = freshDir();
  await assert.rejects(fetchDataset({ name: 'fashion-mnist', baseUrl: base, subdir: '', files: [file] }, { dir: other }), /checksum mismatch after download/);
  assert.deepEqual(leftovers(other), []);
  assert.ok(!existsSync(join(other, file.name)));
});

test('a copy checked by content whose size the server does not say (chunked, or a range of bytes .../*) is downloaded and checked by content, not said cut short', async () => {
  const idx = encodeIdx([300, 28, 28], Uint8Array.from({ length: 300 * 784 }, (_, i) => (i * 11) % 253));
  const published = gzipSync(idx, { level: 9 });
  const regzipped = gzipSync(idx, { level: 1 });
  assert.notEqual(regzipped.length, published.length);
  const file: KnownFile = { ...known('t10k-images-idx3-ubyte.gz', published), content: { size: idx.length, sha256: sha(idx) } };
  const source: DatasetSource = { name: 'fashion-mnist', baseUrl: base, subdir: '', files: [file] };
  served.set(file.name, regzipped);
  mode = 'chunked';
  const dir = freshDir();
  const r = await fetchDataset(source, { dir });
  assert.deepEqual(r.files.map((f) => f.action), ['downloaded']);
  assert.deepEqual(readFileSync(join(dir, file.name)), regzipped);
  assert.deepEqual(leftovers(dir), []);
  mode = 'star-range';
  const resumed = freshDir();
  mkdirSync(resumed, { recursive: true });
  writeFileSync(join(resumed, `${file.name}.part`), regzipped.subarray(0, 1000));
  seen = [];
  const lines: string[] = [];
  const again = await fetchDataset(source, { dir: resumed, log: (l) => lines.push(l) });
  assert.deepEqual(again.files.map((f) => f.action), ['resumed']);
  assert.deepEqual(seen.map((x) => x.range), ['bytes=1000-']);
  assert.deepEqual(readFileSync(join(resumed, file.name)), regzipped);
  assert.deepEqual(leftovers(resumed), []);
  // the size is not known: none said
  assert.ok(lines.includes(`${file.name}: resuming at ${mb(1000)}`), lines.join('\n'));
});

test('a Content-Length beside a Content-Encoding is not taken for the file\'s size: the bytes are counted as they come', async () => {
  // a mirror compressing on the fly the Fashion-MNIST file it holds uncompressed: the gzip stream that comes is the content, gzipped differently
  const idx = encodeIdx([300, 28, 28], Uint8Array.from({ length: 300 * 784 }, (_, i) => (i * 13) % 249));
  const published = gzipSync(idx, { level: 9 });
  const file: KnownFile = { ...known('t10k-images-idx3-ubyte.gz', published), content: { size: idx.length, sha256: sha(idx) } };
  const onTheFly = gzipSync(idx, { level: 1 });
  served.set(file.name, onTheFly);
  mode = 'encoded';
  const dir = freshDir();
  const r = await fetchDataset({ name: 'fashion-mnist', baseUrl: base, subdir: '', files: [file] }, { dir });
  assert.deepEqual(r.files.map((f) => f.action), ['downloaded']);
  assert.deepEqual(readFileSync(join(dir, file.name)), onTheFly);
  // a file of no published content, its Content-Length other than its size: not refused at that length, but at
  // the bytes that came past the file's size
  const body = fm['t10k-labels-idx1-ubyte.gz']!;
  const src = oneFile('t10k-labels-idx1-ubyte.gz', body);
  served.set('t10k-labels-idx1-ubyte.gz', Buffer.concat([body, Buffer.alloc(5000, 1)]));
  await assert.rejects(fetchDataset(src, { dir: freshDir() }), (e: Error) => e instanceof DataError && e.message === `t10k-labels-idx1-ubyte.gz: ${base}t10k-labels-idx1-ubyte.gz sent more than the ${body.length} bytes expected (sha256 ${sha(body)}); the partial file was deleted`);
});

test('a second fetch into a folder another fetch is writing is refused before any request (they shared one .part); a dead fetch\'s lock is taken over', async () => {
  const dir = freshDir();
  const src = fmSource();
  const folder = join(dir, 'fashion-mnist');
  mkdirSync(folder, { recursive: true });
  // a live fetch of this host: this test's parent process stands in for it
  writeFileSync(join(folder, FETCH_LOCK), `${hostTag()} ${process.ppid}\n`);
  seen = [];
  await assert.rejects(
    fetchDataset(src, { dir }),
    (e: Error) => e instanceof DataError && e.message === `${folder}: another moco3 data fetch (pid ${process.ppid}) is writing here; wait for it to finish (or stop it), then run this again`,
  );
  assert.deepEqual(seen, [], 'no request made');
  assert.equal(readFileSync(join(folder, FETCH_LOCK), 'utf8'), `${hostTag()} ${process.ppid}\n`, 'its lock left alone');
  // a fetch that died (no such pid): its lock is taken over, and released at the end; the temporary file of
  // one killed as it took the lock is removed
  writeFileSync(join(folder, FETCH_LOCK), `${hostTag()} 999999999\n`);
  writeFileSync(join(folder, `.${FETCH_LOCK}.${hostTag()}.999999999.tmp`), `${hostTag()} 999999999\n`);
  const r = await fetchDataset(src, { dir });
  assert.deepEqual(r.files.map((f) => f.action), ['downloaded', 'downloaded', 'downloaded', 'downloaded']);
  assert.deepEqual(readdirSync(folder).filter((f) => f.startsWith('.')), [], 'no lock or temporary file left');
  // a lock that does not read as `<host> <pid>` (an empty one: a disk full as it was written) is no fetch's
  for (const junk of ['', 'garbage', `${hostTag()}`]) {
    writeFileSync(join(folder, FETCH_LOCK), junk);
    rmSync(join(folder, 't10k-labels-idx1-ubyte.gz'));
    const over = await fetchDataset(src, { dir });
    assert.deepEqual(over.files.map((f) => f.action), ['present', 'present', 'present', 'downloaded'], JSON.stringify(junk));
    assert.equal(existsSync(join(folder, FETCH_LOCK)), false);
  }
  // a complete copy is checked without taking the folder (it may be the system's, read-only)
  writeFileSync(join(folder, FETCH_LOCK), `${hostTag()} ${process.ppid}\n`);
  const again = await fetchDataset(src, { dir });
  assert.deepEqual(again.files.map((f) => f.action), ['present', 'present', 'present', 'present']);
  rmSync(join(folder, FETCH_LOCK));
  // a failed fetch releases it too
  writeFileSync(join(folder, 't10k-labels-idx1-ubyte.gz'), 'garbage');
  served.delete('t10k-labels-idx1-ubyte.gz');
  await assert.rejects(fetchDataset(src, { dir }), /HTTP 404/);
  assert.equal(existsSync(join(folder, FETCH_LOCK)), false);
});

test('two fetches taking over one dead fetch\'s lock at the same moment: one holds the folder, the other is refused (both took it)', async () => {
  const script = `const { takeFetchFolder } = await import(${JSON.stringify(new URL('../../src/data/fetch.ts', import.meta.url).pathname)});
    const [dir, at] = process.argv.slice(1);
    while (Date.now() < Number(at)) {}
    try { const release = takeFetchFolder(dir); await new Promise((r) => setTimeout(r, 300)); console.log('held'); release(); } catch (e) { console.log('refused'); }`;
  const take = (dir: string, at: number) =>
    new Promise<string>((res) => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir, String(at)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => (out += String(d)));
      child.on('exit', () => res(out.trim()));
    });
  for (let trial = 0; trial < 6; trial++) {
    const d = join(freshDir(), 'race');
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, FETCH_LOCK), `${hostTag()} 999999999\n`);
    const at = Date.now() + 2500;
    const outs = (await Promise.all([take(d, at), take(d, at)])).sort();
    assert.deepEqual(outs, ['held', 'refused'], `trial ${trial}`);
    assert.deepEqual(readdirSync(d), [], 'no lock or temporary file left');
  }
});
