import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { walkTarGz } from '../../src/data/tar.ts';
import { DataError } from '../../src/data/types.ts';
import { tar } from '../helpers/archives.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-tar-');
let n = 0;
const archive = (bytes: Uint8Array) => {
  const p = join(root, `a${++n}.tar.gz`);
  writeFileSync(p, bytes);
  return p;
};

/** Bytes that do not compress, so a file spans many inflated pieces. */
function noise(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

/** Every regular file's bytes as the walker gives them, with the order of the calls. */
async function collect(path: string, finished?: (seen: string[]) => boolean) {
  const files = new Map<string, Buffer>();
  const calls: string[] = [];
  await walkTarGz(
    path,
    (name, size) => {
      calls.push(`open ${name} ${size}`);
      const parts: Uint8Array[] = [];
      return {
        data: (b) => parts.push(Uint8Array.from(b)),
        end: () => {
          calls.push(`end ${name}`);
          files.set(name, Buffer.concat(parts));
        },
      };
    },
    finished && (() => finished([...files.keys()])),
  );
  return { files, calls };
}

test('every regular file in order and whole: across inflated pieces, empty files, padding; folders skipped', async () => {
  const big = noise(300_001, 7); // about 5 pieces of 64 KiB, and not a multiple of 512
  const src = { 'top/': new Uint8Array(0), 'top/a.bin': noise(511, 1), 'top/empty': new Uint8Array(0), 'top/big.bin': big, 'top/b.bin': noise(512, 2) };
  const { files, calls } = await collect(archive(gzipSync(tar(src))));
  assert.deepEqual(calls, ['open top/a.bin 511', 'end top/a.bin', 'open top/empty 0', 'end top/empty', 'open top/big.bin 300001', 'end top/big.bin', 'open top/b.bin 512', 'end top/b.bin']);
  for (const [name, bytes] of Object.entries(src)) if (!name.endsWith('/')) assert.ok(files.get(name)!.equals(bytes), name);
});

test('a skipped file is stepped over; the walk stops before the next header once finished() says so', async () => {
  const src = { 'x/one': noise(1000, 3), 'x/two': noise(70_000, 4), 'x/three': noise(10, 5) };
  const path = archive(gzipSync(tar(src)));
  const got: string[] = [];
  await walkTarGz(path, (name) => (got.push(name), name === 'x/two' ? { data: () => {} } : null));
  assert.deepEqual(got, ['x/one', 'x/two', 'x/three']);
  const { calls } = await collect(path, (seen) => seen.includes('x/two'));
  assert.deepEqual(calls, ['open x/one 1000', 'end x/one', 'open x/two 70000', 'end x/two']);
});

test('a truncated archive, data that is not gzip and an error from the caller: one line naming the archive, or the error as thrown', async () => {
  const whole = tar({ 'd/f': noise(5000, 6) });
  const cut = archive(gzipSync(whole.subarray(0, 512 + 2048)));
  await assert.rejects(collect(cut), (e: Error) => e instanceof DataError && e.message === `${cut}: truncated tar archive at d/f`);
  // cut inside the header of a second file: said truncated, not the file missing from the archive
  const two = tar({ 'd/f': noise(1024, 6), 'd/g': noise(100, 7) });
  const inHeader = archive(gzipSync(two.subarray(0, 512 + 1024 + 100)));
  await assert.rejects(collect(inHeader), (e: Error) => e instanceof DataError && e.message === `${inHeader}: truncated tar archive (it ends inside the header at byte 1536 of the unpacked data)`);
  const plain = archive(whole);
  await assert.rejects(collect(plain), (e: Error) => e instanceof DataError && e.message.startsWith(`${plain}: not a gzipped tar archive (`) && !e.message.includes('\n'));
  const ok = archive(gzipSync(whole));
  class Mine extends Error {}
  await assert.rejects(walkTarGz(ok, () => ({ data: () => { throw new Mine('stop'); } })), Mine);
  const missing = join(root, 'none.tar.gz');
  await assert.rejects(collect(missing), (e: Error) => e instanceof DataError && e.message === `${missing}: cannot read (ENOENT)`);
});

test('a size field that is not octal digits (a sign, a stray character) is a corrupt header, not a size', async () => {
  for (const field of ['-0006001', '00000+1000', '0000009999']) {
    const t = tar({ 'd/f': noise(100, 8) });
    // the size field and the checksum over the block with it
    t.set(Buffer.from(field.padEnd(11, ' ') + '\0', 'latin1'), 124);
    t.set(Buffer.from('        ', 'latin1'), 148);
    const sum = t.subarray(0, 512).reduce((a, b) => a + b, 0);
    t.set(Buffer.from(sum.toString(8).padStart(6, '0') + '\0 ', 'latin1'), 148);
    const p = archive(gzipSync(t));
    await assert.rejects(collect(p), (e: Error) => e instanceof DataError && e.message === `${p}: corrupt tar header at d/f`, field);
  }
});

test('long names: GNU and pax headers name the entry after them; a v7 folder (type 0, trailing slash) is no file', async () => {
  const long = `cifar-10-batches-bin/${'x'.repeat(120)}/data_batch_1.bin`;
  const other = `cifar-10-batches-bin/${'y'.repeat(110)}/test_batch.bin`;
  const pax = (k: string, v: string) => {
    // "<len> <key>=<value>\n", len counting itself
    const rec = ` ${k}=${v}\n`;
    let len = rec.length + 1;
    while (String(len).length + rec.length !== len) len++;
    return Buffer.from(`${len}${rec}`);
  };
  const a = noise(700, 8);
  const b = noise(30, 9);
  const src: [string, Uint8Array, string][] = [
    ['old/', new Uint8Array(0), '0'],
    ['././@LongLink', Buffer.from(`${long}\0`), 'L'],
    [long, a, '0'],
    ['PaxHeaders/x', Buffer.concat([pax('mtime', '1.5'), pax('path', other)]), 'x'],
    [other, b, '0'],
    ['short.bin', noise(3, 10), '0'],
  ];
  const { files, calls } = await collect(archive(gzipSync(tar(src))));
  assert.deepEqual(calls, [`open ${long} 700`, `end ${long}`, `open ${other} 30`, `end ${other}`, 'open short.bin 3', 'end short.bin']);
  assert.ok(files.get(long)!.equals(a) && files.get(other)!.equals(b));
});

test('gzipped data that is no tar archive, and a gzip cut short: said as such in one line', async () => {
  const junk = archive(gzipSync(noise(20_000, 11)));
  await assert.rejects(collect(junk), (e: Error) => e instanceof DataError && e.message === `${junk}: not a tar archive (no tar header at byte 0 of the unpacked data)`);
  // a later header damaged: where it is
  const whole = Buffer.from(tar({ 'd/a': noise(600, 12), 'd/b': noise(10, 13) }));
  whole[512 + 1024 + 10] ^= 1; // in the second header's name: it starts after 512 + 1024 (600 bytes padded)
  const bad = archive(gzipSync(whole));
  await assert.rejects(collect(bad), (e: Error) => e instanceof DataError && e.message === `${bad}: not a tar archive (no tar header at byte 1536 of the unpacked data)`);
  const gz = gzipSync(tar({ 'd/f': noise(50_000, 14) }));
  const cut = archive(gz.subarray(0, gz.length >> 1));
  await assert.rejects(collect(cut), (e: Error) => e instanceof DataError && e.message === `${cut}: truncated: the gzip data ends early (unexpected end of file); download it again`);
});

test("an archive whose data does not match the gzip trailer's checksum is refused (read past its end-of-archive blocks to the trailer)", async () => {
  const gz = Buffer.from(gzipSync(tar({ 'd/a': noise(3000, 15), 'd/b': noise(20, 16) })));
  gz[gz.length - 8] ^= 1; // the CRC-32 of the inflated data, before its length
  const bad = archive(gz);
  await assert.rejects(collect(bad), (e: Error) => e instanceof DataError && e.message === `${bad}: damaged: the data does not match the gzip checksum at its end (incorrect data check); download it again`);
  // the CRC right, the length after it (ISIZE) wrong: damaged too, not another kind of file
  const len = Buffer.from(gzipSync(tar({ 'd/a': noise(3000, 15), 'd/b': noise(20, 16) })));
  len[len.length - 1] ^= 1;
  const badLen = archive(len);
  await assert.rejects(collect(badLen), (e: Error) => e instanceof DataError && e.message === `${badLen}: damaged: the data does not match the gzip checksum at its end (incorrect length check); download it again`);
});

test('a pax header whose record length is 0 or negative ends its reading (a record of length 0 was read again for ever); the entry keeps its own name', { timeout: 20000 }, async () => {
  // the walk in a child process: a loop that never ends would block this one, and the test's timeout with it
  const script = `const { walkTarGz } = await import(${JSON.stringify(new URL('../../src/data/tar.ts', import.meta.url).pathname)});
    const calls = [];
    await walkTarGz(process.argv[1], (name, size) => (calls.push(name + ' ' + size), null));
    console.log(JSON.stringify(calls));`;
  for (const body of ['0 path=x\n', '-9 path=x\n']) {
    const p = archive(gzipSync(tar([['PaxHeaders/f', Buffer.from(body), 'x'], ['d/f', noise(10, 17), '0']])));
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, p], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (err += String(d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    clearTimeout(timer);
    assert.equal(code, 0, `${JSON.stringify(body)}: exit ${code} (killed after 5 s: the walk did not end) ${err}`);
    assert.deepEqual(JSON.parse(out), ['d/f 10'], body);
  }
});

test('archives written by GNU tar and by Python, in each of their formats: every file under its full name, long and non-ASCII ones too', async () => {
  const src = join(root, 'src');
  // a name whose first 100 bytes end in a slash (the short header name looks like a folder), and a non-ASCII one
  const deep = `${'a'.repeat(99)}/data_batch_1.bin`;
  const files: Record<string, Buffer> = { [deep]: Buffer.from(noise(700, 20)), 'café_é.txt': Buffer.from('abc'), 'plain.bin': Buffer.from(noise(10, 21)) };
  for (const [name, bytes] of Object.entries(files)) {
    mkdirSync(dirname(join(src, name)), { recursive: true });
    writeFileSync(join(src, name), bytes);
  }
  const made: string[] = [];
  for (const format of ['gnu', 'pax', 'ustar']) {
    // GNU tar cannot store the deep name as ustar
    if (format === 'ustar') continue;
    const out = join(root, `gnu-${format}.tar.gz`);
    execFileSync('tar', ['-czf', out, `--format=${format}`, '-C', src, ...Object.keys(files)]);
    made.push(out);
  }
  for (const format of ['GNU_FORMAT', 'PAX_FORMAT']) {
    const out = join(root, `py-${format}.tar.gz`);
    const py = `import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w:gz', format=getattr(tarfile, sys.argv[2])) as t:\n    for n in sys.argv[4:]: t.add(sys.argv[3] + '/' + n, arcname=n)\n`;
    execFileSync('python3', ['-c', py, out, format, src, ...Object.keys(files)]);
    made.push(out);
  }
  for (const path of made) {
    const { files: got } = await collect(path);
    assert.deepEqual([...got.keys()].sort(), Object.keys(files).sort(), path);
    for (const [name, bytes] of Object.entries(files)) assert.ok(got.get(name)!.equals(bytes), `${path}: ${name}`);
  }
  // a header whose checksum sums its bytes as signed (old tars): taken, as GNU tar and Python take it
  const plain = Buffer.from(tar({ 'café.txt': Buffer.from('xyz') }));
  let signed = 8 * 32;
  for (let i = 0; i < 512; i++) if (i < 148 || i >= 156) signed += plain[i]! < 128 ? plain[i]! : plain[i]! - 256;
  plain.write(`${signed.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const { files: old } = await collect(archive(gzipSync(plain)));
  assert.deepEqual([...old.keys()], ['café.txt']);
});

test("a ustar name split over the prefix field is the file's whole path; an old tar's regular file (typeflag NUL) is a file", async () => {
  const src = join(root, 'prefix');
  const deep = `${'p'.repeat(120)}/q/f.bin`;
  const bytes = Buffer.from(noise(900, 22));
  mkdirSync(dirname(join(src, deep)), { recursive: true });
  writeFileSync(join(src, deep), bytes);
  // GNU tar stores it as prefix "ppp…/q" and name "f.bin"
  const out = join(root, 'gnu-ustar-prefix.tar.gz');
  execFileSync('tar', ['-czf', out, '--format=ustar', '-C', src, deep]);
  const { files } = await collect(out);
  assert.deepEqual([...files.keys()], [deep]);
  assert.ok(files.get(deep)!.equals(bytes));
  const old = await collect(archive(gzipSync(tar([['v7.bin', noise(5, 23), '\0']]))));
  assert.deepEqual(old.calls, ['open v7.bin 5', 'end v7.bin']);
});

test('an archive cut by one byte, or with a damaged header whose name starts with a NUL, is refused, not read as ended early', async () => {
  const whole = tar({ 'd/f': noise(1000, 24), 'd/g': noise(10, 25) });
  const oneShort = archive(gzipSync(whole.subarray(0, 512 + 1024 + 512 + 9)));
  await assert.rejects(collect(oneShort), (e: Error) => e instanceof DataError && e.message === `${oneShort}: truncated tar archive at d/g`);
  const damaged = Buffer.from(whole);
  damaged[512 + 1024] = 0; // the second header's name, its checksum now wrong: no end-of-archive block
  const bad = archive(gzipSync(damaged));
  await assert.rejects(collect(bad), (e: Error) => e instanceof DataError && e.message === `${bad}: not a tar archive (no tar header at byte 1536 of the unpacked data)`);
});

test("the gzip trailer's checksum is checked after end-of-archive blocks that span several inflated pieces (a tar padded to a large record)", async () => {
  // 200 KiB of zero blocks after the last file: about 3 pieces of 64 KiB past the end of the archive
  const padded = Buffer.concat([tar({ 'd/a': noise(700, 26) }), new Uint8Array(200 * 1024)]);
  const gz = Buffer.from(gzipSync(padded));
  assert.deepEqual([...(await collect(archive(gz))).files.keys()], ['d/a']);
  gz[gz.length - 8] ^= 1;
  const bad = archive(gz);
  await assert.rejects(collect(bad), (e: Error) => e instanceof DataError && e.message === `${bad}: damaged: the data does not match the gzip checksum at its end (incorrect data check); download it again`);
});

test('a walk that finished() stops reads no further: a damaged end of the archive past that point is never reached', async () => {
  const gz = Buffer.from(gzipSync(tar({ 'x/one': noise(1000, 27), 'x/two': noise(400_000, 28) })));
  gz[gz.length - 8] ^= 1; // the CRC-32 at the end: read to there, the walk would fail
  const path = archive(gz);
  const { calls } = await collect(path, (seen) => seen.includes('x/one'));
  assert.deepEqual(calls, ['open x/one 1000', 'end x/one']);
  await assert.rejects(collect(path), /damaged: the data does not match the gzip checksum/);
});
