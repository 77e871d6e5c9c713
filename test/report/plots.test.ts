import { test } from 'node:test';
import assert from 'node:assert/strict';
import { svgToPng } from '../../src/report/plots.ts';

test('PNG text renders: a font is found (Debian: fonts-dejavu-core), so axis titles and legends show', () => {
  const svg = (text: string) =>
    `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><rect width="200" height="40" fill="white"/>` +
    `<text x="10" y="28" font-family="DejaVu Sans, sans-serif" font-size="20">${text}</text></svg>`;
  const withText = svgToPng(svg('kNN top-1 (%)'), 1);
  const empty = svgToPng(svg(''), 1);
  assert.notDeepEqual(withText, empty, 'text did not render: no usable font on this system');
});
