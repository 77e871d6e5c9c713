/** data.num_classes against a dataset's own classes, checked from the config alone, before any data is read. */
import { CIFAR } from './cifar.ts';
import { FASHION_MNIST_CLASSES } from './fashion_mnist.ts';
import { SYNTHETIC_CLASSES } from './synthetic.ts';

/**
 * What is wrong with `numClasses` (data.num_classes; null: the dataset's own classes) for the dataset `name`,
 * or null: synthetic makes 2..10 of its classes, Fashion-MNIST and CIFAR have theirs, and an image folder has
 * its train/ class folders (counted when it is read), never fewer than 2. The loaders say the same
 * (src/data/synthetic.ts, fashion_mnist.ts, cifar.ts, imagefolder.ts).
 */
export function numClassesProblem(name: string, numClasses: number | null): string | null {
  if (numClasses === null) return null;
  switch (name) {
    case 'synthetic':
      return numClasses >= 2 && numClasses <= SYNTHETIC_CLASSES.length ? null : `the synthetic dataset has 2..${SYNTHETIC_CLASSES.length} classes, got ${numClasses}`;
    case 'fashion-mnist':
      return numClasses === FASHION_MNIST_CLASSES.length ? null : `fashion-mnist has ${FASHION_MNIST_CLASSES.length} classes, got ${numClasses}`;
    case 'cifar10':
    case 'cifar100': {
      const n = CIFAR[name].numClasses;
      return numClasses === n ? null : `${name} has ${n} classes, got ${numClasses}`;
    }
    case 'imagefolder':
      return numClasses >= 2 ? null : `an image folder needs at least 2 classes (train/<class>/ for each), got ${numClasses}`;
    default:
      return null;
  }
}
