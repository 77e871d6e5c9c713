#!/usr/bin/env python3
"""Check a moco3 run against the official MoCo v3 code, re-implemented in PyTorch.

    python3 tools/torch_reference.py RUN [--steps 2] [--json] [--free-run] [--all]
    python3 tools/torch_reference.py --self-test
    python3 tools/torch_reference.py --write-fixture test/torchref/fixture

RUN is a folder written by `moco3 train ... --set train.checkpoint_every=1 --dump-views N` (see
tools/README.md). The model is built from the official definitions (facebookresearch/moco-v3 vits.py,
moco/builder.py, moco/optimizer.py, main_moco.py; timm 0.4.9 VisionTransformer), loaded with moco3's
step-0 weights (strict) after checking them against the official init, and trained on moco3's dumped
views in float32 on the CPU. After each step s the loss, every state-dict tensor and every optimizer slot
are compared with moco3's checkpoint step-(s+1). By default each step starts again from moco3's
checkpoint step-s (model and optimizer state), so every step is judged on its own; --free-run lets
PyTorch follow its own trajectory.

The same step in float64, and in float32 on the batch in other orders, measures how far float32 itself
strays ("f32 noise"); a tensor agrees when its max |moco3 - torch| is within
    max(1e-3 x its update, 4 ulp of its largest value, 10 x f32 noise)
(num_batches_tracked: exactly). Exit 0 agree, 1 disagree, 2 bad input.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from functools import partial

import numpy as np

try:
    import torch
    import torch.nn as nn
except ImportError:  # pragma: no cover
    sys.stderr.write('torch_reference: PyTorch is not importable by this Python (%s); on Debian use '
                     '/usr/bin/python3 with python3-torch\n' % sys.executable)
    sys.exit(2)

EXIT_OK, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2

# thresholds (see tools/README.md for why)
LOSS_RTOL = 1e-4
UPDATE_RTOL = 1e-3
ULPS = 4
NOISE_FACTOR = 10.0
SCHEDULE_RTOL = 1e-9
EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
TINY = 1e-30


class BadInput(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# safetensors by hand: 8-byte LE header length, JSON header, raw LE data
_ST_DTYPES = {'F32': np.dtype('<f4'), 'F64': np.dtype('<f8'), 'I64': np.dtype('<i8'), 'I32': np.dtype('<i4')}


def read_safetensors(path):
    try:
        with open(path, 'rb') as f:
            buf = f.read()
    except OSError as e:
        raise BadInput('%s: %s' % (path, e.strerror))
    if len(buf) < 8:
        raise BadInput('%s: not a safetensors file (too short)' % path)
    n = struct.unpack('<Q', buf[:8])[0]
    if 8 + n > len(buf):
        raise BadInput('%s: header length %d past the end of the file' % (path, n))
    try:
        header = json.loads(buf[8:8 + n].decode('utf-8'))
    except ValueError as e:
        raise BadInput('%s: bad JSON header: %s' % (path, e))
    meta = header.pop('__metadata__', None) or {}
    out = {}
    for name, h in header.items():
        dt = _ST_DTYPES.get(h.get('dtype'))
        if dt is None:
            raise BadInput('%s: tensor %s has unsupported dtype %s' % (path, name, h.get('dtype')))
        a, b = h['data_offsets']
        count = int(np.prod(h['shape'], dtype=np.int64)) if h['shape'] else 1
        if b - a != count * dt.itemsize or 8 + n + b > len(buf):
            raise BadInput('%s: tensor %s: offsets [%d, %d] do not fit shape %s' % (path, name, a, b, h['shape']))
        out[name] = np.frombuffer(buf, dtype=dt, count=count, offset=8 + n + a).reshape(h['shape']).copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    names = sorted(tensors)
    header = {}
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    off = 0
    blobs = []
    for name in names:
        a = np.asarray(tensors[name])
        code = {np.dtype('float32'): 'F32', np.dtype('float64'): 'F64', np.dtype('int64'): 'I64', np.dtype('int32'): 'I32'}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': code, 'shape': list(a.shape), 'data_offsets': [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    hj = json.dumps(header).encode('utf-8')
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for raw in blobs:
            f.write(raw)


# ----------------------------------------------------------------------------------------------
# config.yaml
def _scalar(s):
    s = s.strip()
    if s in ('null', '~', ''):
        return None
    if s in ('true', 'false'):
        return s == 'true'
    if s.startswith('[') and s.endswith(']'):
        return [_scalar(x) for x in s[1:-1].split(',') if x.strip()]
    if len(s) >= 2 and s[0] == s[-1] and s[0] in '"\'':
        return s[1:-1]
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _mini_yaml(text):
    """Block mappings, block sequences of scalars, flow lists: enough for moco3's config.yaml."""
    lines = [(len(l) - len(l.lstrip(' ')), l.strip()) for l in text.splitlines()
             if l.strip() and not l.strip().startswith('#')]

    def parse(i, indent):
        if i < len(lines) and lines[i][1].startswith('- '):
            seq = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith('- '):
                seq.append(_scalar(lines[i][1][2:]))
                i += 1
            return seq, i
        out = {}
        while i < len(lines) and lines[i][0] == indent:
            key, _, rest = lines[i][1].partition(':')
            i += 1
            if rest.strip():
                out[key.strip()] = _scalar(rest)
            elif i < len(lines) and (lines[i][0] > indent or lines[i][1].startswith('- ')):
                out[key.strip()], i = parse(i, lines[i][0])
            else:
                out[key.strip()] = None
        return out, i

    return parse(0, lines[0][0] if lines else 0)[0] if lines else {}


def load_config(run):
    path = os.path.join(run, 'config.yaml')
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise BadInput('%s: %s' % (path, e.strerror))
    try:
        import yaml
        cfg = yaml.safe_load(text)
    except ImportError:
        cfg = _mini_yaml(text)
    if not isinstance(cfg, dict):
        raise BadInput('%s: not a mapping' % path)
    return cfg


def cget(cfg, key, default=KeyError):
    node = cfg
    for part in key.split('.'):
        if not isinstance(node, dict) or part not in node:
            if default is KeyError:
                raise BadInput('config.yaml: missing key %s' % key)
            return default
        node = node[part]
    if node is None and default is not KeyError:
        return default
    return node


