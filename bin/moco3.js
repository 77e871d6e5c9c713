#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm install` / `npm run build`); in a checkout without dist/,
// runs the TypeScript sources through tsx.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// image decoding (sharp) runs on libuv's pool, 4 threads unless told otherwise: one per core instead
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism()));

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist', 'cli', 'main.js');
let mod;
if (existsSync(dist)) {
  mod = await import(pathToFileURL(dist).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  mod = await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
}
const code = await mod.main(process.argv.slice(2));
process.exitCode = code;
