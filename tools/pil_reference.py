#!/usr/bin/env python3
"""Pillow / torchvision reference for moco3's augmentation (src/data/pil.ts, src/data/augment.ts).

Draws random uint8 images and augmentation parameters, applies the torchvision functional ops that
the official MoCo v3 loader applies on PIL images (each op alone, and whole views in the official
order), and writes what they give to a JSON fixture that `npm test` replays byte for byte:

    /usr/bin/python3 tools/pil_reference.py [--out test/data/fixture/pil-reference.json.gz] [--seed 0]

Needs Pillow, numpy, torch and torchvision (Debian: apt-get install python3-pil python3-torchvision).
"""
import argparse
import base64
import gzip
import json

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import InterpolationMode

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def to_pil(a):
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a, 'L' if a.shape[2] == 1 else 'RGB')


def from_pil(img, c):
    a = np.array(img, dtype=np.uint8)
    return a.reshape(a.shape[0], a.shape[1], c)


def random_image(rng, h, w, c):
    kind = rng.integers(3)
    if kind == 0:  # noise
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    # smooth gradients plus a little noise: the colour ops see realistic, saturated and gray pixels
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for _ in range(c):
        a, b, d = rng.uniform(-12, 12, 3)
        planes.append(a * y + b * x + d * 20 + rng.normal(0, 6 if kind == 1 else 40, (h, w)) + 128)
    img = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    if kind == 2 and c == 3:
        gray = rng.random((h, w)) < 0.3
        img[gray] = img[gray][:, :1]
    return img


def random_box(rng, h, w):
    height = int(rng.integers(1, h + 1))
    width = int(rng.integers(1, w + 1))
    return int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1)), height, width


