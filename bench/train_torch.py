#!/usr/bin/python3
# train_torch.py: the PyTorch peer of bench_train: the same Gemma 3 training step (forward,
# backward, AdamW) for the two shapes (vocab 8192, T 256), written out in plain torch
# ops so that it runs on Debian's python3-torch (1.13) without transformers. Embedding times
# sqrt(C), (1 + w) RMSNorm, QK-norm, RoPE (local base 1e4 on sliding layers, 1e6 on global
# ones, every 6th layer global), GQA, sliding window 128 as a plain masked softmax, GeGLU
# (tanh), post-norms, tied head, mean cross-entropy, AdamW (betas 0.9/0.95, wd 0.1).
# Prints one line per shape and precision: "TORCH shape=a dtype=f32 tok_s=... min=... max=...",
# the median over the timed steps after warm-up, and the median process CPU time of a step
# (with one thread, free of other tenants' time slices). bf16 autocast is very slow on CPUs
# without AVX512-BF16 (PyTorch 1.13 emulates it).
# Usage: train_torch.py [steps] [threads] [f32,bf16] [a,b]
import math
import sys
import time

import torch
import torch.nn.functional as F

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
DTYPES = sys.argv[3].split(",") if len(sys.argv) > 3 else ["f32", "bf16"]
ONLY = sys.argv[4].split(",") if len(sys.argv) > 4 else None  # shapes to run (default all)
torch.set_num_threads(THREADS)
V, T, W, EPS = 8192, 256, 128, 1e-6
SHAPES = {  # name: hidden, inter, layers, heads, kv heads, head_dim, batch
    "a": (256, 1024, 8, 4, 1, 64, 8),
    "b": (512, 2048, 8, 4, 2, 128, 4),
}


def rms(x, w):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS)
    return (y * (1.0 + w.float())).type_as(x)


def rope_tables(hd, base):
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    return ang.cos().float(), ang.sin().float()


def rope(x, cs):  # x [B, H, T, HD], rotate half
    cos, sin = cs
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


class Gemma3(torch.nn.Module):
    def __init__(self, C, Fd, L, NH, NKV, HD):
        super().__init__()
        self.C, self.NH, self.NKV, self.HD = C, NH, NKV, HD
        self.embed = torch.nn.Parameter(torch.randn(V, C) * 0.02)
        mk = lambda o, i: torch.nn.Parameter(torch.randn(o, i) * 0.02)
        zero = lambda n: torch.nn.Parameter(torch.zeros(n))
        self.layers = torch.nn.ModuleList()
        for i in range(L):
            m = torch.nn.Module()
            m.q, m.k, m.v, m.o = mk(NH * HD, C), mk(NKV * HD, C), mk(NKV * HD, C), mk(C, NH * HD)
            m.g, m.u, m.d = mk(Fd, C), mk(Fd, C), mk(C, Fd)
            m.n1, m.n2, m.n3, m.n4, m.qn, m.kn = zero(C), zero(C), zero(C), zero(C), zero(HD), zero(HD)
            m.sliding = (i + 1) % 6 != 0
            self.layers.append(m)
        self.norm = zero(C)
        t = torch.arange(T)
        d = t[:, None] - t[None, :]
        self.mask_global = torch.where(d >= 0, 0.0, float("-inf"))
        self.mask_local = torch.where((d >= 0) & (d < W), 0.0, float("-inf"))
        self.rope_local, self.rope_global = rope_tables(HD, 1e4), rope_tables(HD, 1e6)

    def forward(self, ids, tgt):
        B = ids.shape[0]
        NH, NKV, HD = self.NH, self.NKV, self.HD
        x = F.embedding(ids, self.embed) * math.sqrt(self.C)
        for m in self.layers:
            h = rms(x, m.n1)
            q = F.linear(h, m.q).view(B, T, NH, HD).transpose(1, 2)
            k = F.linear(h, m.k).view(B, T, NKV, HD).transpose(1, 2)
            v = F.linear(h, m.v).view(B, T, NKV, HD).transpose(1, 2)
            q, k = rms(q, m.qn), rms(k, m.kn)
            cs = self.rope_local if m.sliding else self.rope_global
            q, k = rope(q, cs), rope(k, cs)
            k = k.repeat_interleave(NH // NKV, 1)
            v = v.repeat_interleave(NH // NKV, 1)
            s = q @ k.transpose(-1, -2) * HD**-0.5 + (self.mask_local if m.sliding else self.mask_global)
            a = (torch.softmax(s.float(), -1).type_as(q) @ v).transpose(1, 2).reshape(B, T, NH * HD)
            x = x + rms(F.linear(a, m.o), m.n2)
            h = rms(x, m.n3)
            f = F.gelu(F.linear(h, m.g), approximate="tanh") * F.linear(h, m.u)
            x = x + rms(F.linear(f, m.d), m.n4)
        logits = F.linear(rms(x, self.norm), self.embed)
        return F.cross_entropy(logits.float().view(-1, V), tgt.view(-1))


def bench(name, dtype):
    C, Fd, L, NH, NKV, HD, B = SHAPES[name]
    torch.manual_seed(0)
    model = Gemma3(C, Fd, L, NH, NKV, HD)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "embed"]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and n != "embed")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    times, cpus = [], []
    for s in range(STEPS + 1):  # step 0 warms up
        ids = torch.randint(0, V, (B, T))
        tgt = torch.randint(0, V, (B, T))
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        if dtype == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(ids, tgt)
        else:
            loss = model(ids, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s > 0:
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    times.sort()
    cpus.sort()
    tps = [B * T / t for t in times]
    nparam = sum(p.numel() for p in model.parameters())
    print(f"TORCH shape={name} dtype={dtype} params={nparam} tok_s={B * T / times[len(times) // 2]:.1f} "
          f"min={min(tps):.1f} max={max(tps):.1f} cpu_ms={cpus[len(cpus) // 2] * 1e3:.0f} loss={loss.item():.4f}", flush=True)


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {STEPS} timed steps after 1 warm-up", flush=True)
    for name in SHAPES:
        if ONLY and name not in ONLY:
            continue
        for dtype in DTYPES:
            try:
                bench(name, dtype)
            except Exception as e:  # bf16 autocast may be missing on an old CPU build
                print(f"TORCH shape={name} dtype={dtype} failed: {e}", flush=True)
