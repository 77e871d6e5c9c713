#!/usr/bin/env python3
"""PyTorch speed of the same MoCo v3 step that bench/native-profile.ts times (baseline for the native backend).

    /usr/bin/python3 bench/native-torch.py [--batch 64,256] [--steps 5] [--warmup 2] [--threads 2]
    python3 bench/native-torch.py --device cuda --model gpu --batch 1024 [--tf32] [--json]

--model gpu: the `gpu` preset's step instead (ViT-Tiny/4, dim 192, depth 12, 12 heads, heads 4096 -> 256,
frozen patch projection, 32 px), the comparison for `moco3 bench --backend webgpu --preset gpu`. On CUDA,
float32 with TF32 off unless --tf32; --json prints one JSON object per batch.

Model: the official definitions as re-implemented in tools/torch_reference.py (timm ViT + MoCo_ViT), at
The "micro" size (vit-micro, heads 256 -> 64, frozen patch projection), AdamW, float32, CPU.
First checks that a 1024^3 matmul runs at BLAS speed (docs/ENGINES.md: reference BLAS makes torch ~30x slower).
Prints ms/step (median), img/s and process CPU time per step.
"""
import argparse
import importlib.util
import math
import os
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', default='64')
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--model', choices=['micro', 'gpu'], default='micro')
    ap.add_argument('--tf32', action='store_true')
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    # OpenBLAS keeps its own pool: size it too, before torch loads it
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(a.threads)
    global torch
    import torch
    torch.set_num_threads(a.threads)
    cuda = a.device.startswith('cuda')
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
        return bench_cuda(a)
    gf = matmul_gflops()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, 1024^3 matmul {gf:.0f} GFLOP/s'
          f'{"  (WARNING: reference BLAS? expected ~190 on 2 cores)" if gf < 50 else ""}')
    ref = load_reference()
    from functools import partial
    import torch.nn as nn
    for B in [int(x) for x in a.batch.split(',')]:
        torch.manual_seed(0)
        base = partial(ref.VisionTransformerMoCo, stop_grad_conv1=True, img_size=32, patch_size=4, embed_dim=64, depth=4,
                       num_heads=4, mlp_ratio=2, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
        model = ref.MoCo_ViT(base, 64, 256, 0.2, pred_mlp_dim=256)
        opt = torch.optim.AdamW(model.parameters(), 1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        x1 = torch.randn(B, 3, 32, 32)
        x2 = torch.randn(B, 3, 32, 32)
        wall, cpu = [], []
        for s in range(a.warmup + a.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = model(x1, x2, 0.99)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            if s >= a.warmup:
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        ms = statistics.median(wall) * 1000
        print(f'torch   ({torch.get_num_threads()} threads) vit-micro batch {B}: {ms:.0f} ms/step, {B * 1000 / ms:.1f} img/s '
              f'[min {min(wall) * 1000:.0f} ms, process CPU {statistics.median(cpu) * 1000:.0f} ms/step, {len(wall)} steps, '
              f'load {os.getloadavg()[0]:.1f}]')


def bench_cuda(a):
    import json
    import torch.nn as nn
    from functools import partial
    ref = load_reference()
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(dev)
    for B in [int(x) for x in a.batch.split(',')]:
        torch.manual_seed(0)
        if a.model == 'gpu':
            base = partial(ref.VisionTransformerMoCo, stop_grad_conv1=True, img_size=32, patch_size=4, embed_dim=192, depth=12,
                           num_heads=12, mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
            model = ref.MoCo_ViT(base, 256, 4096, 0.2, pred_mlp_dim=4096)
        else:
            base = partial(ref.VisionTransformerMoCo, stop_grad_conv1=True, img_size=32, patch_size=4, embed_dim=64, depth=4,
                           num_heads=4, mlp_ratio=2, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
            model = ref.MoCo_ViT(base, 64, 256, 0.2, pred_mlp_dim=256)
        model = model.to(dev)
        opt = torch.optim.AdamW(model.parameters(), 1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
        x1 = torch.randn(B, 3, 32, 32, device=dev)
        x2 = torch.randn(B, 3, 32, 32, device=dev)
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
        ms = statistics.median(wall) * 1000
        r = {'engine': 'pytorch', 'torch': torch.__version__, 'device': name, 'model': a.model, 'batch': B, 'tf32': a.tf32,
             'ms_per_step': round(ms, 1), 'images_per_s': round(B * 1000 / ms, 1),
             'peak_gpu_mb': round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1)}
        print(json.dumps(r) if a.json else f"torch {torch.__version__} {name} {a.model} batch {B} tf32={a.tf32}: {ms:.0f} ms/step, {r['images_per_s']} img/s, peak {r['peak_gpu_mb']} MB")


if __name__ == '__main__':
    sys.exit(main())
