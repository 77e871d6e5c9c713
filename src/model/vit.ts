/**
 * The backbone: timm 0.4.9 VisionTransformer as the official vits.py configures it (qkv bias,
 * LayerNorm eps 1e-6, no dropout, fixed sin-cos position embedding, official init). Activations
 * stay 2D [B·N, D] between blocks; only attention reshapes to heads-major [H·B, N, hd].
 */
import * as tf from '@tensorflow/tfjs-core';
import { clsTokenNormal, ones, patchProjUniform, qkvUniform, xavierUniform, zeros } from './init.ts';
import { ATTENTION_FWD, attentionFits, hasKernel } from '../engine/webgpu-kernels.ts';
import { addSame, bmm, fusedAttention, gelu, layerNorm, linear, linearConstInput, matMulNT, patchify, scale, softmax, view } from './layers.ts';
import type { ParamSpec } from './params.ts';
import { sincos2dPosEmbed } from './posembed.ts';

export interface VitDims {
  imageSize: number;
  patchSize: number;
  /** image channels; 3 (inputs are RGB-normalised NHWC) */
  inChans: number;
  dim: number;
  depth: number;
  heads: number;
  mlpRatio: number;
}

/** Parameter lookup by relative name (`blocks.0.norm1.weight`). */
export type Params = (name: string) => tf.Tensor;

export const LN_EPS = 1e-6;

export function gridSize(c: VitDims): number {
  return c.imageSize / c.patchSize;
}

