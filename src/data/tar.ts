/**
 * A gzipped tar archive read as it is inflated (src/data/gunzip.ts): each regular file's bytes go to the
 * caller piece by piece, so neither the archive nor a whole file is ever held in memory. Used to read
 * CIFAR straight from its .tar.gz (src/data/cifar.ts) and to unpack it (src/data/fetch.ts). Ustar headers;
 * long names (GNU or pax extensions) are not needed for the archives moco3 reads.
 */
import { gunzipPieces } from './gunzip.ts';
import { DataError } from './types.ts';

/** A ustar header block: the entry's path, its size, and whether it is a regular file; null at the end-of-archive block. */
function tarHeader(h: Uint8Array): { name: string; size: number; regular: boolean } | null {
  if (h.every((b) => b === 0)) return null;
  const str = (a: number, b: number) => Buffer.from(h.subarray(a, b)).toString('latin1').replace(/\0.*$/s, '');
  const type = String.fromCharCode(h[156]!);
  return { name: (str(345, 500) ? `${str(345, 500)}/` : '') + str(0, 100), size: parseInt(str(124, 136).trim() || '0', 8), regular: type === '0' || type === '\0' };
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
 * Errors are one-line DataErrors naming the archive: a file the archive ends inside ("truncated tar
 * archive at NAME"), a header with no size, data that is not gzip. What `open` or a sink throws is thrown
 * as it is.
 */
export async function walkTarGz(path: string, open: (name: string, size: number) => TarFileSink | null, finished?: () => boolean): Promise<void> {
  const header = new Uint8Array(512);
  let headerLen = 0;
  // the file being read: bytes of its body left, then of its padding to 512
  let entry = null as { name: string; left: number; pad: number; sink: TarFileSink | null } | null;
  await gunzipPieces(
    path,
    (piece) => {
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
        if (!h) return false; // the end of the archive
        const { name, size } = h;
        if (!Number.isFinite(size)) throw new DataError(`${path}: corrupt tar header at ${name}`);
        const sink = h.regular ? open(name, size) : null;
        if (size > 0) entry = { name, left: size, pad: (512 - (size % 512)) % 512, sink };
        else sink?.end?.();
      }
    },
    (message) => `${path}: not a gzipped tar archive (${message})`,
  );
  if (entry && entry.left > 0) throw new DataError(`${path}: truncated tar archive at ${entry.name}`);
}
