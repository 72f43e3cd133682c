"""Checks that Hugging Face transformers loads checkpoints written by gemma3.c and computes
the same logits: a model exported by `gemma3 train` (bf16) and a sharded random checkpoint
from `gemma3 init` (f32, model.safetensors.index.json). Run on the GPU machine:

    python3 tests/ref/check_hf_load.py DIR_TRAINED LOGITS_TRAINED DIR_INIT LOGITS_INIT

Prints the relative error of each and exits non-zero above 1e-4 (f32 math on both sides).
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def check(model_dir, logits_path, ids):
    ours = load_file(logits_path)["logits"].double()
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].double()
    err = ((ours - ref).norm() / ref.norm()).item()
    same_argmax = bool((ours.argmax(-1) == ref.argmax(-1)).all())
    print(f"{model_dir}: {type(model).__name__}, logits rel err {err:.3e}, argmax equal: {same_argmax}")
    return err < 1e-4 and same_argmax


ok = check(sys.argv[1], sys.argv[2], [2, 1018, 3426, 496, 990, 236764, 1304, 10891, 236761])
ok &= check(sys.argv[3], sys.argv[4], [2, 17, 300, 45, 99, 12, 7, 8, 9, 10, 11, 500, 600, 700])
sys.exit(0 if ok else 1)
