/** Per-channel mean and std of uint8 HWC pixels on the [0,1] scale, accumulated image by image. */
export class ChannelStats {
  private readonly sum: Float64Array;
  private readonly sq: Float64Array;
  private pixels = 0;

  constructor(readonly channels: number) {
    this.sum = new Float64Array(channels);
    this.sq = new Float64Array(channels);
  }

  /** Add the pixels of one or more images (HWC bytes, `channels` per pixel); the sums stay exact integers. */
  add(px: Uint8Array): void {
    const c = this.channels;
    for (let k = 0; k < c; k++) {
      let s = 0;
      let q = 0;
      for (let i = k; i < px.length; i += c) {
        const v = px[i]!;
        s += v;
        q += v * v;
      }
      this.sum[k]! += s;
      this.sq[k]! += q;
    }
    this.pixels += px.length / c;
  }

  result(): { mean: number[]; std: number[] } {
    const n = this.pixels;
    const mean = [...this.sum].map((s) => s / n / 255);
    const std = [...this.sq].map((q, k) => Math.sqrt(Math.max(0, q / n / 65025 - mean[k]! * mean[k]!)));
    return { mean, std };
  }
}
