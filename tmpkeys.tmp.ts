import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { readSweep } from './src/report/results.ts';
import { viewSweep } from './src/report/sweep.ts';
import { UNHASHED_KEYS } from './src/config/load.ts';
const roots = ['docs/results/cpu', 'docs/results/calibration'];
for (const r of roots) for (const s of readdirSync(r)) {
  const d = join(r, s);
  if (!existsSync(d) || s === 'README.md') continue;
  try {
    const sw = readSweep(d); const v = viewSweep(sw);
    const skip = new Set(['seed', ...UNHASHED_KEYS, ...v.sweptKeys]);
    const keys = new Set(sw.runs.flatMap((x) => [...x.flat.keys()]));
    const out: string[] = [];
    for (const k of keys) { if (skip.has(k)) continue; const vals = new Set(sw.runs.map((x) => JSON.stringify(x.flat.get(k)))); if (vals.size > 1) out.push(`${k}(${[...vals].join('|')})`); }
    console.log(d, v.sweptKeys.join('x'), out.join(' '));
  } catch (e) { console.log(d, 'ERR', (e as Error).message.slice(0, 80)); }
}
