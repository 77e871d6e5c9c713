#!/usr/bin/env python3
"""PyTorch speed of the same MoCo v3 step that bench/native-profile.ts times (baseline for the native backend).

    /usr/bin/python3 bench/native-torch.py [--model micro|cpu|gpu] [--batch 64,256] [--steps 5] [--warmup 2] [--threads N] [--blas-threads 1]
    python3 bench/native-torch.py --device cuda --model gpu --batch 1024 [--tf32] [--json]

--model: the model of `moco3 bench --preset cpu` (ViT-Micro/7 at 28 px), of `--preset gpu` (ViT-Tiny/4 at 32 px,
dim 192, depth 12, 12 heads, heads 4096 -> 256), or `micro` (default: the profiling size of
bench/native-profile.ts). On CUDA, float32 with TF32 off unless --tf32; --json prints one JSON object per batch,
its GPU memory both as the tensors' peak (peak_gpu_mb) and as what the caching allocator held
(peak_gpu_reserved_mb: the figure to set beside moco3's gpu_peak_mb, which counts its pool's free buffers too).
Peak RSS is the process's: with several batches, a batch's line holds the batches before it.

Model: the official definitions as re-implemented in tools/torch_reference.py (timm ViT + MoCo_ViT), AdamW,
float32. On the CPU it first checks that a 1024^3 matmul runs at BLAS speed (docs/ENGINES.md: reference BLAS
makes torch ~30x slower), then prints ms/step (median), img/s, process CPU time per step and peak RSS.

Threads: PyTorch runs its own ops on --threads OpenMP threads (default: the cores this process may use, as
moco3's native backend takes them) and calls OpenBLAS, which keeps a pool of its own: --blas-threads (default 1, as moco3's native backend sizes OpenBLAS's pool beside its own). With both
pools of 2 threads on 2 cores (PyTorch's defaults there: --blas-threads 2) the two spin against each other
and a step takes 2x the time; say which was run beside any figure.
"""
import argparse
import importlib.util
import math
import os
import re
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load_reference():
    path = os.path.join(HERE, '..', 'tools', 'torch_reference.py')
    spec = importlib.util.spec_from_file_location('torch_reference', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def matmul_gflops(n=1024, reps=10):
    import torch
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


# the models of moco3's presets (src/config/presets.ts, src/config/archs.ts), as the official code builds them
MODELS = {
    # the profiling size of bench/native-profile.ts: vit-micro/4 at 32 px, heads 256 -> 64, frozen patch projection
    'micro': dict(img=32, patch=4, dim=64, depth=4, heads=4, mlp=2, proj=(256, 64), pred=256, frozen=True),
    # `moco3 bench --preset cpu`: ViT-Micro/7 at 28 px (16 patches), heads 256 -> 64, frozen patch projection
    'cpu': dict(img=28, patch=7, dim=64, depth=4, heads=4, mlp=2, proj=(256, 64), pred=256, frozen=True),
    # `moco3 bench --preset gpu`: ViT-Tiny/4 at 32 px (dim 192, depth 12, 12 heads), heads 4096 -> 256, frozen
    'gpu': dict(img=32, patch=4, dim=192, depth=12, heads=12, mlp=4, proj=(4096, 256), pred=4096, frozen=True),
}


def build(ref, name):
    import torch.nn as nn
    from functools import partial
    m = MODELS[name]
    base = partial(ref.VisionTransformerMoCo, stop_grad_conv1=m['frozen'], img_size=m['img'], patch_size=m['patch'],
                   embed_dim=m['dim'], depth=m['depth'], num_heads=m['heads'], mlp_ratio=m['mlp'], qkv_bias=True,
                   norm_layer=partial(nn.LayerNorm, eps=1e-6))
    return ref.MoCo_ViT(base, m['proj'][1], m['proj'][0], 0.2, pred_mlp_dim=m['pred']), m['img']


def count(least):
    """An argparse type: a whole number >= least (a bad one is one line, exit 2, as moco3's flags)."""
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}')
        if n < least:
            raise argparse.ArgumentTypeError(f'expected a whole number >= {least}, got {n}')
        return n
    return parse


