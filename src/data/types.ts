/** Data shapes shared by the loaders, the sampler and the augmentation. */
import { SetupError } from '../config/errors.ts';

/**
 * Images of one split, 0..255, HWC order, image after image. Held in memory (`images`), or, for a split too
 * large for memory, streamed from disk (`read`; then `images` throws). Read images through `gatherBatch`,
 * which handles both.
 */
export interface ImageSplit {
  /** n*h*w*c bytes; on a streamed split (one with `read`) accessing it throws */
  images: Uint8Array;
  /** present on a streamed split: copy image `index` (h*w*c bytes) into `dest` at `destOffset` */
  read?(index: number, dest: Uint8Array, destOffset: number): void;
  labels: Int32Array;
  n: number;
  height: number;
  width: number;
  channels: 1 | 3;
}

export interface Dataset {
  name: string;
  numClasses: number;
  classNames: string[];
  train: ImageSplit;
  test: ImageSplit;
  /** per RGB channel, on the [0,1] scale (grayscale sets replicate theirs) */
  mean: [number, number, number];
  std: [number, number, number];
  /** directory the files came from, or 'built-in' */
  source: string;
}

export interface DataSpec {
  name: 'synthetic' | 'fashion-mnist' | 'cifar10' | 'cifar100' | 'imagefolder';
  /** directory of the files; null: the dataset's default place */
  path: string | null;
  /** first N images of each split (null: all, or the dataset's default size) */
  trainSize: number | null;
  testSize: number | null;
  numClasses?: number;
  seed: number;
  syntheticImageSize?: number;
  /** the training image size (data.image_size); imagefolder caches its images at round(size * 256 / 224). Falls back to syntheticImageSize, then 224 */
  imageSize?: number;
}

/** A compact copy of some images of a split (see `gatherBatch`). */
export interface ImageBatch {
  /** n*h*w*c bytes, HWC order */
  data: Uint8Array;
  n: number;
  h: number;
  w: number;
  c: number;
  /** labels of the images, when they came from a split */
  labels?: Int32Array;
}

/** Bad or missing data. The message is one line naming the file and what is wrong; the CLI exits with code 2. */
export class DataError extends SetupError {
  override name = 'DataError';
}
