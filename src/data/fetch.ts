/**
 * `moco3 data fetch`: download a dataset's published files into the data directory, check every byte
 * against the published SHA-256, and unpack archives.
 *
 * A file is downloaded to `<name>.part` (resumed with an HTTP Range request when one is there) and only
 * renamed to its own name once its size and SHA-256 match; an archive is unpacked into a temporary sibling
 * folder that is renamed into place at the end. Whatever stops a fetch (Ctrl-C, a network error, a full
 * disk), nothing half-done ever sits under a final name, and the same command picks up where it stopped.
 */
import { accessSync, closeSync, constants, createWriteStream, existsSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CIFAR, DATA_DIR } from './cifar.ts';
import { fashionMnistDefaultDir } from './fashion_mnist.ts';
import { checkFile, hashFile, type DatasetSource, type KnownFile } from './checksums.ts';
import { walkTarGz } from './tar.ts';
import { notInputFault } from '../config/errors.ts';
import { DataError } from './types.ts';
import { FOREIGN_TEMP_STALE_MS, hostTag, isStaleTemp, missingAncestors, pidAlive, removeEmptyFolders, shellQuote, tempName } from '../engine/files.ts';

/** Ctrl-C (the signal given to `fetchDataset`) stopped the fetch; what was downloaded so far is kept in `.part` files. */
export class FetchInterrupted extends Error {
  override name = 'FetchInterrupted';
}

export interface ProgressHandle {
  /** `from` bytes are already there (a resumed download) */
  start(total: number, from: number): void;
  update(done: number): void;
  stop(): void;
}

export interface FetchOptions {
  /** the data directory; the files go to `<dir>/<source.subdir>` */
  dir: string;
  /** replaces the source's base URL; the file name is appended */
  mirror?: string | null;
  /** give up when a server has not answered within this long (default 20 s) */
  connectTimeoutMs?: number;
  /** give up when a download receives nothing for this long (default 60 s) */
  stallTimeoutMs?: number;
  /** abort (Ctrl-C): the fetch rejects with FetchInterrupted */
  signal?: AbortSignal;
  /** one line of news (stderr in the CLI) */
  log?: (line: string) => void;
  /** a progress display for one download */
  progress?: (file: string) => ProgressHandle;
  /** called after each file is written into the temporary extraction folder (tests interrupt here) */
  onExtractFile?: (name: string) => void;
}

export interface FetchResult {
  /** the folder holding the downloaded files */
  dir: string;
  files: Array<{ name: string; path: string; action: 'downloaded' | 'resumed' | 'present' }>;
  extracted?: { path: string; action: 'extracted' | 'present' };
  /** the `--data` flag that reads what was fetched */
  dataFlag: string;
}

/** The URL of a file: the mirror (or the source's home) with the file name appended. */
export function urlFor(base: string, file: string): string {
  return (base.endsWith('/') ? base : `${base}/`) + file;
}