def batches(text):
    """--batch: one batch size or several, comma-separated (64 or 64,128), each >= 2 (the loss needs two images)."""
    try:
        sizes = [int(x) for x in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected batch sizes such as 64 or 64,128, got {text!r}')
    if any(b < 2 for b in sizes):
        raise argparse.ArgumentTypeError(f'expected batch sizes >= 2, got {text!r}')
    return sizes


def device(text):
    if re.fullmatch(r'cpu|cuda(:\d+)?', text) is None:
        raise argparse.ArgumentTypeError(f'expected cpu, cuda or cuda:N, got {text!r}')
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=batches, default=[64])
    ap.add_argument('--steps', type=count(1), default=5)
    ap.add_argument('--warmup', type=count(0), default=2)
    # the cores this process may use, as moco3's native backend takes them (MOCO3_THREADS unset)
    ap.add_argument('--threads', type=count(1), default=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)
    ap.add_argument('--blas-threads', type=count(1), default=1)
    ap.add_argument('--device', type=device, default='cpu')
    ap.add_argument('--model', choices=sorted(MODELS), default='micro')
    ap.add_argument('--tf32', action='store_true')
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    # OpenBLAS keeps its own pool beside PyTorch's OpenMP one: sized before torch loads it
    os.environ['OMP_NUM_THREADS'] = str(a.threads)
    for var in ('OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(a.blas_threads)
    global torch
    import torch
    torch.set_num_threads(a.threads)
    cuda = a.device.startswith('cuda')
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
        return bench_cuda(a)
    gf = matmul_gflops()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS {a.blas_threads}, 1024^3 matmul {gf:.0f} GFLOP/s'
          f'{"  (WARNING: reference BLAS? expected ~190 on 2 cores with 2 BLAS threads)" if gf < 50 else ""}')
    ref = load_reference()
    from functools import partial
    import torch.nn as nn
    for i, B in enumerate(a.batch):
        torch.manual_seed(0)
        model, size = build(ref, a.model)
        # PyTorch's default betas, as main_moco.py and moco3 (the CUDA path below alike)
        opt = torch.optim.AdamW(model.parameters(), 1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
        x1 = torch.randn(B, 3, size, size)
        x2 = torch.randn(B, 3, size, size)
        wall, cpu = [], []
        for s in range(a.warmup + a.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = model(x1, x2, 0.99)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            # the step's graph is not kept alive through the next step's forward
            del loss
            if s >= a.warmup:
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        ms = statistics.median(wall) * 1000
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # the process's peak: after the first batch it holds the batches before (moco3 runs one batch a process)
        since = '' if i == 0 else ' (of the process, with the batches before: run one batch for this one\'s)'
        print(f'torch   ({torch.get_num_threads()} threads, BLAS {a.blas_threads}) {a.model} batch {B}: {ms:.0f} ms/step, {B * 1000 / ms:.1f} img/s '
              f'[min {min(wall) * 1000:.0f} ms, process CPU {statistics.median(cpu) * 1000:.0f} ms/step, peak RSS {rss:.0f} MB{since}, '
              f'{len(wall)} steps, load {os.getloadavg()[0]:.1f}]')


def bench_cuda(a):
    import json
    import torch.nn as nn
    from functools import partial
    ref = load_reference()
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(dev)
    # a batch the card cannot hold in one piece (6144 at the gpu preset needs far more than 80 GB: PyTorch
    # keeps both views' activations) is said as such, and the next batch still runs
    oom = getattr(torch.cuda, 'OutOfMemoryError', RuntimeError)
    for B in a.batch:
        torch.manual_seed(0)
        model = opt = x1 = x2 = loss = None
        try:
            model, size = build(ref, a.model)
            model = model.to(dev)
            opt = torch.optim.AdamW(model.parameters(), 1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
            x1 = torch.randn(B, 3, size, size, device=dev)
            x2 = torch.randn(B, 3, size, size, device=dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            wall = []
            for s in range(a.warmup + a.steps):
                torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                loss = model(x1, x2, 0.99)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss.item()
                torch.cuda.synchronize(dev)
                if s >= a.warmup:
                    wall.append(time.perf_counter() - t0)
        except oom as e:
            if not isinstance(e, getattr(torch.cuda, 'OutOfMemoryError', ())) and 'out of memory' not in str(e):
                raise
            peak = round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1)
            held = round(torch.cuda.max_memory_reserved(dev) / 2 ** 20, 1)
            model = opt = x1 = x2 = loss = None
            torch.cuda.empty_cache()
            r = {'engine': 'pytorch', 'torch': torch.__version__, 'device': name, 'model': a.model, 'batch': B, 'tf32': a.tf32,
                 'error': 'out of memory', 'peak_gpu_mb': peak, 'peak_gpu_reserved_mb': held}
            print(json.dumps(r) if a.json else f"torch {torch.__version__} {name} {a.model} batch {B}: out of memory (peak {peak} MB before it)")
            continue
        ms = statistics.median(wall) * 1000
        # peak_gpu_mb: the tensors live at the peak; peak_gpu_reserved_mb: what the caching allocator held, the
        # figure to set beside moco3's gpu_peak_mb (the buffers its backend held, its pool's free ones too)
        r = {'engine': 'pytorch', 'torch': torch.__version__, 'device': name, 'model': a.model, 'batch': B, 'tf32': a.tf32,
             'ms_per_step': round(ms, 1), 'images_per_s': round(B * 1000 / ms, 1),
             'peak_gpu_mb': round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1),
             'peak_gpu_reserved_mb': round(torch.cuda.max_memory_reserved(dev) / 2 ** 20, 1)}
        print(json.dumps(r) if a.json else f"torch {torch.__version__} {name} {a.model} batch {B} tf32={a.tf32}: {ms:.0f} ms/step, {r['images_per_s']} img/s, "
              f"peak {r['peak_gpu_mb']} MB in tensors, {r['peak_gpu_reserved_mb']} MB held")
        model = opt = x1 = x2 = loss = None
        torch.cuda.empty_cache()


if __name__ == '__main__':
    sys.exit(main())
