/**
 * The names of run folders, `<slug>-<config hash>`: one source for `moco3 train` and the sweep planner.
 * The hash makes a name unique; the slug says what the run is. Changing a slug renames existing run folders
 * (a sweep would not find its finished runs), so both forms stay as they are.
 */
import type { ResolvedRunConfig } from '../config/schema.ts';

type Obj = Record<string, unknown>;

/**
 * Shortest exponent form with at least one decimal: 1e-4 -> 1.0e-4, 1.25e-5 -> 1.25e-5, 3 -> 3.0e0
 * (`plus`: 3.0e+0, as `moco3 train` names have always had it).
 */
export function fmtExp(v: number, plus = false): string {
  if (v === 0) return '0';
  for (let d = 1; d <= 6; d++) {
    const s = v.toExponential(d);
    if (Number(s) === v) return plus ? s : s.replace('e+', 'e');
  }
  const s = v.toExponential(6);
  return plus ? s : s.replace('e+', 'e');
}

const SHORT: Record<string, string> = {
  'optim.batch_size': 'bs',
  'optim.base_lr': 'lr',
  'optim.weight_decay': 'wd',
  'optim.epochs': 'ep',
  'optim.warmup_epochs': 'wu',
  'moco.temperature': 't',
  'moco.momentum': 'm',
  'model.arch': '',
  'model.patch_size': 'p',
  'data.name': '',
  'augment.crop_min': 'crop',
};

function slugValue(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) || Math.abs(v) >= 0.01 ? String(v) : fmtExp(v);
  if (v === null) return 'null';
  return String(typeof v === 'object' ? JSON.stringify(v) : v);
}

/** What every slug says: batch, lr, optimizer, patch projection. */
const coreParts = (c: ResolvedRunConfig, plus: boolean) => [`bs${c.optim.batch_size}`, `lr${fmtExp(c.optim.base_lr, plus)}`, c.optim.name, c.model.patch_proj];

/** A sweep's run: `bs4096-lr1.0e-4-adamw-learned[-<other varied keys>]-s0`, folder-safe. */
export function sweepRunSlug(c: ResolvedRunConfig, extraKeys: string[]): string {
  const parts = coreParts(c, false);
  for (const key of extraKeys) {
    const v = key.split('.').reduce<unknown>((o, k) => (o as Obj)[k], c);
    const short = key in SHORT ? SHORT[key]! : key.split('.').at(-1)!.replace(/_/g, '');
    parts.push(`${short}${slugValue(v)}`);
  }
  parts.push(`s${c.seed}`);
  return parts.join('-').replace(/[^A-Za-z0-9.+-]+/g, '_');
}

/** A `moco3 train` run: `vit-small-bs256-lr1.5e-4-adamw-frozen-s0`. */
export function trainRunSlug(c: ResolvedRunConfig): string {
  return [c.model.arch, ...coreParts(c, true), `s${c.seed}`].join('-');
}