/** A byte count as the lines write it: MB, or kB below a tenth of one (a labels file read `0.0 MB`). */
export const mb = (n: number) => (n >= 1e5 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);
const secs = (ms: number) => (ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`);

/** Where each reader looks when `--data NAME` has no path. */
function readerDefault(name: string): string | null {
  if (name === 'fashion-mnist') return fashionMnistDefaultDir();
  if (name === 'cifar10' || name === 'cifar100') return DATA_DIR;
  return null;
}

/** The `--data` flag that reads a dataset fetched into `dir`: bare when the reader looks there anyway. */
export function dataFlagFor(source: DatasetSource, dir: string): string {
  const path = resolve(dir, source.subdir);
  const dflt = readerDefault(source.name);
  if (dflt !== null && resolve(dflt) === path) return `--data ${source.name}`;
  return `--data ${source.name}:${shellQuote(path)}`;
}

/** The one-line reason of a network error. */
function reason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ENOTFOUND':
      return `host not found (${err.code}; offline?)`;
    case 'EAI_AGAIN':
      return `DNS lookup failed (${err.code}; offline?)`;
    case 'ECONNREFUSED':
      return `connection refused (${err.code})`;
    case 'ECONNRESET':
      return `connection reset (${err.code})`;
    case 'ETIMEDOUT':
      return err.message;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `network unreachable (${err.code}; offline?)`;
    default:
      return err.code ? `${err.message.split('\n')[0]} (${err.code})` : (err.message ?? String(e)).split('\n')[0]!;
  }
}

function isAbort(e: unknown, signal?: AbortSignal): boolean {
  return Boolean(signal?.aborted) || (e as Error | undefined)?.name === 'AbortError';
}

interface Ctx {
  url: string;
  dir: string;
  connectTimeoutMs: number;
  stallTimeoutMs: number;
  signal?: AbortSignal;
}

/**
 * The one-line failure of a download, with the way around it. The network or the server caused it (the CLI
 * has checked the mirror's URL; a redirect names the others), so it exits 1, not 2: the same command may work
 * later. So does a download whose bytes are not the file (its size or checksum).
 */
function cannot(ctx: Ctx, what: string): DataError {
  return notInputFault(new DataError(`cannot download ${ctx.url}: ${what}; download it yourself and put it in ${ctx.dir}, or use --mirror URL`));
}

/** GET with redirects; resolves with the response of the last hop (any status other than a redirect). */
function get(url: string, headers: Record<string, string>, ctx: Ctx, hops = 5): Promise<IncomingMessage> {
  return new Promise((resolvePromise, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(cannot(ctx, `not a URL`));
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(cannot(ctx, `${u.protocol} URLs are not supported (http or https)`));
      return;
    }
    if (ctx.signal?.aborted) {
      reject(new FetchInterrupted('interrupted'));
      return;
    }
    const mod = u.protocol === 'https:' ? https : http;
    // identity: the file's own bytes (with no Accept-Encoding, a server may send any content coding)
    const req = mod.get(u, { headers: { 'user-agent': 'moco3', 'accept-encoding': 'identity', ...headers }, agent: false }, (res) => {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onAbort);
      const code = res.statusCode ?? 0;
      if (code >= 300 && code < 400 && code !== 304 && res.headers.location) {
        res.destroy();
        if (hops === 0) reject(cannot(ctx, 'too many redirects'));
        else get(new URL(res.headers.location, u).href, headers, ctx, hops - 1).then(resolvePromise, reject);
        return;
      }
      resolvePromise(res);
    });
    const timer = setTimeout(() => {
      const e = Object.assign(new Error(`no answer within ${secs(ctx.connectTimeoutMs)}`), { code: 'ETIMEDOUT' });
      req.destroy(e);
    }, ctx.connectTimeoutMs);
    const onAbort = () => req.destroy(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e) => {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onAbort);
      reject(isAbort(e, ctx.signal) ? new FetchInterrupted('interrupted') : cannot(ctx, reason(e)));
    });
  });
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Download one file to `dest` through `dest.part`: resume a partial `.part` with a Range request (start over
 * when the server ignores it), check size and SHA-256 of the whole file, and rename it into place only then.
 */
export async function downloadFile(url: string, dest: string, known: KnownFile, opts: Omit<FetchOptions, 'dir' | 'mirror' | 'onExtractFile'> = {}): Promise<'downloaded' | 'resumed'> {
  const ctx: Ctx = {
    url,
    dir: dirname(dest),
    connectTimeoutMs: opts.connectTimeoutMs ?? 20_000,
    stallTimeoutMs: opts.stallTimeoutMs ?? 60_000,
    signal: opts.signal,
  };
  const log = opts.log ?? (() => {});
  const part = `${dest}.part`;
  await makeFolders(ctx.dir);

  // a file also accepted by its content (Fashion-MNIST's: a mirror may hold a copy gzipped differently, as
  // Debian's is) may differ in size: bounded by the content's size, checked by content at the end
  const byContent = known.content !== undefined;
  const limit = byContent ? Math.max(known.size, known.content!.size + (1 << 20)) : known.size;
  // something else where the .part goes (a folder): said before any request, as fetchDataset says it of the file
  if (existsSync(part) && !statSync(part).isFile()) throw new DataError(`${part}: is no file, where the partial download of ${known.name} goes: move it away, or fetch into another --dir`);
  let from = existsSync(part) ? statSync(part).size : 0;
  if (from > 0 && from !== known.size && from <= limit && byContent) {
    // another copy of the content (gzipped differently, or decompressed), whole: a download stopped between its
    // last byte and the rename, not one to ask the server the rest of (it answered 416, and all was fetched again)
    const whole = await checkFile(part, known);
    if (whole.status === 'ok') {
      await rename(part, dest);
      log(`${known.name}: ${part} was whole; checksum ok (${whole.note})`);
      return 'resumed';
    }
  }
  if (from > limit) {
    log(`${known.name}: ${part} is longer than the file (${from} > ${limit} bytes); starting over`);
    await rm(part, { force: true });
    from = 0;
  } else if (from === known.size) {
    // a download that stopped between its last byte and the rename
    const got = await hashFile(part);
    if (got.sha256 === known.sha256) {
      await rename(part, dest);
      return 'resumed';
    }
    // another copy's bytes may go on past the published size: resumed, and checked by content at the end
    if (!byContent) {
      log(`${known.name}: ${part} is complete but does not match the published checksum; starting over`);
      await rm(part, { force: true });
      from = 0;
    }
  }

  const rangeOf = (r: IncomingMessage) => /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(r.headers['content-range'] ?? ''));
  let res = await get(url, from > 0 ? { range: `bytes=${from}-` } : {}, ctx);
  let code = res.statusCode ?? 0;
  // the server cannot serve the rest of what we hold (416: whatever the .part is, it is not the start of this
  // file), or answers with another range than the one asked: the download starts over (kept, the .part failed
  // every later run the same way)
  const wrong = code === 206 && Number(rangeOf(res)?.[1] ?? -1) !== from;
  if (from > 0 && (code === 416 || wrong)) {
    const said = code === 416 ? 'refused to resume (HTTP 416)' : `answered the range request with another range (${res.headers['content-range'] ?? 'no Content-Range'})`;
    res.destroy();
    log(`${known.name}: the server ${said}; starting over`);
    await rm(part, { force: true });
    from = 0;
    res = await get(url, {}, ctx);
    code = res.statusCode ?? 0;
  }
  let total: number | null = known.size;
  const sizeOk = (n: number) => n === known.size || (byContent && n <= limit);
  let append = false;
  if (code === 206) {
    const m = rangeOf(res);
    if (!m || Number(m[1]) !== from) {
      res.destroy();
      throw cannot(ctx, `the server answered a range request with the wrong range (${res.headers['content-range'] ?? 'no Content-Range'})`);
    }
    if (m[3] !== '*' && !sizeOk(Number(m[3]))) {
      res.destroy();
      await rm(part, { force: true });
      throw notInputFault(new DataError(`${known.name}: ${url} is ${m[3]} bytes, expected ${known.size} (sha256 ${known.sha256}); the partial file was deleted`));
    }
    append = true;
    total = m[3] === '*' ? (byContent ? null : known.size) : Number(m[3]);
    // of the size this server gives (a copy checked by content may differ from the published one), where it gives one
    log(`${known.name}: resuming at ${mb(from)}${total !== null ? ` of ${mb(total)}` : ''}`);
  } else if (code === 200) {
    if (from > 0) log(`${known.name}: the server ignored the range request; starting over`);
    from = 0;
    const len = res.headers['content-length'];
    const plain = len !== undefined && !res.headers['content-encoding'];
    total = plain ? Number(len) : byContent ? null : known.size;
    if (plain && !sizeOk(Number(len))) {
      res.destroy();
      await rm(part, { force: true });
      throw notInputFault(new DataError(`${known.name}: ${url} is ${len} bytes, expected ${known.size} (sha256 ${known.sha256}); nothing was kept`));
    }
  } else {
    res.destroy();
    throw cannot(ctx, `HTTP ${code} ${res.statusMessage ?? ''}`.trim());
  }

  const ofTotal = total !== null ? ` of ${mb(total)}` : '';
  const bar = opts.progress?.(known.name);
  bar?.start(total ?? known.size, from);
  let done = from;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      if (done > limit) {
        cb(Object.assign(new Error(`received more than the ${limit} bytes expected`), { code: 'ETOOBIG' }));
        return;
      }
      bar?.update(done);
      cb(null, chunk);
    },
  });
  res.setTimeout(ctx.stallTimeoutMs, () => {
    res.destroy(Object.assign(new Error(`no data for ${secs(ctx.stallTimeoutMs)}`), { code: 'ETIMEDOUT' }));
  });
  try {
    await pipeline(res, counter, createWriteStream(part, { flags: append ? 'a' : 'w' }), { signal: ctx.signal });
  } catch (e) {
    bar?.stop();
    if (isAbort(e, ctx.signal)) throw new FetchInterrupted(`interrupted; ${done}${total !== null ? ` of ${total}` : ''} bytes kept in ${part}`);
    if ((e as NodeJS.ErrnoException).code === 'ETOOBIG') {
      await rm(part, { force: true });
      throw notInputFault(new DataError(`${known.name}: ${url} sent more than the ${limit} bytes expected (sha256 ${known.sha256}); the partial file was deleted`));
    }
    const err = e as NodeJS.ErrnoException;
    if (err.syscall === 'write' || err.syscall === 'open' || err.code === 'ENOSPC') {
      // what reached the disk, not what was received (a file that could not be opened holds nothing)
      const kept = await stat(part).then((st) => (st.isFile() ? st.size : 0), () => 0);
      // a folder that may not be written is the --dir given (exit 2); a full or failing disk is no fault of it (exit 1)
      const denied = ['EACCES', 'EPERM', 'EROFS'].includes(err.code ?? '');
      const again = denied ? `make ${kept > 0 ? 'the file and its folder' : 'the folder'} writable (or give --dir) and run the same command again` : 'run the same command again';
      const e2 = new DataError(`${part}: cannot write (${err.code ?? err.message}); ${kept > 0 ? `${mb(kept)}${ofTotal} kept, ${again} to resume` : `nothing kept; ${again}`}`);
      throw denied ? e2 : notInputFault(e2);
    }
    throw cannot(ctx, `${reason(e)} after ${mb(done)}${ofTotal} (kept in ${part}: run the same command again to resume)`);
  }
  bar?.stop();
  if (total !== null && done !== total) {
    throw cannot(ctx, `the connection closed after ${done} of ${total} bytes (kept in ${part}: run the same command again to resume)`);
  }
  await fsyncFile(part);
  // the published bytes, or (for a file with a published content) the published content
  const check = await checkFile(part, known);
  if (check.status !== 'ok') {
    await rm(part, { force: true });
    const got = check.got!;
    // what the server sent is not the file (damaged on the way, or another file): exit 1, as a broken download
    throw notInputFault(
      new DataError(
        `${known.name}: checksum mismatch after download from ${url}: expected ${known.size} bytes sha256 ${known.sha256}, got ${got.size} bytes sha256 ${got.sha256} (deleted; try again or use --mirror URL)`,
      ),
    );
  }
  await rename(part, dest);
  // one line per file, saying how it matched
  log(`${known.name}: ${from > 0 ? 'resumed and ' : ''}checksum ok${check.how === 'content' ? ` (${check.note})` : ''}`);
  return from > 0 ? 'resumed' : 'downloaded';
}

/**
 * Temporary folders left by an extraction that was killed: `.<folder>[.old].<host>.<pid>.tmp` by the rule of
 * src/engine/files.ts (isStaleTemp: another host's, in a data folder shared over the network, only once long
 * untouched); earlier versions' `.<folder>.<pid>.tmp|old` when their pid is gone.
 */
function removeStale(dir: string, folder: string): void {
  if (!existsSync(dir)) return;
  const f = folder.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const legacy = new RegExp(`^\\.${f}\\.(\\d+)\\.(tmp|old)$`);
  const named = new RegExp(`^\\.${f}(\\.old)?\\..+\\.\\d+\\.tmp$`);
  for (const e of readdirSync(dir)) {
    const m = legacy.exec(e);
    const stale = m ? !pidAlive(Number(m[1])) : named.test(e) && isStaleTemp(dir, e);
    if (stale) rmSync(join(dir, e), { recursive: true, force: true });
  }
}

/**
 * The first file of `final` (an unpacked `folder`) whose size is not the one the archive gives it, said as
 * `<file> is N bytes, the archive's M` (or missing); null when every file of the archive's folder is there,
 * as long as in the archive. Reads the archive's headers only (it is inflated, not written).
 */
async function differsFromArchive(archive: string, final: string, folder: string): Promise<string | null> {
  let differs: string | null = null;
  await walkTarGz(
    archive,
    (name, size) => {
      const rel = name.replace(/^\.\//, '');
      if (differs !== null || !rel.startsWith(`${folder}/`) || rel.endsWith('/')) return null;
      const path = join(final, rel.slice(folder.length + 1));
      const got = existsSync(path) && statSync(path).isFile() ? statSync(path).size : null;
      if (got !== size) differs = got === null ? `${rel.slice(folder.length + 1)} is missing` : `${rel.slice(folder.length + 1)} is ${got} bytes, the archive's ${size}`;
      return null;
    },
    () => differs !== null,
  );
  return differs;
}

/**
 * Unpack the gzipped tar `archive` into `<dir>/<folder>` (the top folder the archive holds): into a temporary
 * sibling first, renamed into place when every file is written. `expect` lists files the folder must hold;
 * a folder already holding them is left alone.
 */
export async function extractArchive(
  archive: string,
  dir: string,
  folder: string,
  opts: { expect?: string[]; signal?: AbortSignal; onExtractFile?: (name: string) => void; log?: (line: string) => void; onWrite?: () => void } = {},
): Promise<'extracted' | 'present'> {
  const final = join(dir, folder);
  const expect = opts.expect ?? [];
  if (existsSync(final) && statSync(final).isDirectory() && expect.every((f) => existsSync(join(final, f)))) {
    // each file as long as the archive holds it: a file cut short (a disk that filled, a copy stopped) is
    // unpacked again, never read as data
    const differs = await differsFromArchive(archive, final, folder);
    if (differs === null) return 'present';
    opts.log?.(`${folder}: ${differs}; unpacking it again`);
  }
  opts.onWrite?.();
  removeStale(dir, folder);
  // host and pid in the names: hosts unpacking into one shared folder never touch each other's
  const tmp = join(dir, tempName(folder));
  const old = join(dir, tempName(`${folder}.old`));
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    // each file is written as it is inflated: no copy of the archive or of a whole file is held
    let fd: number | null = null;
    try {
      const interrupted = () => {
        if (opts.signal?.aborted) throw new FetchInterrupted(`interrupted while unpacking ${archive}; nothing was unpacked`);
      };
      await walkTarGz(archive, (name) => {
        interrupted();
        const rel = normalize(name);
        if (isAbsolute(rel) || rel === '..' || rel.startsWith(`..${sep}`)) throw new DataError(`${archive}: refusing to unpack ${name} (outside the archive's folder)`);
        const p = join(tmp, rel);
        mkdirSync(dirname(p), { recursive: true });
        const out = openSync(p, 'w');
        fd = out;
        return {
          data: (bytes) => {
            interrupted();
            for (let off = 0; off < bytes.length; ) off += writeSync(out, bytes, off);
          },
          end: () => {
            fd = null;
            closeSync(out);
            opts.onExtractFile?.(rel);
          },
        };
      });
    } finally {
      if (fd !== null) closeSync(fd);
    }
    const inner = join(tmp, folder);
    const missing = expect.filter((f) => !existsSync(join(inner, f)));
    if (!existsSync(inner) || missing.length) {
      throw new DataError(`${archive}: does not hold ${folder}/${missing.length ? missing[0] : ''} (is it the right archive?)`);
    }
    if (existsSync(final)) {
      // an incomplete folder from elsewhere: swap, so the final name always holds a whole folder or the old one
      renameSync(final, old);
      renameSync(inner, final);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(inner, final);
    }
    return 'extracted';
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * `mkdir -p dir`, one folder at a time: a recursive mkdir loops forever where a folder cannot be made and the
 * system says it exists (under /proc), where this fails with the folder's error (ENOENT).
 */
async function makeFolders(dir: string): Promise<void> {
  for (const d of missingAncestors(join(dir, 'file'))) {
    try {
      await mkdir(d);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      // made meanwhile by another fetch: fine
      if (err.code === 'EEXIST' && statSync(d).isDirectory()) continue;
      const what = /^\w+: ([^,]+)/.exec(err.message)?.[1] ?? err.message;
      throw new DataError(`${d}: cannot make this folder (${what}, ${err.code}); fetch into a folder that can be written (--dir DIR)`);
    }
  }
}

function ioError(e: unknown): never {
  const err = e as NodeJS.ErrnoException;
  if (err instanceof DataError || err instanceof FetchInterrupted || !err?.code) throw e;
  // 'ENOTDIR: not a directory, mkdir '/x'' -> '/x: cannot mkdir: not a directory (ENOTDIR)'
  const what = /^\w+: ([^,]+)/.exec(err.message)?.[1] ?? err.message.split('\n')[0];
  throw new DataError(`${err.path ?? 'data fetch'}: ${err.syscall ? `cannot ${err.syscall}: ` : ''}${what} (${err.code})`);
}

/** The lock file of a fetch writing into a dataset's folder: `<host> <pid>` of the fetch holding it. */
export const FETCH_LOCK = '.fetch.lock';

/** How often a fetch touches its lock: another host's lock untouched for FOREIGN_TEMP_STALE_MS is a dead fetch's. */
const FETCH_LOCK_TOUCH_MS = 60_000;

/**
 * Take the folder `dir` for this fetch before it writes there: that it may be written, said before a byte is
 * downloaded (a read-only folder was found out at the first write, after the request), and that no other
 * fetch is writing there (two shared one `.part`, each resuming the other's, and both failed their checksum).
 * The lock is made whole or not at all (written to a temporary name, then linked), and touched while held; one
 * whose fetch is gone (this host's pid not alive; another host's untouched an hour; one that does not read as
 * `<host> <pid>`) is taken over. Returns its release.
 */
export function takeFetchFolder(dir: string): () => void {
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EACCES';
    throw new DataError(`${dir}: cannot write in this folder (${code}); fetch into a folder that can be written (--dir DIR)`);
  }
  const path = join(dir, FETCH_LOCK);
  const mine = `${hostTag()} ${process.pid}\n`;
  // the temporary files of fetches killed while they took the lock
  for (const e of readdirSync(dir)) if (e.startsWith(`.${FETCH_LOCK}.`) && isStaleTemp(dir, e)) rmSync(join(dir, e), { force: true });
  const tmp = join(dir, tempName(FETCH_LOCK));
  const aside = join(dir, tempName(`${FETCH_LOCK}.stale`));
  writeFileSync(tmp, mine);
  try {
    for (let tries = 0; ; tries++) {
      try {
        linkSync(tmp, path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || tries > 4) throw e;
      }
      let holder = '';
      let age = 0;
      let ino = 0;
      try {
        holder = readFileSync(path, 'utf8');
        const st = statSync(path);
        age = Date.now() - st.mtimeMs;
        ino = st.ino;
      } catch {
        continue; // released meanwhile: take it
      }
      const m = /^(\S+) (\d+)\n$/.exec(holder);
      const live = m !== null && (m[1] === hostTag() ? Number(m[2]) !== process.pid && pidAlive(Number(m[2])) : age <= FOREIGN_TEMP_STALE_MS);
      if (live) {
        const who = m![1] === hostTag() ? `pid ${m![2]}` : `pid ${m![2]} on ${m![1]}`;
        throw new DataError(`${dir}: another moco3 data fetch (${who}) is writing here; wait for it to finish (or stop it), then run this again`);
      }
      // a dead fetch's lock, taken out of the way by a rename: another fetch taking it over at once may have
      // put its own there meanwhile (removing by name would remove that one, and both would hold the folder),
      // so the file moved is checked to be the one judged, and another's put back
      try {
        renameSync(path, aside);
      } catch {
        continue; // gone meanwhile: take it
      }
      if (statSync(aside).ino !== ino) {
        try {
          linkSync(aside, path);
        } catch {
          /* a third fetch linked its own: that one holds the folder */
        }
      }
      rmSync(aside, { force: true });
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  const touch = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      /* gone: the release below finds it so */
    }
  }, FETCH_LOCK_TOUCH_MS);
  touch.unref();
  return () => {
    clearInterval(touch);
    try {
      if (readFileSync(path, 'utf8') === mine) rmSync(path, { force: true });
    } catch {
      /* gone already */
    }
  };
}

/** Fetch a dataset: every file of `source` into `<dir>/<source.subdir>`, checked, then the archive unpacked. */
export async function fetchDataset(source: DatasetSource, opts: FetchOptions): Promise<FetchResult> {
  const log = opts.log ?? (() => {});
  const dir = resolve(opts.dir, source.subdir);
  const base = opts.mirror || source.baseUrl;
  const files: FetchResult['files'] = [];
  // the folders this fetch makes: removed again when it fails before writing into them (a .part it leaves,
  // to resume from, keeps its folder)
  const made = missingAncestors(join(dir, 'file'));
  // taken at the first write: a complete copy in a folder that may not be written (the system's) is checked alone
  const lock: { release: (() => void) | null } = { release: null };
  const writing = () => {
    lock.release ??= takeFetchFolder(dir);
  };
  try {
    await makeFolders(dir);
    // something else where a file (or the unpacked folder) goes: said before a byte is downloaded, naming it
    for (const [name, folder] of [...source.files.map((f) => [f.name, false] as const), ...(source.extract ? [[source.extract.folder, true] as const] : [])]) {
      const at = join(dir, name);
      if (existsSync(at) && statSync(at).isDirectory() !== folder) {
        throw new DataError(`${at}: is a ${folder ? 'file' : 'folder'}, where the ${folder ? 'unpacked folder' : `file ${name}`} goes: move it away, or fetch into another --dir`);
      }
    }
    for (const f of source.files) {
      const path = join(dir, f.name);
      if (existsSync(path)) {
        const c = await checkFile(path, f);
        if (c.status === 'ok') {
          log(`${f.name}: already there, checksum ok${c.how === 'content' ? ` (${c.note})` : ''}`);
          files.push({ name: f.name, path, action: 'present' });
          continue;
        }
        log(`${f.name}: ${path} does not match the published checksum; downloading it again`);
      }
      writing();
      const url = urlFor(base, f.name);
      log(`${f.name}: downloading ${url} (${mb(f.size)})`);
      const action = await downloadFile(url, path, f, opts);
      files.push({ name: f.name, path, action });
    }
    let extracted: FetchResult['extracted'];
    if (source.extract) {
      const kind = source.name === 'cifar10' || source.name === 'cifar100' ? CIFAR[source.name] : null;
      const expect = kind ? [...kind.train, ...kind.test] : [];
      const target = join(dir, source.extract.folder);
      const had = existsSync(target);
      if (!had) log(`${source.extract.archive}: unpacking to ${target}`);
      const action = await extractArchive(join(dir, source.extract.archive), dir, source.extract.folder, {
        expect,
        // unpacked (again) unless already whole: the folder taken first
        onWrite: writing,
        signal: opts.signal,
        onExtractFile: opts.onExtractFile,
        log,
      });
      if (action === 'present') log(`${source.extract.folder}: already unpacked`);
      extracted = { path: target, action };
    }
    return { dir, files, extracted, dataFlag: dataFlagFor(source, opts.dir) };
  } catch (e) {
    // its lock first: the folder it leaves empty is removed
    lock.release?.();
    lock.release = null;
    removeEmptyFolders(made);
    // the way round a failed download names the folder to put the file in: gone again, it is to be made
    if (e instanceof DataError && !existsSync(dir)) e.message = e.message.replace(`put it in ${dir},`, `put it in ${dir} (a folder to make: this fetch removed the empty one it made),`);
    return ioError(e);
  } finally {
    lock.release?.();
  }
}
