/**
 * The baselines section of a report: results/<sweep>/baselines.json (written by `moco3 baselines` or at
 * the end of `moco3 sweep`) beside what the sweep's pretrained encoders reached. Reads files only.
 */
import { isAbsolute } from 'node:path';
import { shellQuote } from '../engine/files.ts';
import { PRESETS, type PresetName } from '../config/presets.ts';
import { baselineModel, KNN_KEYS, sameKnnSettings, type BaselinesFile, type KnnSettings } from '../runfolder/baselines.ts';
import { isObj } from '../runfolder/paths.ts';
import { type RunRecord } from './results.ts';
import type { RunFacts } from './table.ts';



const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * The images of a split a run used: its config's `data.<split>_size`, or where that is null (the whole split)
 * what its linear probe recorded having (summary.json's `linear.<split>_size`); undefined when neither says.
 */
function runSplitSize(r: RunRecord, split: 'train' | 'test'): unknown {
  const set = r.flat.get(`data.${split}_size`);
  if (set !== null) return set;
  const lin = r.summary?.linear;
  const n = typeof lin === 'object' && lin !== null ? (lin as Record<string, unknown>)[`${split}_size`] : undefined;
  return isNum(n) ? n : undefined;
}

/**
 * Where the sweep's runs differ from what the baselines were computed for (dataset, image size, the splits'
 * sizes, model): one phrase per differing key, e.g. "model.patch_size 4 (baselines: 7)"; empty when they match.
 */
export function baselinesMismatch(b: BaselinesFile, runs: Iterable<RunRecord>): string[] {
  const want = new Map<string, unknown>([
    ['data.name', b.dataset],
    ['data.image_size', b.image_size],
    // the kNN bank and the probe's training set are drawn from the train split, its queries from the test split
    ...(isNum(b.train_size) ? [['data.train_size', b.train_size] as [string, unknown]] : []),
    ...(isNum(b.test_size) ? [['data.test_size', b.test_size] as [string, unknown]] : []),
    ...Object.entries(baselineModel(b)).map(([k, v]) => [`model.${k}`, v] as [string, unknown]),
  ]);
  const seen = new Map<string, Set<string>>();
  for (const r of runs) {
    for (const [k, v] of want) {
      const got = k === 'data.train_size' ? runSplitSize(r, 'train') : k === 'data.test_size' ? runSplitSize(r, 'test') : r.flat.get(k);
      if (got === undefined || got === v) continue;
      const s = seen.get(k) ?? new Set<string>();
      s.add(String(got));
      seen.set(k, s);
    }
  }
  return [...seen].map(([k, vs]) => `${k} ${[...vs].join(', ')} (baselines: ${String(want.get(k))})`);
}

function meanStd(xs: number[]): string {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length < 2) return m.toFixed(1);
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
  return `${m.toFixed(1)} ± ${sd.toFixed(1)}`;
}

/** Seeds as a flag takes them: 0-4 for a run of consecutive seeds, else 0,2,5. */
function seedsArg(seeds: number[]): string {
  const sorted = [...new Set(seeds)].sort((a, b) => a - b);
  const run = sorted.length > 2 && sorted.every((x, i) => x === sorted[0]! + i);
  return run ? `${sorted[0]}-${sorted.at(-1)}` : sorted.join(',');
}

/**
 * The `moco3 baselines` command that computes baselines for the sweep its sweep.yaml records (the latest
 * invocation's file, preset, optimizers, seeds, --data and --set); `moco3 baselines <sweep>` without one.
 * What it cannot know is left to words: `--results`, where the sweep is (a report reads the same wherever its
 * folder is), and a sweep file given by an absolute path (another machine's, in a report shipped elsewhere).
 */
