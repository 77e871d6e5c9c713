/**
 * Model sizes. `vit-small`/`vit-base` are the official ones (vits.py; 12-head ViT-S); the rest are
 * scaled-down variants for one GPU, a CPU, and tests (README.md "Presets").
 */

import { ARCHS as CONFIG_ARCHS } from '../config/archs.ts';
import type { VitDims } from './vit.ts';

export interface ArchSpec {
  dim: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  patchSize: number;
  imageSize: number;
}

/** The sizes of `config/archs.ts` (the one table), in the model's camelCase. */
export const ARCHS: Record<string, ArchSpec> = Object.fromEntries(
  Object.entries(CONFIG_ARCHS).map(([name, a]) => [
    name,
    { dim: a.dim, depth: a.depth, heads: a.heads, mlpRatio: a.mlp_ratio, patchSize: a.patch_size, imageSize: a.image_size },
  ]),
);

/** Everything the model needs; the rest of the run config does not reach `src/model/`. */
export interface MocoModelConfig extends VitDims {
  /** projector hidden width (official 4096) */
  projHidden: number;
  /** output width of projector and predictor (official 256) */
  projDim: number;
  /** predictor hidden width (official 4096) */
  predHidden: number;
  /** contrastive temperature (0.2 for ViT) */
  temperature: number;
  /** 'frozen' = --stop-grad-conv1: the random patch projection is never trained */
  patchProj: 'learned' | 'frozen';
}

/** Official head sizes and ViT temperature ([R] main_moco.py defaults, the official repository's CONFIG.md; docs/MOCOV3.md). */
export const OFFICIAL_HEADS = { projHidden: 4096, projDim: 256, predHidden: 4096, temperature: 0.2 } as const;

/**
 * A full model config from an arch name plus head settings: official heads, and the frozen patch
 * projection of the official ViT recipes (--stop-grad-conv1 in the official CONFIG.md; docs/MOCOV3.md), unless given.
 */
export function modelConfig(
  arch: string,
  over: Partial<Omit<MocoModelConfig, keyof ArchSpec>> & Partial<ArchSpec> = {},
): MocoModelConfig {
  const a = ARCHS[arch];
  if (!a) throw new Error(`unknown arch '${arch}' (expected one of ${Object.keys(ARCHS).join(', ')})`);
  return { ...a, inChans: 3, ...OFFICIAL_HEADS, patchProj: 'frozen', ...over };
}

/** Throws with a readable message when the config cannot build a ViT. */
export function validateModelConfig(c: MocoModelConfig): void {
  const bad = (msg: string) => {
    throw new Error(`model config: ${msg}`);
  };
  for (const k of ['imageSize', 'patchSize', 'inChans', 'dim', 'depth', 'heads', 'projHidden', 'projDim', 'predHidden'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) bad(`${k} must be a positive integer, got ${c[k]}`);
  }
  if (!(c.mlpRatio > 0) || !Number.isInteger(c.dim * c.mlpRatio)) bad(`mlpRatio ${c.mlpRatio} must give an integer hidden width`);
  if (c.imageSize % c.patchSize !== 0) bad(`imageSize ${c.imageSize} is not a multiple of patchSize ${c.patchSize}`);
  if (c.dim % 4 !== 0) bad(`dim ${c.dim} must be divisible by 4 (2D sin-cos position embedding)`);
  if (c.dim % c.heads !== 0) bad(`dim ${c.dim} must be divisible by heads ${c.heads}`);
  if (!(c.temperature > 0)) bad(`temperature must be > 0, got ${c.temperature}`);
  if (c.patchProj !== 'learned' && c.patchProj !== 'frozen') bad(`patchProj must be 'learned' or 'frozen'`);
}
