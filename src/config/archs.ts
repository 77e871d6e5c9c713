/** ViT sizes. `vit-small`/`vit-base` are the paper's (docs/MOCOV3.md "Architecture", 12-head ViT-S as in the official vits.py). */
export interface ArchSpec {
  dim: number;
  depth: number;
  heads: number;
  mlp_ratio: number;
  patch_size: number;
  image_size: number;
}

export const ARCHS = {
  'vit-base': { dim: 768, depth: 12, heads: 12, mlp_ratio: 4, patch_size: 16, image_size: 224 },
  'vit-small': { dim: 384, depth: 12, heads: 12, mlp_ratio: 4, patch_size: 16, image_size: 224 },
  // solo-learn's vit_tiny (D 192, depth 12, 12 heads) at patch 4 for 32 px images
  'vit-tiny': { dim: 192, depth: 12, heads: 12, mlp_ratio: 4, patch_size: 4, image_size: 32 },
  // the CPU model: 65 tokens at 32 px
  'vit-micro': { dim: 64, depth: 4, heads: 4, mlp_ratio: 2, patch_size: 4, image_size: 32 },
  // about 18 thousand parameters in the backbone: the demo and smoke sweeps
  'vit-smoke': { dim: 32, depth: 2, heads: 4, mlp_ratio: 2, patch_size: 4, image_size: 16 },
  // the smallest that exercises every code path: tests
  'vit-test': { dim: 8, depth: 2, heads: 2, mlp_ratio: 2, patch_size: 4, image_size: 8 },
} as const satisfies Record<string, ArchSpec>;

export type ArchName = keyof typeof ARCHS;
export const ARCH_NAMES = Object.keys(ARCHS) as ArchName[];
