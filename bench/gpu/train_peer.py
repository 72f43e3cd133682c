#!/usr/bin/env python3
# train_peer.py: the PyTorch peer of `gemma3 train --device cuda` (issue 17): the same Gemma 3
# step (GemmaZero shape: hidden 768, MLP 3072, 6 layers, 6 query / 2 KV heads of 128, vocab
# 50,257, B 16 x T 1024) written in plain torch ops: embedding * sqrt(C), (1 + w) RMSNorm,
# QK-norm, RoPE (local 1e4 / global 1e6), GQA through scaled_dot_product_attention (causal; the
# window is T, so every layer is plain causal, as in our run), GeGLU (tanh), post-norms, tied
# head, mean cross-entropy, AdamW(fused, betas 0.9/0.95, wd 0.1), bf16 autocast. Eager and
# torch.compile. Prints "TORCH mode=... tok_s=<median> min=... max=... mem_gib=..." per mode.
# Usage: train_peer.py [steps] [modes: eager,compile] [B] [T]
import math, sys, time
import torch
import torch.nn.functional as F

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
MODES = sys.argv[2].split(",") if len(sys.argv) > 2 else ["eager", "compile"]
B = int(sys.argv[3]) if len(sys.argv) > 3 else 16
T = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
V, C, FF, L, NH, NKV, HD, EPS = 50257, 768, 3072, 6, 6, 2, 128, 1e-6
dev = "cuda"


def rms(x, w):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS) * (1.0 + w.float())).type_as(x)


def tables(base):
    inv = 1.0 / (base ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    return ang.cos().float().to(dev), ang.sin().float().to(dev)


def rope(x, cs):
    cos, sin = cs
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        p = lambda *s: torch.nn.Parameter(torch.randn(*s) * 0.02)
        z = lambda n: torch.nn.Parameter(torch.zeros(n))
        self.embed = p(V, C)
        self.lay = torch.nn.ModuleList()
        for _ in range(L):
            m = torch.nn.Module()
            m.q, m.k, m.v, m.o = p(NH * HD, C), p(NKV * HD, C), p(NKV * HD, C), p(C, NH * HD)
            m.g, m.u, m.d = p(FF, C), p(FF, C), p(C, FF)
            m.n1, m.n2, m.n3, m.n4, m.qn, m.kn = z(C), z(C), z(C), z(C), z(HD), z(HD)
            self.lay.append(m)
        self.nf = z(C)
        self.loc, self.glob = tables(1e4), tables(1e6)

    def forward(self, ids, tg):
        x = F.embedding(ids, self.embed) * math.sqrt(C)
        for i, m in enumerate(self.lay):
            cs = self.glob if (i + 1) % 6 == 0 else self.loc
            h = rms(x, m.n1)
            q = (h @ m.q.t()).view(B, T, NH, HD).transpose(1, 2)
            k = (h @ m.k.t()).view(B, T, NKV, HD).transpose(1, 2)
            v = (h @ m.v.t()).view(B, T, NKV, HD).transpose(1, 2)
            q, k = rope(rms(q, m.qn), cs), rope(rms(k, m.kn), cs)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=HD ** -0.5, enable_gqa=True)
            x = x + rms(a.transpose(1, 2).reshape(B, T, NH * HD) @ m.o.t(), m.n2)
            h = rms(x, m.n3)
            x = x + rms((F.gelu(h @ m.g.t(), approximate="tanh") * (h @ m.u.t())) @ m.d.t(), m.n4)
        logits = rms(x, self.nf) @ self.embed.t()
        return F.cross_entropy(logits.float().view(-1, V), tg.view(-1))


def run(mode):
    torch.manual_seed(0)
    model = Model().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    ids = torch.randint(0, V, (B, T), device=dev)
    tg = torch.randint(0, V, (B, T), device=dev)
    times = []
    torch.cuda.reset_peak_memory_stats()
    for s in range(STEPS + 5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(ids, tg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if s >= 5:
            times.append(time.perf_counter() - t0)
    tps = sorted(B * T / t for t in times)
    print(f"TORCH mode={mode} B={B} T={T} tok_s={tps[len(tps) // 2]:.0f} min={tps[0]:.0f} max={tps[-1]:.0f} "
          f"mem_gib={torch.cuda.max_memory_allocated() / 2**30:.2f} loss={loss.item():.4f}", flush=True)


for mode in MODES:
    run(mode)
