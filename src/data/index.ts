/** Datasets, batch order and two-view augmentation. */
import { loadCifar } from './cifar.ts';
import { loadFashionMnist } from './fashion_mnist.ts';
import { loadImageFolder } from './imagefolder.ts';
import { makeSyntheticDataset } from './synthetic.ts';
import { DATASET_NAMES } from '../config/schema.ts';
import { DataError, type DataSpec, type Dataset } from './types.ts';

export * from './types.ts';
export { itersPerEpoch, batchIndices, gatherBatch, type BatchOrder } from './sampler.ts';
export { twoViews, evalView, augmentConfigFor, MOCOV3_VIEWS, type AugmentConfig, type ViewRecipe } from './augment.ts';
export { FASHION_MNIST_DIR, FASHION_MNIST_CLASSES } from './fashion_mnist.ts';
export { SYNTHETIC_CLASSES, SYNTHETIC_DEFAULTS } from './synthetic.ts';
export { loadImageFolder, sharpDecoder, cacheSideFor, IMAGE_EXTENSIONS, type ImageDecoder, type ImageFolderOptions } from './imagefolder.ts';

/** The datasets by name: the config's one list (src/config/schema.ts). */
export { DATASET_NAMES } from '../config/schema.ts';

export async function loadDataset(spec: DataSpec): Promise<Dataset> {
  switch (spec.name) {
    case 'synthetic':
      return makeSyntheticDataset(spec);
    case 'fashion-mnist':
      return loadFashionMnist(spec);
    case 'cifar10':
    case 'cifar100':
      return loadCifar(spec);
    case 'imagefolder':
      return loadImageFolder(spec);
    default:
      throw new DataError(`data.name: dataset '${String((spec as { name: unknown }).name)}' is not available in this version (available: ${DATASET_NAMES.join(', ')})`);
  }
}
