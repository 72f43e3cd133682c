"""Checks the shipped default model (models/default) against Hugging Face transformers: the
folder loads as a Gemma3ForCausalLM, AutoTokenizer reads its trimmed tokenizer with the ids
gemma3.c gives, and the logits equal ours (`gemma3 forward --exact --save`, f32 math on both
sides from the same bf16 weights). Run on the GPU machine from the repository root:

    make -j && python3 tests/ref/check_default_model_hf.py > tests/ref/out/check_default_model_hf.txt

(the script runs ./gemma3 itself; pass a model folder as the first argument to check another).
Prints the relative error and exits non-zero above 1e-4 or on any other difference.
"""
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir = sys.argv[1] if len(sys.argv) > 1 else "models/default"
prompts = [
    "Once upon a time there was a little girl who lived in a village near the forest.",
    "\"Where are you going?\" asked the Rabbit. \"To the Queen's garden,\" said Alice, and she ran on.",
]

ok = True
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
print(f"{model_dir}: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters, vocabulary {len(tok)}")
for text in prompts:
    out = subprocess.run(["./gemma3", "tokenize", "--model", model_dir, "--text", text], check=True,
                         capture_output=True, text=True).stdout.strip()
    ours_ids = [int(x) for x in out.split(",")]
    hf_ids = tok(text).input_ids  # <bos> added, as ours
    same_ids = ours_ids == hf_ids
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "logits.safetensors")
        subprocess.run(["./gemma3", "forward", "--model", model_dir, "--ids", ",".join(map(str, ours_ids)), "--exact",
                        "--save", path], check=True, capture_output=True)
        ours = load_file(path)["logits"].double()
    with torch.no_grad():
        ref = model(torch.tensor([ours_ids])).logits[0].double()
    err = ((ours - ref).norm() / ref.norm()).item()
    same_argmax = bool((ours.argmax(-1) == ref.argmax(-1)).all())
    print(f"{len(ours_ids)} tokens: ids equal HF's: {same_ids}; logits rel err {err:.3e}; argmax equal: {same_argmax}")
    ok &= same_ids and err < 1e-4 and same_argmax

# greedy continuation, HF's generate against ours (shown, not judged: a near-tie may differ)
text = prompts[0]
ids = tok(text, return_tensors="pt").input_ids
with torch.no_grad():
    hf = model.generate(ids, max_new_tokens=20, do_sample=False, repetition_penalty=1.0)[0, ids.shape[1]:].tolist()
out = subprocess.run(["./gemma3", "generate", "--model", model_dir, "--ids", ",".join(map(str, ids[0].tolist())),
                      "--max-tokens", "20", "--temperature", "0", "--repeat-penalty", "1", "--exact", "--print-ids"],
                     check=True, capture_output=True, text=True).stdout
print(f"greedy: HF {hf}\n        ours: {out.strip()}")
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
