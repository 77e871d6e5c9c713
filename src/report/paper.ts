/**
 * The paper's linear-probe numbers for its stability sweeps (docs/MOCOV3.md "The stability study"; ViT-B/16, ImageNet, 100 epochs,
 * batch 4096 unless varied) and the mapping from a sweep's runs to the paper's settings.
 */

export interface PaperSweep {
  id: 'batch-size' | 'lr-adamw' | 'lr-lamb' | 'patch-proj';
  figure: string;
  about: string;
  /** the varied key, and for patch-proj the second one */
  key: string;
  values: number[];
  /** linear top-1 per value; patch-proj: per patch_proj setting */
  top1: number[] | Record<'learned' | 'frozen', number[]>;
}

export const PAPER_SWEEPS: PaperSweep[] = [
  {
    id: 'batch-size',
    figure: 'Fig. 1',
    about: 'AdamW, base lr 1.0e-4, batch 1024 / 2048 / 4096 / 6144',
    key: 'optim.batch_size',
    values: [1024, 2048, 4096, 6144],
    top1: [71.5, 72.6, 72.2, 69.7],
  },
  {
    id: 'lr-adamw',
    figure: 'Fig. 2',
    about: 'AdamW, batch 4096, base lr 0.5e-4 / 1.0e-4 / 1.5e-4 (71.7 derived)',
    key: 'optim.base_lr',
    values: [0.5e-4, 1.0e-4, 1.5e-4],
    top1: [70.4, 72.2, 71.7],
  },
  {
    id: 'lr-lamb',
    figure: 'Fig. 3',
    about: 'LAMB, wd 1e-3, batch 4096, lr 5e-4 / 6e-4 / 8e-4 (last two derived)',
    key: 'optim.base_lr',
    values: [5e-4, 6e-4, 8e-4],
    top1: [72.5, 70.9, 66.5],
  },
  {
    id: 'patch-proj',
    figure: 'Fig. 5',
    about: 'AdamW, batch 4096, learned (as Fig. 2) vs frozen random patch projection at base lr 0.5e-4 / 1.0e-4 / 1.5e-4 (frozen 70.8, 72.8 derived; the text gives their gains without naming the lrs)',
    key: 'optim.base_lr',
    values: [0.5e-4, 1.0e-4, 1.5e-4],
    top1: { learned: [70.4, 72.2, 71.7], frozen: [70.8, 72.8, 73.4] },
  },
];

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b));

/**
 * Run value -> paper value for one key. Exact matches first; then the common factor that maps the most
 * run values onto paper values (a preset that scales the grid, e.g. batch 64..384 = 1024..6144 / 16);
 * then rank order when the counts agree and it keeps every exact match. Null when nothing fits, or when two
 * factors fit equally well.
 */
export function mapToPaper(runValues: number[], paperValues: number[]): Map<number, number> | null {
  const vs = [...new Set(runValues)].sort((a, b) => a - b);
  if (vs.length === 0) return null;
  const best = new Map<number, number>();
  for (const v of vs) {
    const p = paperValues.find((x) => close(x, v));
    if (p !== undefined) best.set(v, p);
  }
  if (best.size === vs.length) return best;
  let bestMap: Map<number, number> | null = best.size >= 2 ? best : null;
  // two factors that map as many values otherwise (batch 128, 256 is 1024, 2048 at x8 and 2048, 4096 at
  // x16): which one the preset used is not to be told from the values, and a guess would put the paper's
  // numbers of other settings beside the runs. The exact values win such a tie.
  let ambiguous = false;
  const same = (a: Map<number, number>, b: Map<number, number>) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
  for (const v of vs) {
    for (const p of paperValues) {
      if (v === 0) continue;
      const f = p / v;
      const m = new Map<number, number>();
      for (const w of vs) {
        const q = paperValues.find((x) => close(x, w * f));
        if (q !== undefined) m.set(w, q);
      }
      if (m.size < 2) continue;
      if (m.size > (bestMap?.size ?? 0)) {
        bestMap = m;
        ambiguous = false;
      } else if (bestMap && m.size === bestMap.size && bestMap !== best && !same(m, bestMap)) ambiguous = true;
    }
  }
  if (ambiguous) bestMap = null;
  if (bestMap && bestMap.size >= Math.min(vs.length, paperValues.length)) return bestMap;
  if (vs.length === paperValues.length) {
    const rank = new Map(vs.map((v, i) => [v, paperValues[i]!]));
    // rank order never moves a value that is one of the paper's own to another of its settings (1.0e-4,
    // 1.5e-4 and an extra 3e-4 would read as 0.5e-4, 1.0e-4, 1.5e-4): the matches found stand instead
    if ([...best].every(([v, p]) => rank.get(v) === p)) return rank;
  }
  return bestMap;
}

/**
 * Which of the paper's sweeps a set of swept keys is, given the optimizer and the patch projection the runs
 * share (null: not one value), if any. Figs. 1-3 train a learned patch projection: a sweep that fixes it
 * frozen is not theirs, and its AdamW lr sweep is Fig. 5's frozen series.
 */
export function paperSweepFor(sweptKeys: string[], optimizer: string | null, patchProj: string | null = null): PaperSweep | null {
  const keys = new Set(sweptKeys);
  const only = (...ks: string[]) => keys.size === ks.length && ks.every((k) => keys.has(k));
  const find = (id: PaperSweep['id']) => PAPER_SWEEPS.find((p) => p.id === id)!;
  const learned = patchProj !== 'frozen';
  if (only('optim.batch_size') && optimizer === 'adamw') return learned ? find('batch-size') : null;
  if (only('optim.base_lr') && optimizer === 'adamw') return learned ? find('lr-adamw') : find('patch-proj');
  if (only('optim.base_lr') && optimizer === 'lamb') return learned ? find('lr-lamb') : null;
  if ((only('model.patch_proj', 'optim.base_lr') || only('model.patch_proj')) && optimizer === 'adamw') return find('patch-proj');
  return null;
}

/** The paper's top-1 for one setting of a paper sweep, or null. */
export function paperTop1(sweep: PaperSweep, paperValue: number, patchProj: string | null): number | null {
  const i = sweep.values.findIndex((v) => close(v, paperValue));
  if (i < 0) return null;
  if (Array.isArray(sweep.top1)) return sweep.top1[i]!;
  const series = patchProj === 'frozen' ? sweep.top1.frozen : patchProj === 'learned' ? sweep.top1.learned : null;
  return series ? series[i]! : null;
}
