/**
 * A gzipped tar archive read as it is inflated (src/data/gunzip.ts): each regular file's bytes go to the
 * caller piece by piece, so neither the archive nor a whole file is ever held in memory. Used to read
 * CIFAR straight from its .tar.gz (src/data/cifar.ts) and to unpack it (src/data/fetch.ts). Ustar headers,
 * with the long names of GNU (`L`) and pax (`x`, its `path`) extensions.
 */
import { gunzipPieces } from './gunzip.ts';
import { DataError } from './types.ts';

/**
 * A ustar header block: the entry's path (UTF-8, as GNU tar and Python write it), its size and its type
 * flag; null at the end-of-archive block; 'checksum' where the block's checksum is wrong (no tar header there).
 */
function tarHeader(h: Uint8Array): { name: string; size: number; type: string } | null | 'checksum' {
  if (h.every((b) => b === 0)) return null;
  const str = (a: number, b: number) => Buffer.from(h.subarray(a, b)).toString('utf8').replace(/\0.*$/s, '');
  // the sum of the block's bytes with its own checksum field read as spaces; old tars summed the bytes as
  // signed, and readers (GNU tar, Python's tarfile) take either sum
  let sum = 8 * 32;
  let signed = 8 * 32;
  for (let i = 0; i < 512; i++) {
    if (i >= 148 && i < 156) continue;
    sum += h[i]!;
    signed += h[i]! < 128 ? h[i]! : h[i]! - 256;
  }
  const want = parseInt(str(148, 156).trim() || 'x', 8);
  if (want !== sum && want !== signed) return 'checksum';
  const type = String.fromCharCode(h[156]!);
  const name = (str(345, 500) ? `${str(345, 500)}/` : '') + str(0, 100);
  // octal digits only: parseInt would take a sign ("-6001") or stop at the first other character
  const size = str(124, 136).trim();
  return { name, size: /^[0-7]*$/.test(size) ? parseInt(size || '0', 8) : NaN, type };
}

/** A regular file's entry: type 0 (or NUL, old archives), whose name (the long one, if any) does not end in a slash (a v7 folder). */
const isRegular = (type: string, name: string) => (type === '0' || type === '\0') && !name.endsWith('/');

/**
 * The path a pax extended header (`<len> <key>=<value>\n` records, `len` counting bytes) gives the entry
 * after it, or null. The records are cut on the bytes, then each value decoded.
 */
function paxPath(body: Uint8Array): string | null {
  const b = Buffer.from(body.buffer, body.byteOffset, body.length);
  let path: string | null = null;
  for (let at = 0; at < b.length; ) {
    const sp = b.indexOf(0x20, at);
    const len = sp < 0 ? NaN : Number(b.toString('latin1', at, sp));
    if (!Number.isInteger(len) || len <= 0 || at + len > b.length) break;
    const rec = b.subarray(sp + 1, at + len - 1); // without the trailing newline
    if (rec.toString('latin1', 0, 5) === 'path=') path = rec.toString('utf8', 5);
    at += len;
  }
  return path;
}

/** What the caller does with one regular file: `data` gets its bytes in order, `end` is called after the last. */
export interface TarFileSink {
  data(bytes: Uint8Array): void;
  end?(): void;
}

/**
 * Walk the gzipped tar archive `path`. At each regular file's header `open(name, size)` says where its
 * bytes go, or null to skip them. The walk stops at the end-of-archive block, or before the next header
 * once `finished()` (when given) says the caller has all it wants.
 *
 * Errors are one-line DataErrors naming the archive: a file or header the archive ends inside ("truncated
 * tar archive at NAME"), a header with no size, data that is not gzip. What `open` or a sink throws is thrown
 * as it is.
 */
export async function walkTarGz(path: string, open: (name: string, size: number) => TarFileSink | null, finished?: () => boolean): Promise<void> {
  const header = new Uint8Array(512);
  let headerLen = 0;
  // the file being read: bytes of its body left, then of its padding to 512
  let entry = null as { name: string; left: number; pad: number; sink: TarFileSink | null } | null;
  // where the next header starts in the unpacked data, and the name a long-name header gave the next entry
  let at = 0;
  let longName: string | null = null;
  // past the end-of-archive blocks: the rest is inflated unread, so that zlib checks the gzip trailer's CRC
  let ended = false;
  await gunzipPieces(
    path,
    (piece) => {
      if (ended) return;
      let off = 0;
      while (off < piece.length) {
        if (entry) {
          const n = Math.min(entry.left, piece.length - off);
          if (n > 0) entry.sink?.data(piece.subarray(off, off + n));
          entry.left -= n;
          off += n;
          if (entry.left > 0) break;
          if (entry.sink) {
            entry.sink.end?.();
            entry.sink = null;
          }
          const skip = Math.min(entry.pad, piece.length - off);
          entry.pad -= skip;
          off += skip;
          if (entry.pad === 0) entry = null;
          continue;
        }
        if (headerLen === 0 && finished?.()) return false;
        const n = Math.min(512 - headerLen, piece.length - off);
        header.set(piece.subarray(off, off + n), headerLen);
        headerLen += n;
        off += n;
        if (headerLen < 512) break;
        headerLen = 0;
        const h = tarHeader(header);
        if (!h) {
          // the end of the archive: what follows (zero blocks, the gzip trailer) is read to its end, unread
          ended = true;
          return;
        }
        if (h === 'checksum') throw new DataError(`${path}: not a tar archive (no tar header at byte ${at} of the unpacked data)`);
        const { size } = h;
        // a long name, from the GNU or pax header before this one
        const name = longName ?? h.name;
        longName = null;
        if (!Number.isFinite(size)) throw new DataError(`${path}: corrupt tar header at ${name}`);
        const pad = (512 - (size % 512)) % 512;
        at += 512 + size + pad;
        let sink: TarFileSink | null;
        if (h.type === 'L' || h.type === 'x') {
          // the body names the next entry: gathered, then read at its end
          const parts: Uint8Array[] = [];
          const gnu = h.type === 'L';
          sink = {
            data: (b) => void parts.push(b.slice()),
            end: () => {
              const body = Buffer.concat(parts);
              longName = gnu ? body.toString('utf8').replace(/\0.*$/s, '') : paxPath(body);
            },
          };
        } else sink = isRegular(h.type, name) ? open(name, size) : null;
        if (size > 0) entry = { name, left: size, pad, sink };
        else sink?.end?.();
      }
    },
    // a download cut short ends the gzip data early: said as such, not as another kind of file
    (message) =>
      /unexpected end of file/i.test(message)
        ? `${path}: truncated: the gzip data ends early (${message}); download it again`
        : /incorrect (data|length) check/i.test(message)
          ? `${path}: damaged: the data does not match the gzip checksum at its end (${message}); download it again`
          : `${path}: not a gzipped tar archive (${message})`,
  );
  if (entry && entry.left > 0) throw new DataError(`${path}: truncated tar archive at ${entry.name}`);
  // cut inside a header: the entries it would have begun would be said missing from the archive
  if (headerLen > 0) throw new DataError(`${path}: truncated tar archive (it ends inside the header at byte ${at} of the unpacked data)`);
}
