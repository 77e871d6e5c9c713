/**
 * The reports shipped in docs/results/ are what the report code makes of the run files shipped beside
 * them: each sweep is copied to a temporary folder, re-rendered, and every text file it then holds
 * (report.md, report.csv, runs.csv, the SVG plots, each run's summary.json with its instability figures)
 * compared byte for byte with the shipped one, and no file added or gone. The PNGs are left out: their
 * pixels depend on the fonts a machine has. A change to the report code that changes any of them fails
 * here until the shipped reports are re-rendered (`moco3 report docs/results/<preset>/<sweep>`) and
 * committed with it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, sep } from 'node:path';
import { writeReport } from '../../src/report/index.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = join(import.meta.dirname, '..', '..', 'docs', 'results');
const sweeps: string[] = [];
for (const group of readdirSync(root)) {
  const g = join(root, group);
  if (!statSync(g).isDirectory()) continue;
  for (const s of readdirSync(g)) if (existsSync(join(g, s, 'report.md'))) sweeps.push(join(group, s));
}

test('docs/results holds shipped sweeps', () => {
  assert.ok(sweeps.length >= 3, `found ${sweeps.join(', ')}`);
});

for (const s of sweeps) {
  test(`shipped report ${s} re-renders from its run files`, async () => {
    const dir = join(tempDir('moco3-shipped-'), basename(s));
    cpSync(join(root, s), dir, { recursive: true });
    await writeReport(dir);
    const shipped = textFiles(join(root, s));
    const rendered = textFiles(dir);
    assert.deepEqual(rendered, shipped, `${s}: the files a report leaves`);
    for (const f of ['report.md', 'report.csv', 'runs.csv', 'plots/knn.svg']) assert.ok(shipped.includes(f), `${s}/${f} is shipped`);
    for (const f of shipped) assert.equal(readFileSync(join(dir, f), 'utf8'), readFileSync(join(root, s, f), 'utf8'), `${s}/${f}`);
  });
}

/** The text files under a folder, relative and sorted (not the PNGs, nor the gzipped metrics). */
function textFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => statSync(join(dir, f)).isFile() && !/\.(png|gz)$/.test(f))
    .map((f) => f.split(sep).join('/'))
    .sort();
}