def apply_view(img, c, p, S):
    """One view in the official order (moco-v3 main_moco.py augmentation1/2), with fixed parameters."""
    img = F.resized_crop(img, p['top'], p['left'], p['height'], p['width'], [S, S], InterpolationMode.BILINEAR)
    if p['jitter']:
        for op in p['order']:
            if op == BRIGHTNESS:
                img = F.adjust_brightness(img, p['brightness'])
            elif op == CONTRAST:
                img = F.adjust_contrast(img, p['contrast'])
            elif op == SATURATION:
                img = F.adjust_saturation(img, p['saturation'])
            else:
                img = F.adjust_hue(img, p['hue'])
    if p['gray']:
        img = F.rgb_to_grayscale(img, num_output_channels=c)
    if p['blur']:
        img = img.filter(ImageFilter.GaussianBlur(radius=p['sigma']))
    if p['solarize']:
        img = ImageOps.solarize(img)
    if p['flip']:
        img = F.hflip(img)
    return img


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='test/data/fixture/pil-reference.json.gz')
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    shapes = [(16, 16, 3), (13, 17, 3), (28, 28, 1), (30, 23, 3), (9, 31, 3), (20, 18, 1), (36, 30, 3), (5, 7, 3)]
    images = [random_image(rng, *s) for s in shapes for _ in range(3)]
    # edge cases: flat images (contrast mean, HSV with s = 0), pure primaries, extremes
    images.append(np.full((8, 8, 3), 200, np.uint8))
    prim = np.zeros((6, 6, 3), np.uint8)
    prim[:2, :, 0] = 255
    prim[2:4, :, 1] = 255
    prim[4:, :, 2] = 255
    prim[:, ::2] = 255 - prim[:, ::2]
    images.append(prim)

    ops = []
    for i, a in enumerate(images):
        h, w, c = a.shape
        img = to_pil(a)
        for _ in range(2):
            f = float(rng.uniform(0, 2.2))
            ops.append({'image': i, 'op': 'brightness', 'factor': f, 'out': b64(from_pil(F.adjust_brightness(img, f), c))})
            f = float(rng.uniform(0, 2.2))
            ops.append({'image': i, 'op': 'contrast', 'factor': f, 'out': b64(from_pil(F.adjust_contrast(img, f), c))})
            f = float(rng.uniform(0, 2.2))
            ops.append({'image': i, 'op': 'saturation', 'factor': f, 'out': b64(from_pil(F.adjust_saturation(img, f), c))})
            f = float(rng.uniform(-0.5, 0.5))
            ops.append({'image': i, 'op': 'hue', 'factor': f, 'out': b64(from_pil(F.adjust_hue(img, f), c))})
            s = float(rng.choice([0.1, 2.0]) if rng.random() < 0.3 else rng.uniform(0.1, 6.0))
            ops.append({'image': i, 'op': 'blur', 'factor': s, 'out': b64(from_pil(img.filter(ImageFilter.GaussianBlur(radius=s)), c))})
            top, left, hh, ww = random_box(rng, h, w)
            S = min(32, int(rng.choice([hh, max(1, hh // 3), 2 * hh + 1, int(rng.integers(1, 40))])))
            out = F.resized_crop(img, top, left, hh, ww, [S, S], InterpolationMode.BILINEAR)
            ops.append({'image': i, 'op': 'resized_crop', 'box': [top, left, hh, ww], 'size': S, 'out': b64(from_pil(out, c))})
        ops.append({'image': i, 'op': 'gray', 'out': b64(from_pil(F.rgb_to_grayscale(img, num_output_channels=c), c))})
        ops.append({'image': i, 'op': 'solarize', 'out': b64(from_pil(ImageOps.solarize(img), c))})
        ops.append({'image': i, 'op': 'hflip', 'out': b64(from_pil(F.hflip(img), c))})

    views = []
    for i, a in enumerate(images):
        h, w, c = a.shape
        for _ in range(4):
            top, left, hh, ww = random_box(rng, h, w)
            p = {
                'top': top, 'left': left, 'height': hh, 'width': ww,
                'jitter': bool(rng.random() < 0.8), 'order': [int(k) for k in rng.permutation(4)],
                'brightness': float(rng.uniform(0.6, 1.4)), 'contrast': float(rng.uniform(0.6, 1.4)),
                'saturation': float(rng.uniform(0.8, 1.2)), 'hue': float(rng.uniform(-0.1, 0.1)),
                'gray': bool(rng.random() < 0.2), 'blur': bool(rng.random() < 0.5), 'sigma': float(rng.uniform(0.1, 2.0)),
                'solarize': bool(rng.random() < 0.3), 'flip': bool(rng.random() < 0.5),
            }
            S = int(rng.choice([12, 16, 24]))
            out = apply_view(to_pil(a), c, p, S)
            views.append({'image': i, 'size': S, 'params': p, 'out': b64(from_pil(out, c))})

    # ToTensor + Normalize of every byte value, per channel, with ImageNet's statistics
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ramp = Image.fromarray(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2), 'RGB')
    table = F.normalize(F.to_tensor(ramp), mean, std)[:, 0, :].contiguous().numpy().astype(np.float32)

    # RandomResizedCrop.get_params: the distribution of crop boxes, as histograms of heights, widths and
    # (height, width) pairs, for square, wide and degenerate images (the last one mostly takes the fallback)
    crops = []
    torch.manual_seed(args.seed)
    for (h, w) in [(28, 28), (32, 24), (13, 40), (3, 50)]:
        img = Image.new('L', (w, h))
        boxes = [T.RandomResizedCrop.get_params(img, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3]) for _ in range(20000)]
        pairs = {}
        for (_, _, bh, bw) in boxes:
            pairs[f'{bh},{bw}'] = pairs.get(f'{bh},{bw}', 0) + 1
        crops.append({'h': h, 'w': w, 'n': len(boxes), 'pairs': pairs,
                      'mean_top': float(np.mean([b[0] for b in boxes])), 'mean_left': float(np.mean([b[1] for b in boxes]))})

    # main_lincls.py's val transform, Resize(size) + CenterCrop(size) on a PIL image (what an image
    # folder's cache holds: src/data/imagefolder.ts), shrinking and enlarging, wide, tall and square;
    # drawn from a generator of its own, so the sections above do not change when this one does
    erng = np.random.default_rng(args.seed + 1)
    eval_images = [random_image(erng, h, w, c) for (h, w, c) in
                   [(48, 64, 3), (64, 48, 3), (50, 50, 3), (37, 91, 3), (91, 37, 1), (17, 23, 3), (120, 33, 3), (21, 20, 3)]]
    eval_crops = []
    for a in eval_images:
        h, w, c = a.shape
        for size in sorted({int(erng.integers(3, min(h, w) + 1)), min(h, w), min(h, w) + int(erng.integers(1, 30)), 18}):
            out = T.CenterCrop(size)(T.Resize(size, interpolation=InterpolationMode.BILINEAR)(to_pil(a)))
            eval_crops.append({'h': h, 'w': w, 'c': c, 'data': b64(a), 'size': size, 'out': b64(from_pil(out, c))})

    fixture = {
        'generator': 'tools/pil_reference.py',
        'versions': {'pillow': PIL.__version__, 'torchvision': torchvision.__version__, 'torch': torch.__version__, 'numpy': np.__version__},
        'seed': args.seed,
        'images': [{'h': a.shape[0], 'w': a.shape[1], 'c': a.shape[2], 'data': b64(a)} for a in images],
        'ops': ops,
        'views': views,
        'normalize': {'mean': mean, 'std': std, 'table': b64(table)},
        'crops': crops,
        'eval_crops': eval_crops,
    }
    with gzip.open(args.out, 'wt') as f:
        json.dump(fixture, f, separators=(',', ':'))
    print(f'{args.out}: {len(images)} images, {len(ops)} single ops, {len(views)} views, {len(eval_crops)} eval crops '
          f'(Pillow {PIL.__version__}, torchvision {torchvision.__version__})')


if __name__ == '__main__':
    main()
