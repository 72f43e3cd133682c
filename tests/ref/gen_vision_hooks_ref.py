#!/usr/bin/env python3
"""gen_vision_hooks_ref.py [OUT_DIR]: transformers' per-layer values of the vision tower of
tests/fixtures/gemma3-tiny-vision, for tests/test_vision_hooks.c (needs torch, transformers >= 4.50,
safetensors; CPU is enough, float64).

Runs the fixture's SigLIP tower (Gemma3ForConditionalGeneration's vision_tower, eager attention)
on the fixture's own pixel_values with output_hidden_states and output_attentions, and writes
OUT_DIR/expected.safetensors (default tests/fixtures/gemma3-tiny-vision-hooks) with
  hidden_states.{0..L}  [NP, D]       0: the embeddings (patches + positions), i: layer i-1's output
  attentions.{0..L-1}   [NH, NP, NP]  each layer's softmax probabilities
  last_hidden_state     [NP, D]       after post_layernorm (= the fixture's vision_tower_out)
as float32. The test compares them (1e-5) with the hook sites vision.hook_embed,
vision.blocks.{i}.hook_resid_post and vision.blocks.{i}.attn.hook_pattern when the folder exists.

Run it (lead, on a machine with transformers):
    python3 tests/ref/gen_vision_hooks_ref.py
then `make build/rel/tests/test_vision_hooks && build/rel/tests/test_vision_hooks`."""
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import Gemma3ForConditionalGeneration

fx = "tests/fixtures/gemma3-tiny-vision"
out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gemma3-tiny-vision-hooks"
os.makedirs(out, exist_ok=True)
model = Gemma3ForConditionalGeneration.from_pretrained(fx, torch_dtype=torch.float64, attn_implementation="eager").eval()
pv = load_file(os.path.join(fx, "expected.safetensors"))["pixel_values"].to(torch.float64)
if pv.dim() == 3:
    pv = pv[None]
tower = model.vision_tower if hasattr(model, "vision_tower") else model.model.vision_tower
with torch.no_grad():
    r = tower(pixel_values=pv, output_hidden_states=True, output_attentions=True)
t = {}
for i, h in enumerate(r.hidden_states):
    t[f"hidden_states.{i}"] = h[0].to(torch.float32).contiguous()
for i, a in enumerate(r.attentions):
    t[f"attentions.{i}"] = a[0].to(torch.float32).contiguous()
t["last_hidden_state"] = r.last_hidden_state[0].to(torch.float32).contiguous()
ref = load_file(os.path.join(fx, "expected.safetensors"))["vision_tower_out"]
err = float((t["last_hidden_state"] - ref.reshape(t["last_hidden_state"].shape)).norm() / ref.norm())
save_file(t, os.path.join(out, "expected.safetensors"))
print(f"{out}: {len(r.hidden_states)} hidden states, {len(r.attentions)} attention maps; last_hidden_state vs the fixture's vision_tower_out rel err {err:.3g}")
