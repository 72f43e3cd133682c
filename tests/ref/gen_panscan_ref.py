#!/usr/bin/env python3
"""gen_panscan_ref.py OUT_DIR: the pan-and-scan reference for tests/test_vision_panscan.c, from
Hugging Face transformers' Gemma3ImageProcessor and Gemma3Processor (needs transformers >= 4.50,
numpy, Pillow, safetensors; no GPU, no model weights: the processor only).

Writes OUT_DIR/panscan.png (a deterministic 800x300 RGB picture), OUT_DIR/expected.safetensors
with pixel_values [1 + crops, 3, 896, 896] F32 and num_crops [1] I64 as the processor makes them
with do_pan_and_scan=True (its defaults: min crop 256, at most 4 crops, ratio 1.2), and
OUT_DIR/prompt.txt, the processor's text for the prompt "<start_of_image>Describe." (what it
writes around the crops, before each marker becomes the image's run).

Run it (lead, on a machine with transformers):
    python3 tests/ref/gen_panscan_ref.py tests/fixtures/panscan
then `make build/rel/tests/test_vision_panscan && build/rel/tests/test_vision_panscan`: the test
compares against the folder when it exists (1e-6 on pixel_values, the text exactly)."""
import os
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from transformers import Gemma3ImageProcessor

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/panscan"
os.makedirs(out, exist_ok=True)
# the same picture as the C test's picture(800, 300): byte i = (i * 7 + i / 3 * 13) mod 256
w, h = 800, 300
i = np.arange(w * h * 3, dtype=np.int64)
rgb = ((i * 7 + (i // 3) * 13) % 256).astype(np.uint8).reshape(h, w, 3)
Image.fromarray(rgb, "RGB").save(os.path.join(out, "panscan.png"))

proc = Gemma3ImageProcessor(do_pan_and_scan=True)
pic = Image.open(os.path.join(out, "panscan.png")).convert("RGB")
r = proc(images=[pic], return_tensors="np")
pv = np.asarray(r["pixel_values"], dtype=np.float32)
nc = np.asarray(r["num_crops"], dtype=np.int64).reshape(-1)
save_file({"pixel_values": pv, "num_crops": nc}, os.path.join(out, "expected.safetensors"))

# the processor's text around the crops (Gemma3Processor.__call__, without the tokenizer)
boi = "<start_of_image>"
prompt = boi + "Describe."
idx = prompt.index(boi)
n = int(nc[0])
text = f"Here is the original image {boi} and here are some crops to help you see better " + " ".join([boi] * n)
prompt = prompt[:idx] + text + prompt[idx + len(boi):]
with open(os.path.join(out, "prompt.txt"), "w") as f:
    f.write(prompt)
print(f"{out}: pixel_values {pv.shape}, num_crops {nc.tolist()}")
