/**
 * Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) from its four IDX files, gzipped or not. Debian's
 * `dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist/, `moco3 data fetch` in
 * $MOCO3_DATA/fashion-mnist (default ~/.moco3/data).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileAbove } from '../engine/files.ts';
import { DATA_DIR } from './cifar.ts';
import { IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, readIdxFile } from './idx.ts';
import { DataError, type DataSpec, type Dataset, type ImageSplit } from './types.ts';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist/';

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

// statistics of the 60000 training images, as commonly quoted (grayscale, [0,1] scale)
export const FASHION_MNIST_MEAN = 0.286;
export const FASHION_MNIST_STD = 0.353;

export const FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
};

/** Where `moco3 data fetch fashion-mnist` puts the files. */
export const FASHION_MNIST_FETCHED = join(DATA_DIR, 'fashion-mnist');

/** The folder read when no path is given: Debian's package, else the fetch directory. */
export function fashionMnistDefaultDir(): string {
  return existsSync(FASHION_MNIST_DIR) ? FASHION_MNIST_DIR : FASHION_MNIST_FETCHED;
}

/** The names tried for `base` in `dir`, in order: gzipped, plain, and LeCun's `t10k-images.idx3-ubyte` spelling. */
function candidateFiles(dir: string, base: string): string[] {
  const dotted = base.replace(/-idx(\d)/, '.idx$1');
  return [base + '.gz', base, dotted + '.gz', dotted].map((f) => join(dir, f));
}

/** The file the reader takes for `base` in `dir`, or null. */
export function fashionMnistFile(dir: string, base: string): string | null {
  return candidateFiles(dir, base).find((p) => existsSync(p)) ?? null;
}

/** The folder the reader takes when every one of the four files is in it, or null (a partial download is none). */
export function fashionMnistFound(dir: string = fashionMnistDefaultDir()): string | null {
  return Object.values(FILES).every((base) => fashionMnistFile(dir, base) !== null) ? dir : null;
}

function findFile(dir: string, base: string): string {
  const found = fashionMnistFile(dir, base);
  if (found === null) throw new DataError(`fashion-mnist: missing file ${base}[.gz] (tried ${candidateFiles(dir, base).join(', ')})`);
  return found;
}

async function loadSplit(dir: string, imagesBase: string, labelsBase: string, limit: number | null, what: string): Promise<ImageSplit> {
  const imagesPath = findFile(dir, imagesBase);
  const labelsPath = findFile(dir, labelsBase);
  const [images, labels] = await Promise.all([
    readIdxFile(imagesPath, IDX_IMAGES_MAGIC),
    readIdxFile(labelsPath, IDX_LABELS_MAGIC),
  ]);
  const [n, height, width] = images.dims as [number, number, number];
  // no image: every command would fail later, naming no file (the kNN monitor's features of nothing)
  if (n < 1) throw new DataError(`${imagesPath}: holds no images: expected at least 1`);
  if (height < 1 || width < 1) throw new DataError(`${imagesPath}: images of ${height}x${width} pixels: expected at least 1x1`);
  if (labels.dims[0] !== n) {
    throw new DataError(`${imagesPath}: ${n} images but ${labelsPath} has ${labels.dims[0]} labels`);
  }
  let take = n;
  if (limit !== null) {
    if (!Number.isInteger(limit) || limit < 1 || limit > n) {
      throw new DataError(`${imagesPath}: asked for ${limit} ${what} images (data.${what}_size), the file has ${n}`);
    }
    take = limit;
  }
  const out = new Int32Array(take);
  for (let i = 0; i < n; i++) {
    const y = labels.data[i]!;
    if (y > 9) throw new DataError(`${labelsPath}: label ${y} at index ${i} is out of range 0..9`);
    if (i < take) out[i] = y;
  }
  // a subset is copied, so the rest of the file can be freed (a Buffer's slice() would be a view of all of it)
  const pixels = take === n ? images.data : new Uint8Array(images.data.subarray(0, take * height * width));
  return { images: pixels, labels: out, n: take, height, width, channels: 1 };
}

export async function loadFashionMnist(spec: DataSpec): Promise<Dataset> {
  // said before the files are looked for: a config error, whether or not the data is there
  if (spec.numClasses !== undefined && spec.numClasses !== 10) {
    throw new DataError(`data.num_classes: fashion-mnist has 10 classes, got ${spec.numClasses}`);
  }
  const dir = spec.path ?? fashionMnistDefaultDir();
  // below a file (a --data path under one, $MOCO3_DATA set to one): the file named
  const above = existsSync(dir) ? null : fileAbove(dir);
  if (above) throw new DataError(`fashion-mnist: ${dir}: ${above} is a file, not a folder${spec.path ? '' : ' ($MOCO3_DATA names it)'}: give the folder of the four *-ubyte(.gz) files`);
  if (!existsSync(dir)) {
    throw new DataError(
      spec.path
        ? `fashion-mnist: directory ${dir} not found (give the folder of the four *-ubyte(.gz) files, or run: moco3 data fetch fashion-mnist)`
        : `fashion-mnist: not found in ${FASHION_MNIST_DIR} or ${FASHION_MNIST_FETCHED} (run: moco3 data fetch fashion-mnist, or apt-get install dataset-fashion-mnist, or give --data fashion-mnist:PATH)`,
    );
  }
  const [train, test] = await Promise.all([
    loadSplit(dir, FILES.trainImages, FILES.trainLabels, spec.trainSize, 'train'),
    loadSplit(dir, FILES.testImages, FILES.testLabels, spec.testSize, 'test'),
  ]);
  // one image size for both splits: a test file of another shape would be read row by row as scrambled images
  if (test.height !== train.height || test.width !== train.width) {
    throw new DataError(`${findFile(dir, FILES.testImages)}: images of ${test.height}x${test.width} pixels, the train split's (${findFile(dir, FILES.trainImages)}) are ${train.height}x${train.width}: expected the same size`);
  }
  const m = FASHION_MNIST_MEAN;
  const s = FASHION_MNIST_STD;
  return {
    name: 'fashion-mnist',
    numClasses: 10,
    classNames: [...FASHION_MNIST_CLASSES],
    train,
    test,
    mean: [m, m, m],
    std: [s, s, s],
    source: dir,
  };
}
