#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm install` / `npm run build`); in a checkout without dist/,
// runs the TypeScript sources through tsx.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// a scheduler's warning (USR1, USR2) that comes while moco3 starts is kept for the command's own handlers
// (takeEarlySignals in src/cli/supervise.ts): unhandled, USR1 would open Node's inspector and USR2 end moco3
const early = [];
const keep = (sig) => early.push(sig);
for (const sig of ['SIGUSR1', 'SIGUSR2']) process.on(sig, keep);
const earlySignals = () => {
  for (const sig of ['SIGUSR1', 'SIGUSR2']) process.off(sig, keep);
  return early.splice(0);
};

// image decoding (sharp) runs on libuv's pool, 4 threads unless told otherwise: one per core instead. Said
// as this machine's (MOCO3_UV_THREADPOOL_DEFAULT) so that a Slurm submission does not pass it on to tasks
// that run elsewhere (src/sweep/slurm.ts)
if (process.env.UV_THREADPOOL_SIZE === undefined) {
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, availableParallelism()));
  process.env.MOCO3_UV_THREADPOOL_DEFAULT = process.env.UV_THREADPOOL_SIZE;
}

// one line for anything that escapes the CLI's own error boundary (src/cli/main.ts); the trace with MOCO3_DEBUG=1
const fatal = (e) => {
  if (process.env.MOCO3_DEBUG === '1') process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  else process.stderr.write(`moco3: error: ${String(e instanceof Error ? e.message : e).split('\n')[0]}\n(MOCO3_DEBUG=1 shows where it happened)\n`);
  process.exit(1);
};
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist', 'cli', 'main.js');
try {
  let mod;
  if (existsSync(dist)) {
    mod = await import(pathToFileURL(dist).href);
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    mod = await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
  }
  process.exitCode = await mod.main(process.argv.slice(2), { processEntry: true, earlySignals });
} catch (e) {
  fatal(e);
}
