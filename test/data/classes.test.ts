import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numClassesProblem } from '../../src/data/classes.ts';
import { DataError, loadDataset, type DataSpec } from '../../src/data/index.ts';

const spec = (name: DataSpec['name'], numClasses: number): DataSpec => ({ name, path: '/nonexistent/moco3-data', trainSize: null, testSize: null, seed: 0, numClasses });

test('data.num_classes against the dataset: the config check and the loaders say the same, the key first, before any file is looked for', async () => {
  const cases: [DataSpec['name'], number, string | null][] = [
    ['synthetic', 1, 'the synthetic dataset has 2..10 classes, got 1'],
    ['synthetic', 11, 'the synthetic dataset has 2..10 classes, got 11'],
    ['synthetic', 2, null],
    ['synthetic', 10, null],
    ['fashion-mnist', 3, 'fashion-mnist has 10 classes, got 3'],
    ['fashion-mnist', 10, null],
    ['cifar10', 100, 'cifar10 has 10 classes, got 100'],
    ['cifar10', 10, null],
    ['cifar100', 100, null],
    ['cifar100', 10, 'cifar100 has 100 classes, got 10'],
    ['imagefolder', 1, 'an image folder needs at least 2 classes (train/<class>/ for each), got 1'],
    ['imagefolder', 1000, null],
  ];
  for (const [name, k, text] of cases) {
    assert.equal(numClassesProblem(name, k), text, `${name} ${k}`);
    assert.equal(numClassesProblem(name, null), null);
    // the loaders (image folders count their class folders once read)
    if (text === null || name === 'imagefolder') continue;
    const load = name === 'synthetic' ? loadDataset({ ...spec(name, k), path: null }) : loadDataset(spec(name, k));
    await assert.rejects(load, (e: Error) => e instanceof DataError && e.message === `data.num_classes: ${text}`);
  }
});
