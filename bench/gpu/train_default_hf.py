#!/usr/bin/env python3
"""train_default_hf.py: the PyTorch peer of scripts/gpu_default_model.sh (issue 21): Hugging Face's
Gemma3ForCausalLM built from the same config.json, trained on the same token file with the same
recipe as `gemma3 train`: random windows of T+1 tokens, mean next-token cross-entropy, AdamW
(fused; betas 0.9/0.95, eps 1e-8, decoupled weight decay 0.1 on matrices only, never on norms
or the embedding), global gradient-norm clip 1.0, the same warmup-stable-decay schedule, f32
master weights under bf16 autocast, torch.compile. Stops at --steps or at --max-seconds of
training: once its speed is known (30 steps after the compiled first one), the run is
shortened if --steps would not fit --max-seconds, so that its decay still ends the run (the
summary says how many steps it took).

Then: the model saved as a bf16 Hub folder (--out), and held-out nats per token by `gemma3 perplexity`'s definition (chunks of --ctx tokens from
`gemma3 tokenize --file --no-bos`, <bos> in place of each chunk's first token, the second half
scored), in f32; `gemma3 perplexity` also scores the saved folder: the two must agree (the
same weights through two implementations, up to bf16 rounding of the saved copy).

Writes --log (JSON lines: step, loss, lr, tokens/s) and prints `HF ...` summary lines.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--model-dir", required=True, help="folder with config.json, tokenizer.json (ours, the same shape)")
ap.add_argument("--data", required=True, help="gemma3 token file (G3TOKENS)")
ap.add_argument("--eval-ids", required=True, help="comma-separated ids of the held-out text (gemma3 tokenize --no-bos)")
ap.add_argument("--out", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--steps", type=int, required=True)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--seq", type=int, default=512)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--warmup", type=int, default=100)
ap.add_argument("--decay-steps", type=int, default=0)
ap.add_argument("--min-lr-ratio", type=float, default=0.1)
ap.add_argument("--wd", type=float, default=0.1)
ap.add_argument("--clip", type=float, default=1.0)
ap.add_argument("--max-seconds", type=float, default=1e9)
ap.add_argument("--ctx", type=int, default=512)
ap.add_argument("--log-every", type=int, default=10)
ap.add_argument("--no-compile", action="store_true")
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()

dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(a.seed)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
t_start = time.time()

# --- data: the token file's header (src/train/data.h), then u32 ids
with open(a.data, "rb") as f:
    head = f.read(64)
    assert head[:8] == b"G3TOKENS", f"{a.data}: not a gemma3 token file"
    ntok, = struct.unpack_from("<Q", head, 24)
    off, = struct.unpack_from("<I", head, 36)
    f.seek(off)
    raw = f.read(4 * ntok)
tokens = torch.frombuffer(bytearray(raw), dtype=torch.int32).to(dev)
del raw
B, T = a.batch, a.seq
ar = torch.arange(T + 1, device=dev)
gen = torch.Generator(device=dev)
gen.manual_seed(a.seed)


def batch():
    s = torch.randint(0, ntok - T - 1, (B,), device=dev, generator=gen)
    w = tokens[s[:, None] + ar].long()
    return w[:, :-1], w[:, 1:]


# --- the model, from our config.json (transformers reads its legacy RoPE keys, as in
# tests/ref/check_default_model_hf.py)
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

cfg = AutoConfig.from_pretrained(a.model_dir)
try:
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
except (TypeError, ValueError) as e:
    print(f"HF: from_config(attn_implementation='sdpa') refused ({e}); the default attention", flush=True)
    model = AutoModelForCausalLM.from_config(cfg)
model = model.to(dev).float().train()  # f32 master weights whatever the config's dtype says
rope = {k: v for k, v in cfg.to_dict().items() if "rope" in k or k in ("sliding_window", "layer_types")}
print(f"HF model: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters, attention "
      f"{getattr(getattr(model, 'config', None), '_attn_implementation', '?')}; {json.dumps(rope, default=str)}", flush=True)

decay, no_decay = [], []
for n, p in model.named_parameters():
    (decay if p.dim() >= 2 and "embed" not in n else no_decay).append(p)
groups = [{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}]
opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True) if dev == "cuda" else \
    torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
total = a.steps
dfrac = (a.decay_steps if a.decay_steps > 0 else a.steps // 5) / a.steps
dsteps = max(1, round(dfrac * total))


def lr_at(step):  # src/train/schedule.c, wsd
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    start = total - dsteps
    if step < start:
        return a.lr
    prog = min(1.0, (step - start + 1) / dsteps)
    return a.lr - (a.lr - a.lr * a.min_lr_ratio) * prog


def loss_fn(m, x, y):
    with torch.autocast(device_type="cuda" if dev == "cuda" else "cpu", dtype=torch.bfloat16):
        logits = m(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))


fwd = model if a.no_compile else torch.compile(model)
log = open(a.log, "w")
sync = (lambda: torch.cuda.synchronize()) if dev == "cuda" else (lambda: None)
t_train = time.time()
t_mark, tok_mark, first_done = None, 0, None
rates, step, steps_done = [], 0, 0
while step < total:
    for g in opt.param_groups:
        g["lr"] = lr_at(step)
    x, y = batch()
    loss = loss_fn(fwd, x, y)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip) if a.clip > 0 else torch.tensor(0.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    steps_done = step + 1
    if step == 0:
        sync()
        first_done = time.time()
        print(f"HF first step (compile included) {first_done - t_train:.1f} s", flush=True)
        t_mark, tok_mark = first_done, 0
    tok_mark += B * T
    if (step + 1) % a.log_every == 0 or step + 1 == total:
        lv = loss.item()  # syncs
        now = time.time()
        rate = tok_mark / max(now - t_mark, 1e-9) if step > 0 else 0.0
        if step + 1 > 2 * a.log_every:
            rates.append(rate)
        log.write(json.dumps({"step": step + 1, "loss": round(lv, 6), "lr": lr_at(step), "grad_norm": float(gn),
                              "tokens_per_s": round(rate, 1), "elapsed_s": round(now - t_train, 2)}) + "\n")
        log.flush()
        if (step + 1) % (a.log_every * 10) == 0:
            print(f"HF step {step + 1}/{total} loss {lv:.4f} lr {lr_at(step):.2e} {rate:.0f} tok/s", flush=True)
        t_mark, tok_mark = now, 0
        if now - t_train > a.max_seconds:
            print(f"HF stopped by the clock at step {step + 1} of {total} (the decay did not finish)", flush=True)
            break
    if step == 30 and first_done:  # plan the rest from the speed after the compiled first step
        sync()
        per = (time.time() - first_done) / 30
        fit = 31 + int((a.max_seconds - (time.time() - t_train)) / per)
        if fit < total:
            total = max(fit, a.warmup + 2)
            dsteps = max(1, round(dfrac * total))
            print(f"HF: {per * 1e3:.1f} ms a step: {a.steps} steps would not fit {a.max_seconds:.0f} s; "
                  f"planned {total} (same recipe, decay over the last {dsteps})", flush=True)
    step += 1
sync()
t_end = time.time()
rates.sort()
med = rates[len(rates) // 2] if rates else float("nan")
train_s = t_end - t_train
steady_s = t_end - (first_done or t_train)
print(f"HF trained {steps_done} steps, {steps_done * B * T} tokens in {train_s:.1f} s (first step incl. compile "
      f"{(first_done or t_end) - t_train:.1f} s); median {med:.0f} tok/s; overall after the first step "
      f"{(steps_done - 1) * B * T / max(steady_s, 1e-9):.0f} tok/s", flush=True)

# --- the model as a bf16 Hub folder, with our tokenizer
os.makedirs(a.out, exist_ok=True)
import copy  # noqa: E402
copy.deepcopy(model).to(torch.bfloat16).save_pretrained(a.out, safe_serialization=True)
for fn in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    if os.path.exists(os.path.join(a.model_dir, fn)):
        shutil.copy(os.path.join(a.model_dir, fn), os.path.join(a.out, fn))


def write_summary(npt, n):
    json.dump({"hf_steps": steps_done, "hf_tokens": steps_done * B * T, "hf_train_s": round(train_s, 1),
               "hf_first_step_s": round((first_done or t_end) - t_train, 1), "hf_median_tok_s": round(med),
               "hf_heldout_nats_per_token": npt, "hf_eval_tokens": n, "hf_total_s": round(time.time() - t_start, 1)},
              open(os.path.join(a.out, "hf_summary.json"), "w"))


write_summary(None, 0)  # in case the evaluation below does not finish

# --- held-out nats per token, gemma3 perplexity's chunks, f32
model.eval()
ids = [int(v) for v in open(a.eval_ids).read().strip().split(",") if v]
ctx, first, bos = a.ctx, a.ctx // 2, cfg.bos_token_id
nch = len(ids) // ctx
nll, n = 0.0, 0
with torch.no_grad():
    for c0 in range(0, nch, 32):
        rows = torch.tensor([ids[c * ctx:(c + 1) * ctx] for c in range(c0, min(nch, c0 + 32))], device=dev)
        rows[:, 0] = bos
        lg = model(input_ids=rows, use_cache=False).logits.float()
        lp = torch.log_softmax(lg[:, first:ctx - 1], -1)
        tg = rows[:, first + 1:ctx]
        nll -= lp.gather(-1, tg[..., None]).sum().item()
        n += tg.numel()
print(f"HF held-out (f32, its own code): chunks {nch} of {ctx}, tokens {n}, nats per token {nll / max(n, 1):.6f}", flush=True)

write_summary(round(nll / max(n, 1), 6), n)
print(f"HF done in {time.time() - t_start:.1f} s", flush=True)
