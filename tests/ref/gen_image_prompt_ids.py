#!/usr/bin/env python3
"""gen_image_prompt_ids.py MODEL_DIR [OUT.json]: the ids Hugging Face's Gemma3Processor writes
for prompts with images, to hold vision/prompt.c (g3_vision_encode_text, used by --prompt,
chat, analyze and the server) to them. MODEL_DIR is a Gemma 3 4B/12B/27B folder (or Hub id)
with its processor files (tokenizer, chat template, preprocessor_config.json); no weights are
read and no GPU is needed (transformers >= 4.50, Pillow).

Writes OUT.json (default tests/fixtures/image_prompt_ids.json): {"cases": [{"text": ...,
"images": n, "chat": bool, "ids": [...]}, ...]} where "text" is what gemma3 is given (a --prompt
text; for chat cases the user's text, the images as image parts before it) and "ids" the
processor's input_ids. tests/test_vision.c compares every case when the file exists.

    python3 tests/ref/gen_image_prompt_ids.py google/gemma-3-4b-it"""
import json
import sys

from PIL import Image
from transformers import AutoProcessor

src = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/image_prompt_ids.json"
proc = AutoProcessor.from_pretrained(src)
img = Image.new("RGB", (64, 48), (120, 30, 200))
cases = []
for text, n in [("Look: <start_of_image> What is it?", 1), ("<start_of_image><start_of_image>Compare them.", 2),
                ("Before\n\n<start_of_image>\n\nafter", 1), ("<start_of_image>", 1)]:
    ids = proc(text=text, images=[img] * n, return_tensors="np")["input_ids"][0].tolist()
    cases.append({"text": text, "images": n, "chat": False, "bos": True, "ids": ids})
for text, n in [("Describe the picture.", 1), ("Which is larger?", 2)]:
    msgs = [{"role": "user", "content": [{"type": "image"}] * n + [{"type": "text", "text": text}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    ids = proc(text=prompt, images=[img] * n, return_tensors="np", add_special_tokens=False)["input_ids"][0].tolist()
    cases.append({"text": text, "images": n, "chat": True, "prompt": prompt, "ids": ids})
with open(out, "w") as f:
    json.dump({"source": src, "cases": cases}, f)
print(f"{out}: {len(cases)} cases")
