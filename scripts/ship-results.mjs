#!/usr/bin/env node
// Copy the small files of finished sweeps into the repository (docs/results/<preset>/), so that their
// reports ship with moco3 and a test can re-render them: per sweep its report (report.md, report.csv,
// runs.csv, plots/), baselines.json and sweep.yaml; per run config.yaml, meta.json, status.json,
// summary.json, linear.json and metrics.jsonl, gzipped (metrics.jsonl.gz; a run copied from shipped results
// keeps its metrics.jsonl.gz). Never checkpoints.
//
//   node scripts/ship-results.mjs <results-dir> <dest-dir> [sweep ...]
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const [src, dest, ...only] = process.argv.slice(2);
if (!src || !dest) {
  process.stderr.write('usage: node scripts/ship-results.mjs <results-dir> <dest-dir> [sweep ...]\n');
  process.exit(2);
}
const SWEEP_FILES = ['report.md', 'report.csv', 'runs.csv', 'baselines.json', 'sweep.yaml'];
const RUN_FILES = ['config.yaml', 'meta.json', 'status.json', 'summary.json', 'linear.json'];
const isDir = (p) => existsSync(p) && statSync(p).isDirectory();

const sweeps = only.length ? only : readdirSync(src).filter((d) => isDir(join(src, d)) && existsSync(join(src, d, 'report.md')));
let bytes = 0;
for (const sweep of sweeps) {
  const from = join(src, sweep);
  const to = join(dest, sweep);
  if (!existsSync(join(from, 'report.md'))) {
    process.stderr.write(`ship-results: ${from} has no report.md; run \`moco3 report ${from}\` first\n`);
    process.exit(2);
  }
  rmSync(to, { recursive: true, force: true });
  mkdirSync(join(to, 'plots'), { recursive: true });
  const put = (name, data) => {
    writeFileSync(join(to, name), data);
    bytes += data.length;
  };
  for (const f of SWEEP_FILES) if (existsSync(join(from, f))) put(f, readFileSync(join(from, f)));
  if (isDir(join(from, 'plots'))) for (const f of readdirSync(join(from, 'plots'))) put(join('plots', f), readFileSync(join(from, 'plots', f)));
  for (const run of readdirSync(from)) {
    const rd = join(from, run);
    if (!isDir(rd) || !existsSync(join(rd, 'config.yaml'))) continue;
    mkdirSync(join(to, run), { recursive: true });
    for (const f of RUN_FILES) if (existsSync(join(rd, f))) put(join(run, f), readFileSync(join(rd, f)));
    if (existsSync(join(rd, 'metrics.jsonl'))) put(join(run, 'metrics.jsonl.gz'), gzipSync(readFileSync(join(rd, 'metrics.jsonl')), { level: 9 }));
    // a run copied from shipped results has its metrics gzipped already
    else if (existsSync(join(rd, 'metrics.jsonl.gz'))) put(join(run, 'metrics.jsonl.gz'), readFileSync(join(rd, 'metrics.jsonl.gz')));
  }
  process.stdout.write(`${sweep}: -> ${to}\n`);
}
process.stdout.write(`${(bytes / 1024 / 1024).toFixed(2)} MiB in all\n`);