# ----------------------------------------------------------------------------------------------
# timm 0.4.9 (timm/models/vision_transformer.py, layers/patch_embed.py, layers/mlp.py), no dropout
class PatchEmbed(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None, flatten=True):
        super().__init__()
        img_size = (img_size, img_size)
        patch_size = (patch_size, patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (img_size[0] // patch_size[0], img_size[1] // patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x):
        B, C, H, W = x.shape
        assert H == self.img_size[0] and W == self.img_size[1], \
            f"Input image size ({H}*{W}) doesn't match model ({self.img_size[0]}*{self.img_size[1]})."
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # BCHW -> BNC
        x = self.norm(x)
        return x


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0., proj_drop=0.):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=False, qk_scale=None, drop=0., attn_drop=0.,
                 drop_path=0., act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = nn.Identity()  # drop_path_rate 0
        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.mlp = Mlp(in_features=dim, hidden_features=mlp_hidden_dim, act_layer=act_layer, drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class VisionTransformer(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4., qkv_bias=True, qk_scale=None, representation_size=None, distilled=False,
                 drop_rate=0., attn_drop_rate=0., drop_path_rate=0., embed_layer=PatchEmbed, norm_layer=None,
                 act_layer=None, weight_init=''):
        super().__init__()
        assert representation_size is None and not distilled and drop_path_rate == 0.
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_tokens = 1
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        act_layer = act_layer or nn.GELU

        self.patch_embed = embed_layer(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)

        self.blocks = nn.Sequential(*[
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                  drop=drop_rate, attn_drop=attn_drop_rate, drop_path=0., norm_layer=norm_layer, act_layer=act_layer)
            for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.pre_logits = nn.Identity()
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = None
        # timm's own init (trunc_normal_) is skipped: VisionTransformerMoCo overwrites every tensor it touches

    def forward_features(self, x):
        x = self.patch_embed(x)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls_token, x), dim=1)
        x = self.pos_drop(x + self.pos_embed)
        x = self.blocks(x)
        x = self.norm(x)
        return self.pre_logits(x[:, 0])

    def forward(self, x):
        x = self.forward_features(x)
        x = self.head(x)
        return x


# ----------------------------------------------------------------------------------------------
# vits.py (official, last commit)
class VisionTransformerMoCo(VisionTransformer):
    def __init__(self, stop_grad_conv1=False, **kwargs):
        super().__init__(**kwargs)
        # Use fixed 2D sin-cos position embedding
        self.build_2d_sincos_position_embedding()

        # weight initialization
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                if 'qkv' in name:
                    # treat the weights of Q, K, V separately
                    val = math.sqrt(6. / float(m.weight.shape[0] // 3 + m.weight.shape[1]))
                    nn.init.uniform_(m.weight, -val, val)
                else:
                    nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.cls_token, std=1e-6)

        if isinstance(self.patch_embed, PatchEmbed):
            # xavier_uniform initialization
            val = math.sqrt(6. / float(3 * self.patch_embed.patch_size[0] * self.patch_embed.patch_size[1] + self.embed_dim))
            nn.init.uniform_(self.patch_embed.proj.weight, -val, val)
            nn.init.zeros_(self.patch_embed.proj.bias)

            if stop_grad_conv1:
                self.patch_embed.proj.weight.requires_grad = False
                self.patch_embed.proj.bias.requires_grad = False

    def build_2d_sincos_position_embedding(self, temperature=10000.):
        h, w = self.patch_embed.grid_size
        grid_w = torch.arange(w, dtype=torch.float32)
        grid_h = torch.arange(h, dtype=torch.float32)
        grid_w, grid_h = torch.meshgrid(grid_w, grid_h, indexing='ij')
        assert self.embed_dim % 4 == 0, 'Embed dimension must be divisible by 4 for 2D sin-cos position embedding'
        pos_dim = self.embed_dim // 4
        omega = torch.arange(pos_dim, dtype=torch.float32) / pos_dim
        omega = 1. / (temperature**omega)
        out_w = torch.einsum('m,d->md', [grid_w.flatten(), omega])
        out_h = torch.einsum('m,d->md', [grid_h.flatten(), omega])
        pos_emb = torch.cat([torch.sin(out_w), torch.cos(out_w), torch.sin(out_h), torch.cos(out_h)], dim=1)[None, :, :]

        assert self.num_tokens == 1, 'Assuming one and only one token, [cls]'
        pe_token = torch.zeros([1, 1, self.embed_dim], dtype=torch.float32)
        self.pos_embed = nn.Parameter(torch.cat([pe_token, pos_emb], dim=1))
        self.pos_embed.requires_grad = False


# ----------------------------------------------------------------------------------------------
# moco/builder.py (official, last commit); single process: concat_all_gather is the identity, rank 0.
# moco3 has separate projector/predictor hidden sizes (official: both mlp_dim); pred_mlp_dim adds that.
class MoCo(nn.Module):
    def __init__(self, base_encoder, dim=256, mlp_dim=4096, T=1.0, pred_mlp_dim=None):
        super(MoCo, self).__init__()

        self.T = T
        self.pred_mlp_dim = pred_mlp_dim or mlp_dim

        # build encoders
        self.base_encoder = base_encoder(num_classes=mlp_dim)
        self.momentum_encoder = base_encoder(num_classes=mlp_dim)

        self._build_projector_and_predictor_mlps(dim, mlp_dim)

        for param_b, param_m in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            param_m.data.copy_(param_b.data)  # initialize
            param_m.requires_grad = False  # not update by gradient

    def _build_mlp(self, num_layers, input_dim, mlp_dim, output_dim, last_bn=True):
        mlp = []
        for l in range(num_layers):
            dim1 = input_dim if l == 0 else mlp_dim
            dim2 = output_dim if l == num_layers - 1 else mlp_dim

            mlp.append(nn.Linear(dim1, dim2, bias=False))

            if l < num_layers - 1:
                mlp.append(nn.BatchNorm1d(dim2))
                mlp.append(nn.ReLU(inplace=True))
            elif last_bn:
                # follow SimCLR's design; gamma removed
                mlp.append(nn.BatchNorm1d(dim2, affine=False))

        return nn.Sequential(*mlp)

    def _build_projector_and_predictor_mlps(self, dim, mlp_dim):
        pass

    @torch.no_grad()
    def _update_momentum_encoder(self, m):
        """Momentum update of the momentum encoder"""
        for param_b, param_m in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            param_m.data = param_m.data * m + param_b.data * (1. - m)

    def contrastive_loss(self, q, k):
        # normalize
        q = nn.functional.normalize(q, dim=1)
        k = nn.functional.normalize(k, dim=1)
        # gather all targets: one process
        k = concat_all_gather(k)
        logits = torch.einsum('nc,mc->nm', [q, k]) / self.T
        N = logits.shape[0]  # batch size per GPU
        labels = torch.arange(N, dtype=torch.long) + N * 0  # rank 0
        return nn.CrossEntropyLoss()(logits, labels) * (2 * self.T)

    def forward(self, x1, x2, m):
        # compute features
        q1 = self.predictor(self.base_encoder(x1))
        q2 = self.predictor(self.base_encoder(x2))

        with torch.no_grad():  # no gradient
            self._update_momentum_encoder(m)  # update the momentum encoder

            # compute momentum features as targets
            k1 = self.momentum_encoder(x1)
            k2 = self.momentum_encoder(x2)

        return self.contrastive_loss(q1, k2) + self.contrastive_loss(q2, k1)


class MoCo_ViT(MoCo):
    def _build_projector_and_predictor_mlps(self, dim, mlp_dim):
        hidden_dim = self.base_encoder.head.weight.shape[1]
        del self.base_encoder.head, self.momentum_encoder.head  # remove original fc layer

        # projectors
        self.base_encoder.head = self._build_mlp(3, hidden_dim, mlp_dim, dim)
        self.momentum_encoder.head = self._build_mlp(3, hidden_dim, mlp_dim, dim)

        # predictor
        self.predictor = self._build_mlp(2, dim, self.pred_mlp_dim, dim)


@torch.no_grad()
def concat_all_gather(tensor):
    return tensor  # world size 1


# ----------------------------------------------------------------------------------------------
# moco/optimizer.py (official, last commit)
class LARS(torch.optim.Optimizer):
    """LARS optimizer, no rate scaling or weight decay for parameters <= 1D."""

    def __init__(self, params, lr=0, weight_decay=0, momentum=0.9, trust_coefficient=0.001):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g['params']:
                dp = p.grad

                if dp is None:
                    continue

                if p.ndim > 1:  # if not normalization gamma/beta or bias
                    dp = dp.add(p, alpha=g['weight_decay'])
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.,
                                    torch.where(update_norm > 0,
                                                (g['trust_coefficient'] * param_norm / update_norm), one),
                                    one)
                    dp = dp.mul(q)

                param_state = self.state[p]
                if 'mu' not in param_state:
                    param_state['mu'] = torch.zeros_like(p)
                mu = param_state['mu']
                mu.mul_(g['momentum']).add_(dp)
                p.add_(mu, alpha=-g['lr'])


class Lamb(torch.optim.Optimizer):
    """LAMB as moco3 documents it (src/optim/lamb.ts; not in the official repo): Adam direction with
    bias correction, L2 weight decay added to it, trust ratio ||p||/||u|| (1 when a norm is 0), optional
    global gradient-norm clipping; exclude_bias_norm gives ndim <= 1 params no decay and trust 1, and a
    param without decay (weight_decay 0) gets trust 1, as timm's `weight_decay != 0 or always_adapt`."""

    def __init__(self, params, lr=0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, exclude_bias_norm=False, max_grad_norm=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, exclude_bias_norm=exclude_bias_norm)
        super().__init__(params, defaults)
        self.defaults['max_grad_norm'] = max_grad_norm  # global (over all groups)

    @torch.no_grad()
    def step(self):
        ps = [p for g in self.param_groups for p in g['params'] if p.grad is not None]
        clip = None
        max_grad_norm = self.defaults['max_grad_norm']
        if max_grad_norm is not None and ps:
            norm = torch.sqrt(sum(torch.sum(p.grad * p.grad) for p in ps))
            clip = torch.clamp(norm / max_grad_norm, min=1.0)
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad if clip is None else p.grad / clip
                excluded = group['exclude_bias_norm'] and p.ndim <= 1
                wd = 0.0 if excluded else group['weight_decay']
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = torch.tensor(0.)
                    state['exp_avg'] = torch.zeros_like(p)
                    state['exp_avg_sq'] = torch.zeros_like(p)
                state['step'] += 1
                t = state['step'].item()
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bc1 = 1 - beta1 ** t
                bc2 = 1 - beta2 ** t
                denom = (exp_avg_sq.sqrt() / math.sqrt(bc2)).add_(group['eps'])
                update = (exp_avg / bc1) / denom
                if wd != 0:
                    update = update.add(p, alpha=wd)
                    w_norm = torch.norm(p)
                    u_norm = torch.norm(update)
                    one = torch.ones_like(w_norm)
                    trust = torch.where(w_norm > 0, torch.where(u_norm > 0, w_norm / u_norm, one), one)
                    update = update * trust
                p.add_(update, alpha=-group['lr'])


SLOTS = {'adamw': ('exp_avg', 'exp_avg_sq'), 'lamb': ('exp_avg', 'exp_avg_sq'), 'lars': ('mu',), 'sgd': ('momentum_buffer',)}
PER_PARAM_STEPS = ('adamw', 'lamb')


# ----------------------------------------------------------------------------------------------
# main_moco.py: schedules, model and optimizer construction
def adjust_learning_rate(optimizer, epoch, args):
    """Decays the learning rate with half-cycle cosine after warmup"""
    if epoch < args.warmup_epochs:
        lr = args.lr * epoch / args.warmup_epochs
    else:
        lr = args.lr * 0.5 * (1. + math.cos(math.pi * (epoch - args.warmup_epochs) / (args.epochs - args.warmup_epochs)))
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr
    return lr


def adjust_moco_momentum(epoch, args):
    """Adjust moco momentum based on current epoch"""
    m = 1. - 0.5 * (1. + math.cos(math.pi * epoch / args.epochs)) * (1. - args.moco_m)
    return m


class Args:
    """main_moco.py's args, filled from moco3's config.yaml."""

    def __init__(self, cfg, iters_per_epoch=None):
        self.arch = cget(cfg, 'model.arch', 'vit')
        self.image_size = int(cget(cfg, 'data.image_size'))
        self.patch_size = int(cget(cfg, 'model.patch_size'))
        self.dim = int(cget(cfg, 'model.dim'))
        self.depth = int(cget(cfg, 'model.depth'))
        self.heads = int(cget(cfg, 'model.heads'))
        self.mlp_ratio = float(cget(cfg, 'model.mlp_ratio'))
        self.patch_proj = cget(cfg, 'model.patch_proj')
        if self.patch_proj not in ('learned', 'frozen'):
            raise BadInput('config.yaml: model.patch_proj must be learned or frozen, got %r' % self.patch_proj)
        self.stop_grad_conv1 = self.patch_proj == 'frozen'
        self.moco_t = float(cget(cfg, 'moco.temperature'))
        self.moco_m = float(cget(cfg, 'moco.momentum'))
        self.moco_m_cos = cget(cfg, 'moco.momentum_schedule', 'cosine') == 'cosine'
        self.moco_dim = int(cget(cfg, 'moco.proj_dim'))
        self.moco_mlp_dim = int(cget(cfg, 'moco.proj_hidden'))
        self.pred_mlp_dim = int(cget(cfg, 'moco.pred_hidden'))
        self.optimizer = cget(cfg, 'optim.name')
        if self.optimizer not in SLOTS:
            raise BadInput('config.yaml: optim.name %r is not one of %s' % (self.optimizer, ', '.join(SLOTS)))
        self.base_lr = float(cget(cfg, 'optim.base_lr'))
        self.weight_decay = float(cget(cfg, 'optim.weight_decay'))
        self.batch_size = int(cget(cfg, 'optim.batch_size'))
        self.epochs = float(cget(cfg, 'optim.epochs'))
        self.warmup_epochs = float(cget(cfg, 'optim.warmup_epochs'))
        self.betas = tuple(float(b) for b in cget(cfg, 'optim.betas', [0.9, 0.999]))
        self.eps = float(cget(cfg, 'optim.eps', 1e-8))
        self.momentum = float(cget(cfg, 'optim.momentum', 0.9))
        self.trust_coefficient = float(cget(cfg, 'optim.trust_coefficient', 0.001))
        self.lamb_exclude_bias_norm = bool(cget(cfg, 'optim.lamb_exclude_bias_norm', False))
        mgn = cget(cfg, 'optim.max_grad_norm', None)
        self.max_grad_norm = None if mgn is None else float(mgn)
        # infer learning rate before changing batch size
        self.lr = self.base_lr * self.batch_size / 256
        train_size = cget(cfg, 'data.train_size', None)
        self.iters_per_epoch = iters_per_epoch or (int(train_size) // self.batch_size if train_size else None)
        if self.image_size % self.patch_size:
            raise BadInput('config.yaml: data.image_size %d is not a multiple of model.patch_size %d' % (self.image_size, self.patch_size))


def build_model(args):
    base = partial(VisionTransformerMoCo, stop_grad_conv1=args.stop_grad_conv1, img_size=args.image_size,
                   patch_size=args.patch_size, embed_dim=args.dim, depth=args.depth, num_heads=args.heads,
                   mlp_ratio=args.mlp_ratio, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    return MoCo_ViT(base, args.moco_dim, args.moco_mlp_dim, args.moco_t, pred_mlp_dim=args.pred_mlp_dim)


def build_optimizer(args, model):
    # as main_moco.py: over model.parameters(); params without grad (momentum encoder, pos_embed,
    # frozen patch projection) are skipped by every step()
    if args.optimizer == 'lars':
        return LARS(model.parameters(), args.lr, weight_decay=args.weight_decay, momentum=args.momentum,
                    trust_coefficient=args.trust_coefficient)
    if args.optimizer == 'adamw':
        return torch.optim.AdamW(model.parameters(), args.lr, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay)
    if args.optimizer == 'sgd':
        return torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return Lamb(model.parameters(), args.lr, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay,
                exclude_bias_norm=args.lamb_exclude_bias_norm, max_grad_norm=args.max_grad_norm)


def schedule(args, s):
    """lr and m of 0-based iteration s (fractional epoch e = s / iters_per_epoch), as main_moco.py's train()."""
    e = s / args.iters_per_epoch
    lr = adjust_learning_rate(_NoGroups, e, args)
    m = adjust_moco_momentum(e, args) if args.moco_m_cos else args.moco_m
    return lr, m


class _NoGroups:
    param_groups = []


def train_step(model, optimizer, x1, x2, lr, m):
    """One iteration of main_moco.py's train() (no AMP: float32 or float64 on the CPU)."""
    for g in optimizer.param_groups:
        g['lr'] = lr
    loss = model(x1, x2, m)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


# ----------------------------------------------------------------------------------------------
# run-folder I/O
def step_dir(run, k):
    return os.path.join(run, 'checkpoints', 'step-%07d' % k)


def load_checkpoint(run, k):
    d = step_dir(run, k)
    if not os.path.isdir(d):
        raise BadInput('%s: no such checkpoint (train with --set train.checkpoint_every=1)' % d)
    model, _ = read_safetensors(os.path.join(d, 'model.safetensors'))
    opt_path = os.path.join(d, 'optimizer.safetensors')
    opt = read_safetensors(opt_path)[0] if os.path.exists(opt_path) else {}
    try:
        with open(os.path.join(d, 'state.json')) as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise BadInput('%s/state.json: %s' % (d, e))
    return model, opt, state


def load_metrics(run):
    rows = {}
    path = os.path.join(run, 'metrics.jsonl')
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict) and isinstance(r.get('step'), int):
                rows.setdefault(r['step'], {}).update(r)
    return rows


def to_num(v):
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return v


def param_names(model):
    return {id(p): n for n, p in model.named_parameters()}


def load_into(model, optimizer, sd, slots, opt_state, args, dtype):
    """moco3's state (PyTorch layouts) into the model (strict) and the optimizer. Returns problems."""
    problems = []
    ref = model.state_dict()
    tensors = {}
    for name, a in sd.items():
        a = np.asarray(a)
        r = ref.get(name)
        if r is not None and r.dtype == torch.int64:
            if a.dtype != np.int64:
                problems.append('%s: dtype %s, the official state dict has int64' % (name, a.dtype))
            t = torch.from_numpy(a.astype(np.int64))
            tensors[name] = t.reshape(r.shape) if t.numel() == r.numel() else t
        else:
            tensors[name] = torch.from_numpy(a.astype(np.float64)).to(dtype)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        problems.append('load_state_dict(strict=True) failed: ' + ' '.join(str(e).split()))
        return problems
    optimizer.state.clear()
    names = param_names(model)
    steps = (opt_state or {}).get('steps') or {}
    for p in (p for g in optimizer.param_groups for p in g['params']):
        n = names[id(p)]
        have = [s for s in SLOTS[args.optimizer] if '%s.%s' % (n, s) in slots]
        if not have:
            continue
        st = {}
        for s in have:
            st[s] = torch.from_numpy(np.asarray(slots['%s.%s' % (n, s)], dtype=np.float64)).to(dtype).reshape(p.shape)
        if args.optimizer in PER_PARAM_STEPS:
            if n not in steps:
                problems.append('optimizer state: no step count for %s' % n)
                continue
            st['step'] = torch.tensor(float(steps[n]))
        optimizer.state[p] = st
    return problems


def snapshot(model, optimizer, args):
    """Every state-dict tensor and optimizer slot, float64 numpy, keyed as in moco3's files."""
    out = {('model', n): t.detach().clone().cpu().numpy() for n, t in model.state_dict().items()}
    out = {k: (v.astype(np.float64) if v.dtype != np.int64 else v) for k, v in out.items()}
    names = param_names(model)
    for p in (p for g in optimizer.param_groups for p in g['params']):
        st = optimizer.state.get(p)
        if not st:
            continue
        for s in SLOTS[args.optimizer]:
            if st.get(s) is not None:
                out[('slot', '%s.%s' % (names[id(p)], s))] = st[s].detach().cpu().numpy().astype(np.float64)
    return out


def opt_steps(model, optimizer):
    names = param_names(model)
    out = {}
    for p in (p for g in optimizer.param_groups for p in g['params']):
        st = optimizer.state.get(p)
        if st and 'step' in st:
            out[names[id(p)]] = int(float(st['step']))
    return out


def shape_str(shape):
    return '[' + ','.join(str(int(x)) for x in shape) + ']'


def compare(before, after32, noise32, theirs_model, theirs_slots, after64=None):
    """Per-tensor comparison rows, the list of structural problems, and each float tensor's per-element
    tolerance (key ('model'|'slot', name))."""
    rows, problems, tols = [], [], {}
    theirs = {('model', n): a for n, a in theirs_model.items()}
    theirs.update({('slot', n): a for n, a in theirs_slots.items()})
    for key in sorted(set(theirs) - set(after32)):
        problems.append('%s %s is in moco3\'s checkpoint but not in the official %s' % (
            'tensor' if key[0] == 'model' else 'optimizer slot', key[1], 'state dict' if key[0] == 'model' else 'optimizer state'))
    for key, t in after32.items():
        kind, name = key
        if key not in theirs:
            problems.append('%s %s is missing from moco3\'s checkpoint' % ('tensor' if kind == 'model' else 'optimizer slot', name))
            continue
        m = np.asarray(theirs[key])
        if m.size != t.size or (m.shape != t.shape and not (m.size == 1 and t.size == 1)):
            problems.append('%s: shape %s, official %s' % (name, shape_str(m.shape), shape_str(t.shape)))
            continue
        m = m.reshape(t.shape)
        b = before.get(key)
        integer = t.dtype == np.int64
        if integer:
            diff = float(np.max(np.abs(m.astype(np.int64) - t))) if t.size else 0.0
            upd = float(np.max(np.abs(t - b))) if b is not None and t.size else float('nan')
            rows.append(dict(kind='buffer', name=name, shape=list(t.shape), upd=upd, diff=diff, rel=diff / max(upd, TINY),
                             noise=0.0, tol=0.0, ratio=0.0 if diff == 0 else math.inf, ok=diff == 0, exact=True))
            continue
        m = m.astype(np.float64)
        diff = float(np.max(np.abs(m - t))) if t.size else 0.0
        base = b if b is not None else np.zeros_like(t)
        upd = float(np.max(np.abs(t - base))) if t.size else 0.0
        spread = noise32.get(key)
        noise = float(np.max(spread)) if spread is not None else 0.0
        # the same, over elements whose float32 spread is under 1e-4 of the update (not near-zero gradients)
        calm = spread <= 1e-4 * upd if spread is not None else np.ones(t.shape, bool)
        diff_calm = float(np.max(np.abs(m - t)[calm])) if calm.any() else 0.0
        n_noisy = int(calm.size - calm.sum())
        d64 = float(np.max(np.abs(m - after64[key]))) if after64 is not None and key in after64 and t.size else None
        amax = float(np.max(np.abs(t))) if t.size else 0.0
        # each element's own tolerance: the float32 noise term is that element's spread, so the elements of a
        # tensor whose gradient is resolved are held to their noise, not to the noise of its near-zero ones
        # (the key third of qkv.bias, whose AdamW steps are noise of the size of the lr)
        floor = max(UPDATE_RTOL * upd, ULPS * EPS32 * amax)
        tol_el = np.maximum(floor, NOISE_FACTOR * spread) if spread is not None else np.full(t.shape, floor)
        err = np.abs(m - t)
        ratio = float(np.max(np.where(tol_el > 0, err / np.where(tol_el > 0, tol_el, 1.0), np.where(err > 0, np.inf, 0.0)))) if t.size else 0.0
        tol = float(np.max(tol_el)) if t.size else floor
        tols[('slot' if kind == 'slot' else 'model', name)] = tol_el
        kind_s = 'slot' if kind == 'slot' else ('buffer' if name.rsplit('.', 1)[-1] in ('running_mean', 'running_var') else 'param')
        rows.append(dict(kind=kind_s, name=name, shape=list(t.shape), upd=upd, diff=diff, rel=diff / max(upd, TINY), noise=noise,
                         diff64=d64, amax=amax, tol=tol, ratio=ratio, ok=bool(ratio <= 1.0), exact=False,
                         rel_calm=diff_calm / max(upd, TINY), n_noisy=n_noisy))
    rows.sort(key=lambda r: (r['ok'], -r['ratio']))
    return rows, problems, tols


def init_checks(sd, model, args):
    """moco3's step-0 state against the official initialisation: the deterministic tensors exactly (sin-cos
    position embedding to float32 rounding, zeros, ones, BN buffers, momentum encoder = base encoder) and the
    random ones by their distribution (vits.py: xavier-uniform, qkv per Q/K/V, patch projection bound,
    cls_token N(0, 1e-6^2); the MLP heads: PyTorch's default Linear init U(+-1/sqrt(fan_in)))."""
    out = []
    official = {n: t.detach().double().numpy() for n, t in model.state_dict().items()}

    def add(name, ok, detail):
        out.append(dict(name=name, ok=bool(ok), detail=detail))

    def uniform(name, a, bound):
        n = a.size
        amax, std = float(np.max(np.abs(a))), float(np.std(a))
        ok = amax <= bound * (1 + 1e-6)
        if n >= 100:
            ok &= amax >= 0.9 * bound
        if n >= 300:
            ok &= abs(std / (bound / math.sqrt(3)) - 1) <= 0.15
        add(name, ok, 'U(+-%.4g): max|w| %.4g, std %.4g (expected %.4g)' % (bound, amax, std, bound / math.sqrt(3)))

    for name in sorted(sd):
        if name not in official:
            continue  # reported by the strict load
        a = np.asarray(sd[name]).astype(np.float64)
        if a.size != official[name].size:
            continue
        a = a.reshape(official[name].shape)
        if name.startswith('momentum_encoder.'):
            b = sd.get('base_encoder.' + name[len('momentum_encoder.'):])
            if b is not None:
                same = np.array_equal(np.asarray(b, dtype=np.float64).reshape(a.shape), a)
                add(name, same, 'equals base_encoder (copy at init)' if same else 'differs from base_encoder at init')
            continue
        short = name.split('.', 1)[1]
        leaf = short.rsplit('.', 1)[-1]
        if short == 'pos_embed':
            # the official code rounds each angle (grid position x frequency, up to grid - 1) to float32 before
            # its sin/cos; moco3 takes them in float64: they differ by a few ulp of the largest angle
            d = float(np.max(np.abs(a - official[name])))
            tol = 4 * EPS32 * max(1, args.image_size // args.patch_size - 1)
            add(name, d <= tol, 'fixed 2D sin-cos: max|diff| %.2e vs official (float32 angles: up to %.1e)' % (d, tol))
        elif short == 'cls_token':
            add(name, float(np.max(np.abs(a))) <= 1e-5 and float(np.std(a)) <= 3e-6,
                'N(0, 1e-6^2): max|x| %.2e, std %.2e' % (float(np.max(np.abs(a))), float(np.std(a))))
        elif leaf in ('running_mean', 'running_var', 'num_batches_tracked') or leaf == 'bias' or \
                (leaf == 'weight' and a.ndim == 1):
            want = 1.0 if leaf in ('running_var', 'weight') else 0.0
            add(name, bool(np.all(a == want)), 'all %g' % want if np.all(a == want) else 'not all %g (max|x - %g| %.2e)' % (want, want, float(np.max(np.abs(a - want)))))
        elif short == 'patch_embed.proj.weight':
            uniform(name, a, math.sqrt(6. / (3 * args.patch_size * args.patch_size + args.dim)))
        elif short.endswith('attn.qkv.weight'):
            uniform(name, a, math.sqrt(6. / (a.shape[0] // 3 + a.shape[1])))
        elif short.startswith('blocks.') and leaf == 'weight':
            uniform(name, a, math.sqrt(6. / (a.shape[0] + a.shape[1])))
        elif (short.startswith('head.') or name.startswith('predictor.')) and leaf == 'weight':
            uniform(name, a, 1. / math.sqrt(a.shape[1]))
    return out


# ----------------------------------------------------------------------------------------------
def check_run(run, n_steps=2, free_run=False, with_f64=True, iters_per_epoch=None, log=print, show=20, noise_runs=2):
    """Returns (exit code, report dict)."""
    if not os.path.isdir(run):
        raise BadInput('%s: no such run folder' % run)
    cfg = load_config(run)
    metrics = load_metrics(run)
    if iters_per_epoch is None and cget(cfg, 'data.train_size', None) is None:
        for k, r in sorted(metrics.items()):
            ep = to_num(r.get('epoch'))
            if k > 0 and ep:
                iters_per_epoch = int(round(k / ep))
                break
    args = Args(cfg, iters_per_epoch)
    if not args.iters_per_epoch:
        raise BadInput('iters per epoch unknown: data.train_size is null and metrics.jsonl has no epoch; pass --iters-per-epoch')
    views, _ = read_safetensors(os.path.join(run, 'views.safetensors'))
    for s in range(n_steps):
        for v in ('x1', 'x2'):
            if 'step%d.%s' % (s, v) not in views:
                raise BadInput('views.safetensors has no step%d.%s (train with --dump-views %d)' % (s, v, n_steps))
    for k in range(n_steps + 1):
        if not os.path.isdir(step_dir(run, k)):
            raise BadInput('%s: missing (train with --set train.checkpoint_every=1 --set train.max_steps=%d)' % (step_dir(run, k), n_steps))

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    model32 = build_model(args)
    model32.train()
    opt32 = build_optimizer(args, model32)
    model64 = opt64 = None
    if with_f64:
        model64 = copy.deepcopy(model32).double()
        model64.train()
        opt64 = build_optimizer(args, model64)

    report = dict(run=os.path.abspath(run), optimizer=args.optimizer, patch_proj=args.patch_proj, free_run=free_run,
                  thresholds=dict(loss_rtol=LOSS_RTOL, update_rtol=UPDATE_RTOL, ulps=ULPS, noise_factor=NOISE_FACTOR,
                                  schedule_rtol=SCHEDULE_RTOL),
                  steps=[], problems=[])
    log('moco3 run %s: %s, %s patch projection, %s, batch %d, lr %.4g (base %.4g), %d iters/epoch; %s' % (
        run, 'ViT dim %d depth %d heads %d patch %d img %d' % (args.dim, args.depth, args.heads, args.patch_size, args.image_size),
        args.patch_proj, args.optimizer, args.batch_size, args.lr, args.base_lr, args.iters_per_epoch,
        'free run from step 0' if free_run else 'each step from moco3\'s checkpoint of the step before'))
    n_trainable = sum(p.numel() for p in model32.parameters() if p.requires_grad)
    log('official model: %d tensors in the state dict, %d trainable parameters' % (len(model32.state_dict()), n_trainable))

    all_ok = True
    for s in range(n_steps):
        k = s + 1
        step_rep = dict(step=k, problems=[], warnings=[])
        if s == 0 or not free_run:
            sd, slots, st = load_checkpoint(run, s)
            if s == 0:
                inits = init_checks(sd, model32, args)
                report['init'] = inits
                bad_init = [c for c in inits if not c['ok']]
                log('initial weights (step 0) vs the official init: %d tensors checked, %s' % (
                    len(inits), '%d FAIL' % len(bad_init) if bad_init else 'all as the official code makes them'))
                for c in bad_init:
                    log('  FAIL %s: %s' % (c['name'], c['detail']))
                if bad_init:
                    all_ok = False
            probs = load_into(model32, opt32, sd, slots, st.get('optimizer'), args, torch.float32)
            if with_f64:
                probs += load_into(model64, opt64, sd, slots, st.get('optimizer'), args, torch.float64)
            if probs:
                step_rep['problems'] += sorted(set('step-%d: %s' % (s, p) for p in probs))
                report['steps'].append(step_rep)
                all_ok = False
                for p in step_rep['problems']:
                    log('  FAIL ' + p)
                break
        lr, m = schedule(args, s)
        x1 = torch.from_numpy(views['step%d.x1' % s].astype(np.float32))
        x2 = torch.from_numpy(views['step%d.x2' % s].astype(np.float32))
        for x in (x1, x2):
            if tuple(x.shape) != (args.batch_size, 3, args.image_size, args.image_size):
                raise BadInput('views step%d: shape %s, expected [%d,3,%d,%d]' % (s, shape_str(x.shape), args.batch_size, args.image_size, args.image_size))
        before = snapshot(model32, opt32, args)
        pre = copy.deepcopy((model32, opt32)) if with_f64 and noise_runs else None
        loss32 = train_step(model32, opt32, x1, x2, lr, m)
        after32 = snapshot(model32, opt32, args)
        loss64 = after64 = None
        noise32 = {}
        if with_f64:
            loss64 = train_step(model64, opt64, x1.double(), x2.double(), lr, m)
            after64 = snapshot(model64, opt64, args)
            # float32 spread: this run and runs on the batch in other orders (the same step in exact
            # arithmetic, other summation orders), each against float64
            f32_runs = [after32]
            gen = torch.Generator().manual_seed(1000 + s)
            for _ in range(noise_runs):
                perm = torch.randperm(x1.shape[0], generator=gen)
                mc, oc = copy.deepcopy(pre)
                train_step(mc, oc, x1[perm], x2[perm], lr, m)
                f32_runs.append(snapshot(mc, oc, args))
            for key, t64 in after64.items():
                if t64.dtype != np.int64 and t64.size:
                    noise32[key] = np.max([np.abs(r[key] - t64) for r in f32_runs], axis=0)

        sd_k, slots_k, st_k = load_checkpoint(run, k)
        rows, probs, tols = compare(before, after32, noise32, sd_k, slots_k, after64)
        step_rep['_tol'] = tols
        step_rep['problems'] += probs

        # loss, schedule, step counters
        row = metrics.get(k, {})
        loss_m = to_num(row.get('loss'))
        step_rep.update(lr=lr, momentum=m, loss_torch=loss32, loss_torch64=loss64, loss_moco3=loss_m)
        if loss_m is None:
            step_rep['warnings'].append('loss not checked: metrics.jsonl has no loss for step %d (train with --set train.log_every=1)' % k)
            loss_rel = None
        else:
            loss_rel = abs(loss_m - loss32) / max(abs(loss32), TINY)
            if not loss_rel <= LOSS_RTOL:
                step_rep['problems'].append('loss %.9g vs official %.9g: rel err %.2e > %.0e' % (loss_m, loss32, loss_rel, LOSS_RTOL))
        step_rep['loss_rel_err'] = loss_rel
        for key, ours in (('lr', lr), ('momentum', m)):
            theirs = to_num(row.get(key))
            if theirs is not None and not abs(theirs - ours) <= SCHEDULE_RTOL * max(abs(ours), TINY):
                step_rep['problems'].append('%s of step %d: moco3 %.12g, official schedule %.12g' % (key, k, theirs, ours))
        if st_k.get('step') is not None and st_k.get('step') != k:
            step_rep['problems'].append('step-%d/state.json: step %s' % (k, st_k.get('step')))
        ost = st_k.get('optimizer') or {}
        if args.optimizer in PER_PARAM_STEPS and isinstance(ost.get('steps'), dict):
            ours = opt_steps(model32, opt32)
            bad = sorted(n for n in set(ours) | set(ost['steps']) if ours.get(n) != ost['steps'].get(n))
            if bad:
                step_rep['problems'].append('optimizer step counts differ for %d params, e.g. %s: moco3 %s, official %s' % (
                    len(bad), bad[0], ost['steps'].get(bad[0]), ours.get(bad[0])))

        fails = [r for r in rows if not r['ok']]
        step_rep['tensors'] = rows
        step_rep['n_tensors'] = len(rows)
        step_rep['n_fail'] = len(fails)
        # diff/upd is meaningful where the update is resolved (>= 100 ulp of the tensor), over the elements
        # whose float32 spread is < 1e-4 of the update: near-zero gradients (exactly zero for the key third
        # of qkv.bias and the final norm.bias) turn noise into O(lr) AdamW steps
        clean = [r for r in rows if not r['exact'] and r['upd'] >= 100 * EPS32 * r['amax']]
        wr = max(clean, key=lambda r: r['rel_calm'], default=None)
        wt = max((r for r in rows if not r['exact']), key=lambda r: r['ratio'], default=None)
        step_rep['worst'] = rows[0]['name'] if rows else None
        step_rep['max_rel_to_update'] = wr['rel_calm'] if wr else 0.0
        step_rep['max_rel_to_update_tensor'] = wr['name'] if wr else None
        step_rep['max_diff_over_tol'] = wt['ratio'] if wt else 0.0
        step_rep['max_diff_over_tol_tensor'] = wt['name'] if wt else None
        step_rep['noise_dominated'] = {r['name']: r['n_noisy'] for r in clean if r['n_noisy']}
        ok = not fails and not step_rep['problems']
        step_rep['ok'] = ok
        all_ok &= ok
        report['steps'].append(step_rep)

        log('')
        log('step %d (iteration %d): lr %.6g, m %.8f' % (k, s, lr, m))
        if loss_m is not None:
            log('  loss: moco3 %.9g, torch %.9g (float64 %s): rel err %.2e  [%s, limit %.0e]' % (
                loss_m, loss32, '%.9g' % loss64 if loss64 is not None else '-', loss_rel,
                'ok' if loss_rel <= LOSS_RTOL else 'FAIL', LOSS_RTOL))
        log('  %-54s %-12s %9s %9s %9s %9s %9s %8s' % ('tensor (worst first)', 'shape', 'max|upd|', 'max|diff|', 'diff/upd',
                                                      'f32 noise', 'tol', 'diff/tol'))
        for r in rows[:show] if show else rows:
            label = '[%s] %s' % (r['kind'], r['name'])
            log('  %-54s %-12s %9.2e %9.2e %9.2e %9s %9.2e %8s %s' % (
                label if len(label) <= 54 else label[:10] + '...' + label[-41:],
                shape_str(r['shape']), r['upd'], r['diff'], r['rel'], 'exact' if r['exact'] else '%.2e' % r['noise'], r['tol'],
                ('%.3f' % r['ratio'] if math.isfinite(r['ratio']) else 'inf'),
                'ok' if r['ok'] else 'FAIL'))
        if show and len(rows) > show:
            rest_fail = sum(1 for r in rows[show:] if not r['ok'])
            log('  ... %d more tensors, %s' % (len(rows) - show, '%d of them FAIL' % rest_fail if rest_fail else 'all within tolerance'))
        log('  %d tensors compared (%d params, %d BN buffers, %d optimizer slots): %s' % (
            len(rows), sum(r['kind'] == 'param' for r in rows), sum(r['kind'] == 'buffer' for r in rows),
            sum(r['kind'] == 'slot' for r in rows), '%d over tolerance' % len(fails) if fails else 'all within tolerance'))
        log('  worst diff/tol %.3f (%s); worst diff/upd where the update is resolved %.2e (%s)' % (
            step_rep['max_diff_over_tol'], step_rep['max_diff_over_tol_tensor'], step_rep['max_rel_to_update'],
            step_rep['max_rel_to_update_tensor']))
        nd = step_rep['noise_dominated']
        if nd:
            log('  %d elements of %d tensors where float32 alone moves the result by > 1e-4 of the update (near-zero gradients, '
                'rounding of small updates; judged by the noise term, left out of diff/upd): %s' % (
                    sum(nd.values()), len(nd), ', '.join('%s (%d)' % kv for kv in sorted(nd.items(), key=lambda kv: -kv[1])[:6]) + (', ...' if len(nd) > 6 else '')))
        for p in step_rep['problems']:
            log('  FAIL ' + p)
        for w in step_rep['warnings']:
            log('  note: ' + w)

    report['ok'] = bool(all_ok)
    unchecked = [st['step'] for st in report['steps'] if st.get('warnings')]
    log('')
    log('verdict: %s%s' % ('moco3 AGREES with the official PyTorch code' if all_ok else 'moco3 DISAGREES with the official PyTorch code',
                           ' (loss of step %s not checked)' % ', '.join(map(str, unchecked)) if unchecked else ''))
    return (EXIT_OK if all_ok else EXIT_DISAGREE), report


# ----------------------------------------------------------------------------------------------
# self-test: fabricate run folders with this file's model (as moco3 would write them) and check them
SELFTEST_CFG = {
    'seed': 0,
    'data': {'name': 'synthetic', 'image_size': 16, 'train_size': 256},
    'model': {'arch': 'vit-smoke', 'patch_size': 4, 'dim': 16, 'depth': 2, 'heads': 2, 'mlp_ratio': 2, 'patch_proj': 'learned'},
    'moco': {'temperature': 0.2, 'momentum': 0.99, 'momentum_schedule': 'cosine', 'proj_hidden': 64, 'proj_dim': 32, 'pred_hidden': 64},
    'optim': {'name': 'adamw', 'base_lr': 1.5e-3, 'weight_decay': 0.1, 'batch_size': 64, 'epochs': 8, 'warmup_epochs': 0,
              'betas': [0.9, 0.999], 'eps': 1e-8, 'momentum': 0.9, 'trust_coefficient': 0.001,
              'lamb_exclude_bias_norm': False, 'max_grad_norm': None},
    'train': {'shuffle': False, 'max_steps': 2, 'checkpoint_every': 1, 'log_every': 1},
}


def _dump_yaml(d, indent=0):
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(' ' * indent + '%s:' % k)
            out.append(_dump_yaml(v, indent + 2))
        elif isinstance(v, list):
            out.append(' ' * indent + '%s:' % k)
            out.extend(' ' * (indent + 2) + '- %s' % json.dumps(x) for x in v)
        else:
            out.append(' ' * indent + '%s: %s' % (k, 'null' if v is None else json.dumps(v) if isinstance(v, (bool, str)) else repr(v)))
    return '\n'.join(out)


def _write_ckpt(run, k, model, optimizer, args):
    d = step_dir(run, k)
    os.makedirs(d, exist_ok=True)
    sd = {n: (t.detach().numpy().astype(np.int64) if t.dtype == torch.int64 else t.detach().numpy().astype(np.float32))
          for n, t in model.state_dict().items()}
    write_safetensors(os.path.join(d, 'model.safetensors'), sd, {'format': 'pt', 'step': k})
    snap = snapshot(model, optimizer, args)
    write_safetensors(os.path.join(d, 'optimizer.safetensors'),
                      {n: a.astype(np.float32) for (kind, n), a in snap.items() if kind == 'slot'}, {'format': 'pt'})
    ost = {'name': args.optimizer, 'stepCount': k}
    if args.optimizer in PER_PARAM_STEPS:
        ost['steps'] = opt_steps(model, optimizer)
    with open(os.path.join(d, 'state.json'), 'w') as f:
        json.dump({'step': k, 'optimizer': ost}, f)


def fabricate(run, cfg, variant='exact', n_steps=2):
    """A run folder as moco3 would write it, from this file's model. variant: exact | f64 (computed in float64,
    stored as float32) | perturb (one weight off by 5% of its update) | momentum-after (EMA after the optimizer
    step, the paper's pseudocode order) | biased-var (BN running_var from the biased variance) | pe-transposed
    (position embedding with rows and columns swapped)."""
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, 'config.yaml'), 'w') as f:
        f.write(_dump_yaml(cfg) + '\n')
    args = Args(cfg)
    torch.manual_seed(cfg['seed'])
    model = build_model(args)
    model.train()
    if variant == 'pe-transposed':
        g = args.image_size // args.patch_size
        with torch.no_grad():
            for enc in (model.base_encoder, model.momentum_encoder):
                pe = enc.pos_embed.data
                pe[0, 1:] = pe[0, 1:].reshape(g, g, -1).transpose(0, 1).reshape(g * g, -1).clone()
    gen = torch.Generator().manual_seed(1234)
    views = {'step%d.%s' % (s, v): torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen)
             for s in range(n_steps) for v in ('x1', 'x2')}
    write_safetensors(os.path.join(run, 'views.safetensors'), {k: v.numpy() for k, v in views.items()}, {'steps': n_steps})
    opt = build_optimizer(args, model)
    _write_ckpt(run, 0, model, opt, args)
    dtype = torch.float64 if variant == 'f64' else torch.float32
    if variant == 'f64':
        model = model.double()
        opt = build_optimizer(args, model)
    if variant == 'biased-var':
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.forward = partial(_bn_biased_running_var, mod)
    rows = []
    for s in range(n_steps):
        lr, m = schedule(args, s)
        x1, x2 = views['step%d.x1' % s].to(dtype), views['step%d.x2' % s].to(dtype)
        if variant == 'momentum-after':
            for g in opt.param_groups:
                g['lr'] = lr
            loss = model.contrastive_loss(model.predictor(model.base_encoder(x1)), model.momentum_encoder(x2).detach()) + \
                model.contrastive_loss(model.predictor(model.base_encoder(x2)), model.momentum_encoder(x1).detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
            model._update_momentum_encoder(m)
            loss = loss.item()
        else:
            loss = train_step(model, opt, x1, x2, lr, m)
        if variant == 'perturb' and s == 0:
            with torch.no_grad():
                w = model.base_encoder.blocks[1].mlp.fc1.weight
                w[0, 0] += 0.05 * lr
        _write_ckpt(run, s + 1, model, opt, args)
        rows.append({'step': s + 1, 'epoch': (s + 1) / args.iters_per_epoch, 'lr': lr, 'momentum': m, 'loss': loss})
    with open(os.path.join(run, 'metrics.jsonl'), 'w') as f:
        for r in rows:
            f.write(json.dumps(r) + '\n')


def _bn_biased_running_var(bn, x):
    # BatchNorm1d train forward with running_var updated from the biased variance
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    with torch.no_grad():
        bn.running_mean.mul_(1 - bn.momentum).add_(mean.detach(), alpha=bn.momentum)
        bn.running_var.mul_(1 - bn.momentum).add_(var.detach(), alpha=bn.momentum)
        bn.num_batches_tracked.add_(1)
    y = (x - mean) / torch.sqrt(var + bn.eps)
    return y * bn.weight + bn.bias if bn.affine else y


def self_test():
    cases = []
    for opt in ('adamw', 'lars', 'lamb', 'sgd'):
        for proj in ('learned', 'frozen'):
            for variant, want in (('exact', EXIT_OK), ('f64', EXIT_OK)):
                cases.append((opt, proj, variant, want))
    for variant in ('perturb', 'momentum-after', 'biased-var', 'pe-transposed'):
        cases.append(('adamw', 'frozen', variant, EXIT_DISAGREE))
    root = tempfile.mkdtemp(prefix='torchref-selftest-')
    bad = 0
    try:
        for opt, proj, variant, want in cases:
            cfg = copy.deepcopy(SELFTEST_CFG)
            cfg['optim']['name'] = opt
            cfg['model']['patch_proj'] = proj
            if opt == 'lars':
                cfg['optim'].update(base_lr=0.3, weight_decay=1e-6)
            if opt == 'lamb':
                cfg['optim'].update(base_lr=5e-4, weight_decay=1e-3)
            if opt == 'sgd':
                cfg['optim'].update(base_lr=0.1, weight_decay=1e-4)
            run = os.path.join(root, '%s-%s-%s' % (opt, proj, variant))
            fabricate(run, cfg, variant)
            code, rep = check_run(run, 2, log=lambda *a: None)
            worst = max((st.get('max_rel_to_update', 0) for st in rep['steps']), default=0)
            wtol = max((st.get('max_diff_over_tol', 0) for st in rep['steps']), default=0)
            nfail = sum(st.get('n_fail', 0) for st in rep['steps'])
            line = '%-6s %-8s %-15s exit %d (want %d), diff/upd %.1e, diff/tol %.2f, %d over tol, loss rel %s' % (
                opt, proj, variant, code, want, worst, wtol, nfail,
                ', '.join('%.1e' % st['loss_rel_err'] if st.get('loss_rel_err') is not None else '-' for st in rep['steps']))
            print(('ok   ' if code == want else 'BAD  ') + line)
            bad += code != want
        # bad input: a folder without checkpoints
        empty = os.path.join(root, 'empty')
        os.makedirs(empty)
        with open(os.path.join(empty, 'config.yaml'), 'w') as f:
            f.write(_dump_yaml(SELFTEST_CFG) + '\n')
        try:
            check_run(empty, 2, log=lambda *a: None)
            print('BAD  a run without checkpoints was accepted')
            bad += 1
        except BadInput as e:
            print('ok   bad input rejected: %s' % e)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print('%d passed, %d failed' % (len(cases) + 1 - bad, bad))
    return EXIT_OK if bad == 0 else EXIT_DISAGREE


FIXTURE_CFG = copy.deepcopy(SELFTEST_CFG)
FIXTURE_CFG['data'].update(image_size=8, train_size=32)
FIXTURE_CFG['model'].update(arch='vit-test', patch_size=4, dim=8, depth=2, heads=2, mlp_ratio=2)
FIXTURE_CFG['moco'].update(proj_hidden=16, proj_dim=8, pred_hidden=16)
FIXTURE_CFG['optim'].update(base_lr=0.05, batch_size=8)


FIXTURE_RUNS = {
    'learned': {'model': {'patch_proj': 'learned'}},
    'frozen': {'model': {'patch_proj': 'frozen'}},
    # plain SGD (no momentum, no weight decay: each update is -lr x the gradient, so the raw gradients are
    # compared) inside the lr warmup (step 1 at lr 0, step 2 at a quarter of the warmup's lr)
    'sgd-warmup': {'optim': {'name': 'sgd', 'momentum': 0.0, 'weight_decay': 0.0, 'warmup_epochs': 1, 'base_lr': 4.0}},
}


def _up32(a):
    """float64 tolerances as float32 values no smaller (the Node test reads F32)."""
    a32 = np.asarray(a, dtype=np.float64).astype(np.float32)
    return np.where(a32.astype(np.float64) < a, np.nextafter(a32, np.float32(np.inf)), a32).astype(np.float32)


def write_fixture(root):
    """Tiny official runs (learned and frozen patch projection with AdamW, SGD in the warmup; 2 steps each) plus
    expected.json and tolerance.safetensors (each element's tolerance), for a Node test that needs no Python."""
    for label, over in FIXTURE_RUNS.items():
        cfg = copy.deepcopy(FIXTURE_CFG)
        for section, kv in over.items():
            cfg[section].update(kv)
        run = os.path.join(root, label)
        shutil.rmtree(run, ignore_errors=True)
        fabricate(run, cfg, 'exact')
        code, rep = check_run(run, 2, log=lambda *a: None)
        if code != EXIT_OK:
            raise RuntimeError('fixture %s does not check against itself' % run)
        steps = []
        per_element = {}
        for st in rep['steps']:
            steps.append({'step': st['step'], 'lr': st['lr'], 'momentum': st['momentum'], 'loss': st['loss_torch'],
                          'loss_rtol': LOSS_RTOL,
                          'tol': {('%s:%s' % ('slot' if r['kind'] == 'slot' else 'model', r['name'])): r['tol'] for r in st['tensors']}})
            for (kind, name), t in st['_tol'].items():
                per_element['step%d/%s:%s' % (st['step'], kind, name)] = _up32(t)
        write_safetensors(os.path.join(run, 'tolerance.safetensors'), per_element)
        with open(os.path.join(run, 'expected.json'), 'w') as f:
            json.dump({'about': 'written by tools/torch_reference.py --write-fixture; each element\'s tolerance (tolerance.safetensors) '
                                'is max(1e-3 x the tensor\'s largest update, 4 ulp of its largest value, 10 x that element\'s float32 noise); '
                                'tol here: the largest of a tensor\'s (integer buffers: 0, exact)',
                       'torch': torch.__version__, 'config': cfg, 'steps': steps}, f, indent=1, sort_keys=True)
            f.write('\n')
        print('wrote %s' % run)
    return EXIT_OK


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        # '_' keys hold arrays for the fixture writer, not the report
        return {k: _jsonable(v) for k, v in x.items() if not str(k).startswith('_')}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def main(argv=None):
    ap = argparse.ArgumentParser(description='Check a moco3 run folder against the official MoCo v3 code in PyTorch.')
    ap.add_argument('run', nargs='?', help='run folder (config.yaml, checkpoints/step-*, views.safetensors, metrics.jsonl)')
    ap.add_argument('--steps', type=int, default=2, help='optimizer steps to check (default 2)')
    ap.add_argument('--json', action='store_true', help='print one JSON report instead of the tables')
    ap.add_argument('--free-run', action='store_true', help='continue PyTorch\'s own trajectory instead of restarting each step from moco3\'s checkpoint')
    ap.add_argument('--no-f64', action='store_true', help='skip the float64 run that measures float32 noise')
    ap.add_argument('--noise-runs', type=int, default=2, help='extra float32 runs on the batch in other orders to measure float32 noise (default 2)')
    ap.add_argument('--iters-per-epoch', type=int, default=None, help='when data.train_size is null in config.yaml')
    ap.add_argument('--all', action='store_true', help='list every tensor, not only the worst 20')
    ap.add_argument('--self-test', action='store_true', help='check fabricated runs: exact and float64 ones must agree, broken ones must not')
    ap.add_argument('--write-fixture', metavar='DIR', help='write the tiny official runs of test/torchref (learned/, frozen/) to DIR')
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()
    if a.write_fixture:
        return write_fixture(a.write_fixture)
    if not a.run:
        ap.print_usage(sys.stderr)
        sys.stderr.write('torch_reference: give a run folder (or --self-test)\n')
        return EXIT_BAD_INPUT
    if a.steps < 1:
        sys.stderr.write('torch_reference: --steps must be >= 1\n')
        return EXIT_BAD_INPUT
    log = (lambda *x: None) if a.json else print
    try:
        code, rep = check_run(a.run, a.steps, free_run=a.free_run, with_f64=not a.no_f64, iters_per_epoch=a.iters_per_epoch,
                              log=log, show=0 if a.all else 20, noise_runs=max(0, a.noise_runs))
    except BadInput as e:
        if a.json:
            print(json.dumps({'ok': False, 'error': str(e)}))
        sys.stderr.write('torch_reference: %s\n' % e)
        return EXIT_BAD_INPUT
    if a.json:
        print(json.dumps(_jsonable(rep)))
    return code


if __name__ == '__main__':
    sys.exit(main())