export function baselinesCommandFor(sweepFile: Record<string, unknown> | null): string {
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : null);
  const file = str(sweepFile?.file) ?? str(sweepFile?.name);
  if (!sweepFile || !file) return 'moco3 baselines <sweep>';
  const parts = ['moco3 baselines', isAbsolute(file) ? '<sweep file>' : shellQuote(file)];
  const preset = str(sweepFile.preset);
  if (preset) parts.push('--preset', preset);
  const opts = Array.isArray(sweepFile.optimizers) ? sweepFile.optimizers.filter((o): o is string => typeof o === 'string') : [];
  // a sweep of other optimizers than its file's is named after them (lr-lamb): the flag makes the same sweep
  if (opts.length && str(sweepFile.id) !== str(sweepFile.name)) parts.push('--optimizer', opts.join(','));
  const seeds = Array.isArray(sweepFile.seeds) ? sweepFile.seeds.filter((x): x is number => Number.isSafeInteger(x)) : [];
  if (seeds.length) parts.push('--seeds', seedsArg(seeds));
  const sets = Array.isArray(sweepFile.sets) ? sweepFile.sets.filter((x): x is string => typeof x === 'string') : [];
  // --data is no --set: the runs' data, where it is not the preset's (and no --set gives it)
  const runs = Array.isArray(sweepFile.runs) ? sweepFile.runs : [];
  const data = isObj(runs[0]) && isObj(runs[0].config) && isObj(runs[0].config.data) ? runs[0].config.data : null;
  const presetData = preset && preset in PRESETS ? (PRESETS[preset as PresetName].config.data ?? {}) : {};
  if (data && str(data.name) && !sets.some((x) => /^data\.(name|path)=/.test(x)) && (data.name !== presetData.name || str(data.path))) {
    parts.push('--data', shellQuote(str(data.path) ? `${data.name}:${data.path}` : String(data.name)));
  }
  for (const x of sets) parts.push('--set', shellQuote(x));
  return parts.join(' ');
}

