#!/usr/bin/env python3
# gen_adamw_ref.py: the independent reference for tests/test_optim.c. Runs PyTorch's own
# torch.optim.AdamW (float64) with two parameter groups (weight decay on a matrix, none on an
# embedding and a norm, as our default), clipping by global gradient norm
# (torch.nn.utils.clip_grad_norm_) and a linear-warmup + cosine schedule set per step, over a
# fixed sequence of random gradients, and writes tests/data/adamw_ref.safetensors:
#   init.<name>          f32  initial parameters
#   grad<s>.<name>       f32  raw (unclipped) gradient given at step s
#   step<s>.<name>       f32  parameters after step s (computed in f64, rounded once)
#   lr, grad_norm        f64  [STEPS] learning rate used and pre-clip global norm at each step
#   hparams              f64  [lr, min_lr_ratio, warmup, steps, beta1, beta2, eps, wd, clip]
# Usage: python3 tests/ref/gen_adamw_ref.py --out tests/data/adamw_ref.safetensors
import argparse
import math

import torch
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()

STEPS, LR, MIN_RATIO, WARMUP = 6, 1e-2, 0.1, 2
B1, B2, EPS, WD, CLIP = 0.9, 0.95, 1e-8, 0.1, 1.0
shapes = {"w_mat": (4, 8), "embed": (16, 8), "norm": (8,)}
decay = {"w_mat": True, "embed": False, "norm": False}
# Gradient scale per step: the global norm is about this, so steps 1 and 3 are clipped.
gscale = [0.05, 3.0, 0.4, 8.0, 0.7, 0.2]
numel = sum(math.prod(s) for s in shapes.values())


def lr_at(s):  # our schedule, written out independently: s is the 0-based step being taken
    if s < WARMUP:
        return LR * (s + 1) / WARMUP
    prog = (s - WARMUP) / max(1, STEPS - WARMUP)
    return LR * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * prog)))


torch.manual_seed(1234)
out = {}
init = {n: torch.randn(s, dtype=torch.float32) for n, s in shapes.items()}
grads = [{n: torch.randn(s, dtype=torch.float32) * (gscale[k] / math.sqrt(numel)) for n, s in shapes.items()}
         for k in range(STEPS)]
params = {n: torch.nn.Parameter(init[n].double()) for n in shapes}
opt = torch.optim.AdamW(
    [{"params": [params[n] for n in shapes if decay[n]], "weight_decay": WD},
     {"params": [params[n] for n in shapes if not decay[n]], "weight_decay": 0.0}],
    lr=LR, betas=(B1, B2), eps=EPS, foreach=False)
lrs, norms = [], []
for s in range(STEPS):
    for n, p in params.items():
        p.grad = grads[s][n].double()
    norm = torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP)
    for g in opt.param_groups:
        g["lr"] = lr_at(s)
    opt.step()
    lrs.append(lr_at(s))
    norms.append(float(norm))
    for n, p in params.items():
        out[f"step{s}.{n}"] = p.detach().float().contiguous()
for n in shapes:
    out[f"init.{n}"] = init[n].contiguous()
    for s in range(STEPS):
        out[f"grad{s}.{n}"] = grads[s][n].contiguous()
out["lr"] = torch.tensor(lrs, dtype=torch.float64)
out["grad_norm"] = torch.tensor(norms, dtype=torch.float64)
out["hparams"] = torch.tensor([LR, MIN_RATIO, WARMUP, STEPS, B1, B2, EPS, WD, CLIP], dtype=torch.float64)
save_file(out, args.out, metadata={"torch": torch.__version__})
print("torch", torch.__version__, "lr", lrs, "grad_norm", norms)
print("wrote", args.out, len(out), "tensors")
