/**
 * Gzipped dataset files inflated piece by piece. Reading a whole file and gunzipping it at once leaves the
 * compressed file and the inflated pieces to V8's garbage collector, which may not free them for the rest
 * of a training run (about 70 MB for Fashion-MNIST's train images; see docs/ENGINES.md). The readers here
 * hand each 64 KiB piece to the caller, who copies what it keeps into arrays of their final size.
 */
import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DataError } from './types.ts';

/** The error for a file the file system would not read: "PATH: cannot read (CODE)". */
export const cannotRead = (path: string, e: unknown) => new DataError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);

/** Whether `head` (the first bytes of a file) starts with the gzip magic. */
export const isGzip = (head: Uint8Array) => head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;

/** Whether the file `path` starts with the gzip magic (its first two bytes read). */
export function fileIsGzip(path: string): boolean {
  const head = new Uint8Array(2);
  const fd = openSync(path, 'r');
  try {
    return isGzip(head.subarray(0, readSync(fd, head, 0, 2, 0)));
  } finally {
    closeSync(fd);
  }
}

/**
 * Inflate the gzip file `path`, giving `take` every piece in order. `take` returns false to stop early.
 * A DataError thrown by `take` is thrown as it is; zlib's errors (corrupt or truncated data) become a
 * DataError with `corrupt(message)`, and the file system's a DataError "PATH: cannot read (CODE)".
 */
export async function gunzipPieces(path: string, take: (piece: Uint8Array) => boolean | void, corrupt: (message: string) => string): Promise<void> {
  // an error thrown inside the pipeline would reach the caller as an AbortError: it is kept and thrown after
  let stopped: unknown = null;
  let early = false;
  try {
    await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), createGunzip({ chunkSize: 1 << 16 }), async (source: AsyncIterable<Buffer>) => {
      for await (const piece of source) {
        try {
          if (take(piece) === false) {
            early = true;
            return;
          }
        } catch (e) {
          stopped = e;
          return;
        }
      }
    });
  } catch (e) {
    if (stopped === null && !early) {
      // zlib's errors carry codes Z_DATA_ERROR, Z_BUF_ERROR (the file ends early), ...; the others are the file system's
      throw String((e as NodeJS.ErrnoException).code).startsWith('Z_') ? new DataError(corrupt((e as Error).message)) : cannotRead(path, e);
    }
  }
  if (stopped !== null) throw stopped;
}