/** Markdown lines: the baselines table and a plain sentence on whether pretraining beat them. */
export function baselinesMarkdown(b: BaselinesFile | null, facts: Iterable<RunFacts>, records: Iterable<RunRecord> = [], command = 'moco3 baselines <sweep>'): string[] {
  const out = ['## Baselines', ''];
  if (!b) {
    out.push(`No baselines yet: \`${command}\` (with the sweep's \`--results\`) computes the untrained encoder and a linear classifier on pixels for this table.`, '');
    return out;
  }
  const rs = b.seeds;
  const lin = rs[0]!.linear;
  const recs = [...records];
  const runs = [...facts].filter((f) => f.status === 'completed');
  // the verdict compares like with like: runs whose probe trained on the views the baselines' did, with their
  // epochs, base lr and batch (a run's summary without the record counts as the same)
  const sameViews = (f: RunFacts) => f.linearViews === null || f.linearViews === lin.train_views;
  const settings = (x: { epochs: number | null; base_lr: number | null; batch_size: number | null }) => `${x.epochs} epochs, base lr ${x.base_lr}, batch ${x.batch_size}`;
  const sameSettings = (f: RunFacts) =>
    (['epochs', 'base_lr', 'batch_size'] as const).every((k) => f.linearSettings[k] === null || f.linearSettings[k] === lin[k]);
  const probed = runs.filter((f) => isNum(f.linearTop1));
  const otherViews = [...new Set(probed.filter((f) => !sameViews(f)).map((f) => f.linearViews!))];
  const otherSettings = probed.filter((f) => sameViews(f) && !sameSettings(f));
  const linRuns = probed.filter((f) => sameViews(f) && sameSettings(f)).map((f) => f.linearTop1!);
  // the kNN column compares like with like too: runs whose monitor has the baselines' k, t, bank and queries
  // (recorded since; a run or an entry without them counts as the same)
  const kb = rs[0]!.knn;
  const byId = new Map(recs.map((r) => [r.id, r] as const));
  const knnOf = (f: RunFacts): KnnSettings | null => {
    const r = byId.get(f.id);
    if (!kb || !r) return null;
    return Object.fromEntries(KNN_KEYS.map((k) => [k, r.flat.has(`eval.knn.${k}`) ? r.flat.get(`eval.knn.${k}`) : kb[k]])) as unknown as KnnSettings;
  };
  const sameKnn = (f: RunFacts) => {
    const s = knnOf(f);
    return s === null || sameKnnSettings(s, kb!);
  };
  const knnSettings = (s: KnnSettings) => `k ${s.k}, t ${s.t}, bank ${s.bank_size ?? 'all'}, queries ${s.query_size ?? 'all'}`;
  const otherKnn = runs.filter((f) => isNum(f.knnTop1) && !sameKnn(f));
  const knnRuns = runs.filter(sameKnn).map((f) => f.knnTop1).filter(isNum);
  const range = (xs: number[]) => (xs.length ? `${Math.min(...xs).toFixed(1)} - ${Math.max(...xs).toFixed(1)}` : '-');
  out.push(`On ${b.dataset} at ${b.image_size} px, ${b.arch}; seeds ${rs.map((s) => s.seed).join(', ')} (mean ± std over seeds).`, '');
  out.push('| encoder | kNN top-1 | linear top-1 |', '|---|---:|---:|');
  out.push(`| untrained (random init) | ${meanStd(rs.map((s) => s.random_init.knn_top1))} | ${meanStd(rs.map((s) => s.random_init.linear_top1))} |`);
  out.push(`| none: linear classifier on the normalised pixels (${rs[0]!.pixels.dim} inputs) | - | ${meanStd(rs.map((s) => s.pixels.linear_top1))} |`);
  out.push(`| pretrained: this sweep's completed runs (lowest - highest) | ${range(knnRuns)} | ${range(linRuns)} |`, '');
  out.push(
    `The baselines' linear probes train ${lin.epochs} epochs (base lr ${lin.base_lr}, batch ${lin.batch_size}), the untrained encoder's on ${lin.train_views}, ` +
      "the pixels' on the centre view; compare with the runs' own probe protocol in their summary.json (`linear`).",
  );
  // runs left out of the verdict, said with what differs
  const leftOut = (n: number, what: string, after = '') =>
    out.push('', `${n} completed run${n === 1 ? "'s" : "s'"} linear probe trained ${what}: ${n === 1 ? 'it is' : 'they are'} left out of the linear column above and of the verdict below${after}.`);
  if (otherSettings.length) {
    const theirs = [...new Set(otherSettings.map((f) => settings(f.linearSettings)))];
    leftOut(otherSettings.length, `with other settings (${theirs.join('; ')}) than the baselines' (${settings(lin)})`, " (`moco3 baselines <sweep>` with the runs' `--set eval.linear.*` computes baselines for them)");
  }
  if (otherViews.length) leftOut(probed.filter((f) => !sameViews(f)).length, `on other views (${otherViews.join('; ')}) than the baselines' (${lin.train_views})`);
  if (otherKnn.length) {
    const n = otherKnn.length;
    const theirs = [...new Set(otherKnn.map((f) => knnSettings(knnOf(f)!)))];
    out.push(
      '',
      `${n} completed run${n === 1 ? "'s" : "s'"} kNN monitor ran with other settings (${theirs.join('; ')}) than the baselines' (${knnSettings(kb!)}): ` +
        `${n === 1 ? 'it is' : 'they are'} left out of the kNN column above (\`moco3 baselines <sweep>\` with the runs' \`--set eval.knn.*\` computes baselines for them).`,
    );
  }
  const mismatch = baselinesMismatch(b, recs);
  if (mismatch.length) {
    out.push(
      '',
      `**These baselines were computed for another model or data than this sweep's runs** (${mismatch.join('; ')}), so they say nothing about what ` +
        `pretraining bought here: \`${command}\` (with the sweep's \`--results\`) computes them for this sweep.`,
    );
  } else if (linRuns.length) {
    const best = Math.max(...linRuns);
    const enc = Math.max(...rs.map((s) => s.random_init.linear_top1));
    const pix = Math.max(...rs.map((s) => s.pixels.linear_top1));
    const ofBest = rs.length > 1 ? ', its best seed' : '';
    const beaten = [best > enc ? null : `the untrained encoder (${enc.toFixed(1)}${ofBest})`, best > pix ? null : `the linear classifier on pixels (${pix.toFixed(1)}${ofBest})`].filter((x) => x !== null);
    out.push(
      '',
      beaten.length
        ? `**Pretraining did not beat ${beaten.join(' nor ')}**: the best run's linear top-1 is ${best.toFixed(1)}. At this scale the numbers describe the training dynamics, not a useful encoder.`
        : `Pretraining beat both baselines: the best run's linear top-1 is ${best.toFixed(1)}, the untrained encoder's ${enc.toFixed(1)}, pixels' ${pix.toFixed(1)}${rs.length > 1 ? ' (their best seeds)' : ''}.`,
    );
  }
  out.push('');
  return out;
}
