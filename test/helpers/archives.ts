/** Files in the formats the dataset readers read, built by the tests. */

/** n records in the official layout: label byte(s), then 1024 R, 1024 G, 1024 B bytes. */
export function cifarRecords(n: number, labelBytes: number, seed: number): Uint8Array {
  const rec = labelBytes + 3072;
  const out = new Uint8Array(n * rec);
  for (let i = 0; i < n; i++) {
    const r = out.subarray(i * rec, (i + 1) * rec);
    if (labelBytes === 2) r[0] = (i + seed) % 20; // coarse
    r[labelBytes - 1] = (i + seed) % (labelBytes === 2 ? 100 : 10);
    for (let p = 0; p < 3072; p++) r[labelBytes + p] = (p * 7 + i * 13 + seed) % 256;
  }
  return out;
}

/**
 * A ustar archive of the files (octal sizes, checksum, typeflag 0; a name ending in / is a folder, typeflag 5),
 * or of [name, bytes, typeflag] entries in order (a GNU `L` or pax `x` header before the entry it names).
 */
export function tar(files: Record<string, Uint8Array> | [string, Uint8Array, string][]): Uint8Array {
  const parts: Uint8Array[] = [];
  const entries = Array.isArray(files) ? files : Object.entries(files).map(([name, data]): [string, Uint8Array, string] => [name, data, name.endsWith('/') ? '5' : '0']);
  for (const [name, data, type] of entries) {
    const h = new Uint8Array(512);
    const put = (s: string, at: number) => h.set(Buffer.from(s, 'latin1'), at);
    h.set(Buffer.from(name, 'utf8').subarray(0, 100), 0); // as GNU tar and Python write names
    put('0000644\0', 100);
    put('0000000\0', 108);
    put('0000000\0', 116);
    put(data.length.toString(8).padStart(11, '0') + '\0', 124);
    put('00000000000\0', 136);
    put('        ', 148);
    h[156] = type.charCodeAt(0);
    put('ustar\0', 257);
    put('00', 263);
    const sum = h.reduce((a, b) => a + b, 0);
    put(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    parts.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  return Buffer.concat(parts);
}
