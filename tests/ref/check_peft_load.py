"""Checks that Hugging Face PEFT loads an adapter trained by `gemma3 train --lora` and computes
our logits. Run on the GPU machine (needs torch, transformers, peft, safetensors), from the
repository root, after `make`:

    sh tests/ref/check_peft_load.sh            # trains, runs our forward, then this script

or by hand:

    python3 tests/ref/check_peft_load.py MODEL_DIR ADAPTER_DIR OUR_LOGITS.safetensors 2,17,300,...

OUR_LOGITS is `gemma3 forward --model MODEL_DIR --adapter ADAPTER_DIR --ids IDS --exact --save`.
Loads the base in float64, applies the adapter with PeftModel.from_pretrained (unmerged, as we
apply it), and compares the logits. Also checks what the adapter files hold: every tensor name
matched a LoRA module (PEFT warns about, and ignores, keys it cannot place; we fail), shapes
[r, in] / [out, r], and that the adapter moved the logits away from the base's (a trained
adapter, not a zero one). Prints the numbers; exits non-zero above 1e-5 relative (f32 on our
side, f64 here).

Without the peft package (pip install peft), it says so and falls back to applying the adapter
by hand in transformers (W + scale * B @ A in float64 on the module each key names, scale =
lora_alpha / r, or / sqrt(r) with use_rslora): that still checks names, shapes and our logits,
but not PEFT's loader, and the output says "WITHOUT PEFT". Needs torch, transformers and
safetensors either way.
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

try:
    import peft
    from peft import PeftModel
except ImportError:
    peft = None

model_dir, adapter_dir, ours_path, ids_s = sys.argv[1:5]
ids = [int(x) for x in ids_s.split(",")]
cfg = json.load(open(f"{adapter_dir}/adapter_config.json"))
tensors = load_file(f"{adapter_dir}/adapter_model.safetensors")
r = cfg["r"]
shape_ok = all(t.shape[0] == r if k.endswith("lora_A.weight") else t.shape[1] == r for k, t in tensors.items())
names_ok = all(k.startswith("base_model.model.model.layers.") for k in tensors)

base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64, attn_implementation="eager")
base.eval()
with torch.no_grad():
    ref_base = base(torch.tensor([ids])).logits[0].double()
if peft is not None:
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    # Every tensor of the file must have been placed in a LoRA module.
    state = model.state_dict()
    placed = all(k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight") in state
                 for k in tensors)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].double()
    who = f"peft {peft.__version__}"
else:
    # By hand: each key names its module under the PeftModel prefix "base_model.model.".
    scale = cfg["lora_alpha"] / (r ** 0.5 if cfg.get("use_rslora") else r)
    placed = True
    with torch.no_grad():
        for k, a in tensors.items():
            if not k.endswith(".lora_A.weight"):
                continue
            mod = k[len("base_model.model."):-len(".lora_A.weight")]
            b = tensors.get(k.replace(".lora_A.weight", ".lora_B.weight"))
            try:
                lin = base.get_submodule(mod)
            except AttributeError:
                placed = False
                continue
            if b is None or lin.weight.shape != (b.shape[0], a.shape[1]):
                placed = False
                continue
            lin.weight += scale * (b.double() @ a.double())
        ref = base(torch.tensor([ids])).logits[0].double()
    who = "WITHOUT PEFT (not installed: adapter applied by hand)"
ours = load_file(ours_path)["logits"].double()
err = ((ours - ref).norm() / ref.norm()).item()
moved = ((ref - ref_base).norm() / ref_base.norm()).item()
print(f"{who}, transformers {__import__('transformers').__version__}: "
      f"{len(tensors)} adapter tensors, r={r}, alpha={cfg['lora_alpha']}, targets={cfg['target_modules']}")
print(f"names ok: {names_ok}, shapes ok: {shape_ok}, all placed: {placed}")
print(f"logits rel err ours vs PEFT: {err:.3e}; adapter moves the base logits by {moved:.3e} (relative)")
ok = names_ok and shape_ok and placed and err < 1e-5 and moved > 1e-4
print(("OK" if peft is not None else "OK WITHOUT PEFT (install peft for the real check)") if ok else "FAILED")
sys.exit(0 if ok else 1)
