import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChannelStats } from '../../src/data/stats.ts';

test('channel statistics: per-channel mean and population std on the [0,1] scale, over images added one by one', () => {
  const s = new ChannelStats(3);
  // two images of one pixel each: R 0 then 255, G 51 then 153, B 33 both times
  s.add(Uint8Array.of(0, 51, 33));
  s.add(Uint8Array.of(255, 153, 33));
  const { mean, std } = s.result();
  // R: values 0 and 1, mean 0.5, std 0.5; G: 0.2 and 0.6, mean 0.4, std 0.2; B: 33/255 both, std 0
  const want = { mean: [0.5, 0.4, 33 / 255], std: [0.5, 0.2, 0] };
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(mean[c]! - want.mean[c]!) < 1e-12, `mean ${c}: ${mean[c]}`);
    assert.ok(Math.abs(std[c]! - want.std[c]!) < 1e-12, `std ${c}: ${std[c]}`);
  }
});

test('channel statistics: a channel of one value has std exactly 0, never NaN from rounding below zero', () => {
  // for these values the sum of squares over the pixels, less the squared mean, rounds below zero in floating point
  for (const v of [33, 45, 51, 200]) {
    const s = new ChannelStats(1);
    s.add(Uint8Array.of(v));
    const { mean, std } = s.result();
    assert.ok(Math.abs(mean[0]! - v / 255) < 1e-15, `mean of ${v}`);
    assert.equal(std[0], 0, `std of a channel all ${v}`);
  }
});
