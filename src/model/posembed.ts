/**
 * Fixed 2D sin-cos position embedding ([R] vits.py L53-69). For token m of a square g×g grid
 * (row = m / g, col = m % g): [sin(row·ω), cos(row·ω), sin(col·ω), cos(col·ω)], ω_d = 10000^(-d/(D/4)).
 * The official `grid_w` comes out of an "ij" meshgrid, so it indexes the row. The class token gets zeros.
 */
export function sincos2dPosEmbed(grid: number, dim: number, temperature = 10000): Float32Array {
  if (dim % 4 !== 0) throw new Error(`dim ${dim} must be divisible by 4 for the 2D sin-cos position embedding`);
  const posDim = dim / 4;
  const omega = new Float64Array(posDim);
  for (let d = 0; d < posDim; d++) omega[d] = 1 / Math.pow(temperature, d / posDim);
  const n = grid * grid;
  const out = new Float32Array((n + 1) * dim); // row 0: class token, zeros
  for (let m = 0; m < n; m++) {
    const row = Math.floor(m / grid);
    const col = m % grid;
    const base = (m + 1) * dim;
    for (let d = 0; d < posDim; d++) {
      out[base + d] = Math.sin(row * omega[d]!);
      out[base + posDim + d] = Math.cos(row * omega[d]!);
      out[base + 2 * posDim + d] = Math.sin(col * omega[d]!);
      out[base + 3 * posDim + d] = Math.cos(col * omega[d]!);
    }
  }
  return out;
}
