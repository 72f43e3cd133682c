#!/usr/bin/env python3
"""vision_peer.py: the peer of bench_vision on the GPU: Hugging Face transformers' SiglipVisionModel
with Gemma 3 4B's tower shape (So400m/14 at 896 pixels, 27 layers, no pooling head; random weights
made on the GPU), seconds per 896x896 image at batch 1: bf16 (sdpa attention; the peer of our fast
mode) and f32 with TF32 off (the peer of our exact mode). Medians of REPEATS (default 5) after two
warm-up runs, timed with torch.cuda.synchronize. One summary line per result:
    vision: torch bf16 0.xxx s/image (median of 5; transformers X, torch Y)
Run by bench/gpu/vision_gpu.sh when torch and transformers import."""
import os
import statistics
import time

import torch
import transformers
from transformers import SiglipVisionConfig, SiglipVisionModel

reps = int(os.environ.get("REPEATS", "5"))
cfg = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=896,
                         patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=False)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
with torch.device("cuda"):
    model = SiglipVisionModel(cfg).eval()
for name, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
    m = model.to(dt)
    x = torch.randn(1, 3, 896, 896, device="cuda", dtype=dt)
    ts = []
    with torch.inference_mode():
        for i in range(reps + 2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            m(pixel_values=x)
            torch.cuda.synchronize()
            if i >= 2:
                ts.append(time.perf_counter() - t0)
    print(f"vision: torch {name} {statistics.median(ts):.3f} s/image (median of {reps}; {m.config._attn_implementation} attention; "
          f"transformers {transformers.__version__}, torch {torch.__version__})", flush=True)
