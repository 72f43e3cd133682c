#!/usr/bin/env python3
"""The experiment's table (docs/lora.md) from bench/relora_experiment.sh's folder:

    python3 bench/relora_summary.py OUT

Per arm: validation loss at the end (and at the half), tokens, summed step time, peak RSS
(from ARM.log's /usr/bin/time line), the optimizer state the arm updates (8 bytes a trained
AdamW parameter plus the rank-1 state, from the memory lines of ARM.log), the mean effective
rank of W_t - W_0 over the layers at the end. Standard library only."""
import json, os, re, sys

out = sys.argv[1]
arms = ["full", "lora", "relora", "relora_warm", "rank1_svd", "rank1_random", "rank1_lora"]
print("| arm | val loss (half) | val loss (end) | tokens | step time (s) | peak RSS | optimizer state updated | erank of W_t - W_0 (mean over layers) |")
print("|---|---|---|---|---|---|---|---|")
for a in arms:
    mp = os.path.join(out, a, "metrics.jsonl")
    if not os.path.exists(mp):
        continue
    rows = [json.loads(l) for l in open(mp) if l.strip()]
    vals = [r for r in rows if "val_loss" in r]
    er = [r for r in rows if "update_erank" in r]
    t = sum((r["tokens"] - (rows[i - 1]["tokens"] if i else 0)) / r["tokens_per_s"] for i, r in enumerate(rows))
    log = open(os.path.join(out, a + ".log")).read()
    rss = re.search(r"peak RSS (\d+) KiB", log)
    # trained parameters: AdamW over the trained entries (all for full; the adapter + the rest for LoRA arms)
    n_all = re.search(r"train: (\d+) parameters", log)
    lora = re.search(r"(\d+) adapter parameters .*?(\d+) adapted weights .*?(\d+) other weights trained", log)
    r1 = re.search(r"rank-1 updates .*?of (\d+) linear weights: their optimizer state ([\d.]+) MiB instead of AdamW's ([\d.]+) MiB", log)
    if lora:
        opt = 8 * (int(lora.group(1)) + int(lora.group(3))) / 2**20
    elif r1:
        opt = 8 * int(n_all.group(1)) / 2**20 - float(r1.group(3)) + float(r1.group(2))
    else:
        opt = 8 * int(n_all.group(1)) / 2**20
    half = min(vals, key=lambda r: abs(r["step"] - rows[-1]["step"] / 2)) if vals else None
    e = sum(er[-1]["update_erank"]) / len(er[-1]["update_erank"]) if er else float("nan")
    print(f"| {a} | {half['val_loss']:.3f} | {vals[-1]['val_loss']:.3f} | {rows[-1]['tokens']} | {t:.0f} | "
          f"{int(rss.group(1)) / 1024:.0f} MiB | {opt:.1f} MiB | {e:.1f} |" if vals and rss else f"| {a} | incomplete |")
