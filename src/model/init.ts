/**
 * Initialisers of the official code ([R] vits.py L31-47; PyTorch defaults for the MLP heads), each
 * filling a tensor in PyTorch layout so a seed gives the same model whatever the internal layout.
 */
import { Rng } from '../engine/rng.ts';

/** nn.init.xavier_uniform_ of a Linear weight [out, in]: U(±sqrt(6/(in+out))). */
export function xavierUniform(rng: Rng, fanOut: number, fanIn: number): Float32Array {
  const a = Math.sqrt(6 / (fanIn + fanOut));
  return rng.fillUniform(new Float32Array(fanOut * fanIn), -a, a);
}

/** qkv weight [3D, D]: Q, K and V each treated as a D×D matrix, U(±sqrt(6/(D+D))). */
export function qkvUniform(rng: Rng, dim: number): Float32Array {
  const a = Math.sqrt(6 / (dim + dim));
  return rng.fillUniform(new Float32Array(3 * dim * dim), -a, a);
}

/**
 * Patch projection weight [D, C, p, p]: U(±sqrt(6/(3·p·p + D))). The official code writes the
 * literal 3 (RGB), not in_chans; kept as is.
 */
export function patchProjUniform(rng: Rng, dim: number, inChans: number, patch: number): Float32Array {
  const a = Math.sqrt(6 / (3 * patch * patch + dim));
  return rng.fillUniform(new Float32Array(dim * inChans * patch * patch), -a, a);
}

/** PyTorch's default nn.Linear weight init, kaiming_uniform(a=√5) = U(±1/sqrt(fan_in)). */
export function torchLinearDefault(rng: Rng, fanOut: number, fanIn: number): Float32Array {
  const a = 1 / Math.sqrt(fanIn);
  return rng.fillUniform(new Float32Array(fanOut * fanIn), -a, a);
}

/** Class token: nn.init.normal_(std=1e-6). */
export function clsTokenNormal(rng: Rng, dim: number): Float32Array {
  return rng.fillNormal(new Float32Array(dim), 0, 1e-6);
}

export function zeros(n: number): Float32Array {
  return new Float32Array(n);
}

export function ones(n: number): Float32Array {
  return new Float32Array(n).fill(1);
}