/** Backbone parameters in state-dict order (timm registration order), without the head. */
export function vitParamSpecs(c: VitDims): ParamSpec[] {
  const D = c.dim;
  const g = gridSize(c);
  const hidden = Math.round(D * c.mlpRatio);
  const linearW = (name: string, out: number, inp: number): ParamSpec => ({
    name,
    torchShape: [out, inp],
    layout: 'linear',
    buffer: false,
    init: (rng) => xavierUniform(rng, out, inp),
  });
  const vec = (name: string, n: number, init: (n: number) => Float32Array): ParamSpec => ({
    name,
    torchShape: [n],
    layout: 'same',
    buffer: false,
    init: () => init(n),
  });
  const specs: ParamSpec[] = [
    { name: 'cls_token', torchShape: [1, 1, D], layout: 'same', buffer: false, init: (rng) => clsTokenNormal(rng, D) },
    { name: 'pos_embed', torchShape: [1, g * g + 1, D], layout: 'same', buffer: false, init: () => sincos2dPosEmbed(g, D) },
    {
      name: 'patch_embed.proj.weight',
      torchShape: [D, c.inChans, c.patchSize, c.patchSize],
      layout: 'patch',
      buffer: false,
      init: (rng) => patchProjUniform(rng, D, c.inChans, c.patchSize),
    },
    vec('patch_embed.proj.bias', D, zeros),
  ];
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}.`;
    specs.push(
      vec(`${b}norm1.weight`, D, ones),
      vec(`${b}norm1.bias`, D, zeros),
      { name: `${b}attn.qkv.weight`, torchShape: [3 * D, D], layout: 'linear', buffer: false, init: (rng) => qkvUniform(rng, D) },
      vec(`${b}attn.qkv.bias`, 3 * D, zeros),
      linearW(`${b}attn.proj.weight`, D, D),
      vec(`${b}attn.proj.bias`, D, zeros),
      vec(`${b}norm2.weight`, D, ones),
      vec(`${b}norm2.bias`, D, zeros),
      linearW(`${b}mlp.fc1.weight`, hidden, D),
      vec(`${b}mlp.fc1.bias`, hidden, zeros),
      linearW(`${b}mlp.fc2.weight`, D, hidden),
      vec(`${b}mlp.fc2.bias`, D, zeros),
    );
  }
  specs.push(vec('norm.weight', D, ones), vec('norm.bias', D, zeros));
  return specs;
}

/** A Linear's parameters and a LayerNorm's, typed: `lin(P, 'blocks.0.mlp.fc1')` is timm's `blocks[0].mlp.fc1`. */
interface LinearParams {
  weight: tf.Tensor2D;
  bias: tf.Tensor1D;
}
interface NormParams {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}
// the one place a parameter lookup is narrowed to its rank
const lin = (P: Params, name: string): LinearParams => ({ weight: P(`${name}.weight`) as tf.Tensor2D, bias: P(`${name}.bias`) as tf.Tensor1D });
const norm = (P: Params, name: string): NormParams => ({ weight: P(`${name}.weight`) as tf.Tensor1D, bias: P(`${name}.bias`) as tf.Tensor1D });

const fc = (x: tf.Tensor2D, p: LinearParams): tf.Tensor2D => linear(x, p.weight, p.bias);
const ln = (x: tf.Tensor2D, p: NormParams): tf.Tensor2D => layerNorm(x, p.weight, p.bias, LN_EPS);
const residual = (x: tf.Tensor2D, y: tf.Tensor2D): tf.Tensor2D => addSame(x, y);

/** timm Attention on x [B·N, D]: qkv → heads → softmax(q·kᵀ·hd^-0.5)·v → proj. */
export function attention(x: tf.Tensor2D, B: number, N: number, heads: number, P: Params, pre: string): tf.Tensor2D {
  const D = x.shape[1];
  const hd = D / heads;
  const qkv = fc(x, lin(P, `${pre}qkv`)); // [B·N, 3D], features (s, h, j)
  // webgpu: moco3's kernels from qkv to the merged heads, no transposes (src/engine/webgpu-kernels.ts), where
  // the device's workgroup memory holds a row of scores
  if (hasKernel(ATTENTION_FWD) && attentionFits(N, hd)) return fc(fusedAttention(qkv, B, N, heads), lin(P, `${pre}proj`));
  // views, not tf.reshape, and a scale saving nothing: the backward keeps only q·hd^-0.5, k, v and the
  // probabilities of this chain (layers.ts, view)
  const t = tf.transpose(view(qkv, [B * N, 3 * heads, hd]), [1, 0, 2]); // [3H, B·N, hd]
  const [q, k, v] = tf.split(view(t, [3, heads * B, N, hd]), 3, 0).map((u) => view<tf.Rank.R3>(u, [heads * B, N, hd]));
  // scale q rather than the N×N scores: same product, fewer multiplies
  const attn = softmax(matMulNT(scale(q!, hd ** -0.5), k!)); // [H·B, N, N]
  const o = bmm(attn, v!); // [H·B, N, hd]
  const merged = view<tf.Rank.R2>(tf.transpose(view(o, [heads, B * N, hd]), [1, 0, 2]), [B * N, D]); // features (h, j)
  return fc(merged, lin(P, `${pre}proj`));
}

/** Pre-norm block (timm Block.forward): x = x + attn(norm1(x)); x = x + mlp(norm2(x)). */
export function block(x: tf.Tensor2D, B: number, N: number, heads: number, P: Params, pre: string): tf.Tensor2D {
  x = residual(x, attention(ln(x, norm(P, `${pre}norm1`)), B, N, heads, P, `${pre}attn.`));
  const mlp = fc(gelu(fc(ln(x, norm(P, `${pre}norm2`)), lin(P, `${pre}mlp.fc1`))), lin(P, `${pre}mlp.fc2`));
  return residual(x, mlp);
}

/** timm PatchEmbed (conv p×p stride p) as patchify + matMul: tokens [B·g·g, D], row-major. */
export function patchEmbed(x: tf.Tensor4D, c: VitDims, P: Params): tf.Tensor2D {
  const proj = lin(P, 'patch_embed.proj');
  return linearConstInput(patchify(x, c.patchSize), proj.weight, proj.bias);
}

/** Backbone feature: class token after the final LayerNorm, [B, D]. x: NHWC [B, S, S, C]. */
export function vitForward(x: tf.Tensor4D, c: VitDims, P: Params): tf.Tensor2D {
  const [B, H, W, C] = x.shape;
  if (H !== c.imageSize || W !== c.imageSize || C !== c.inChans) {
    throw new Error(`expected images [B, ${c.imageSize}, ${c.imageSize}, ${c.inChans}], got [${x.shape}]`);
  }
  const D = c.dim;
  const np = gridSize(c) ** 2;
  const N = np + 1;
  const patches = patchEmbed(x, c, P);
  const cls = tf.add(tf.zeros([B, 1, D]), P('cls_token')); // broadcast; Add's gradient sums it back
  const tokens = tf.add(tf.concat([cls, tf.reshape(patches, [B, np, D])], 1), P('pos_embed')); // PE added after the concat
  let h = view<tf.Rank.R2>(tokens, [B * N, D]);
  // one tidy per block frees what its backward does not need (the tape keeps its own copies of the rest)
  for (let i = 0; i < c.depth; i++) {
    const x = h;
    h = tf.tidy(() => block(x, B, N, c.heads, P, `blocks.${i}.`));
    // the block's input, once the block has run: what the backward needs of it is saved (a copy sharing its
    // data: webgpu's LayerNorm saves x itself; elsewhere it keeps x̂, and the residual nothing), the rest freed now
    x.dispose();
  }
  // LayerNorm is per token, so normalising only the class token gives the same feature
  const clsOut = tf.reshape<tf.Rank.R2>(tf.slice(tf.reshape(h, [B, N, D]), [0, 0, 0], [B, 1, D]), [B, D]);
  return ln(clsOut, norm(P, 'norm'));
}
