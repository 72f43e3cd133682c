"""Checks a tokenizer written by `gemma3 tokenizer trim` with Hugging Face `tokenizers`
(a reference nobody here wrote): it loads, its ids equal gemma3.c's for the same file, and
wherever the full Gemma 3 tokenizer's encoding uses only kept pieces, the trimmed one gives
the same pieces. Texts: the tokenizer reference vectors, and the lines and words of the books
sample. Run on the GPU machine (needs `pip install tokenizers`, and a built ./gemma3):

    make -j && python3 tests/ref/check_trimmed_tokenizer.py [models/default/tokenizer.json] \
        > tests/ref/out/check_trimmed_tokenizer.txt

Prints one summary line per check and exits non-zero on any difference.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

trimmed_path = sys.argv[1] if len(sys.argv) > 1 else "models/default/tokenizer.json"
with gzip.open("tests/data/tokenizer/tokenizer.json.gz", "rb") as f:
    full = Tokenizer.from_str(f.read().decode("utf-8"))
trimmed = Tokenizer.from_file(trimmed_path)

texts = []
for line in open("tests/data/tokenizer/vectors_public.jsonl", encoding="utf-8"):
    if line.strip():
        texts.append(json.loads(line)["text"])
for line in open("tests/data/books_sample.txt", encoding="utf-8"):
    line = line.rstrip("\n")
    texts.append(line)
    words = line.split(" ")
    texts += [words[0]] + [" " + w for w in words[1:]]

# gemma3.c's ids for the same texts (special-token text recognised, no <bos>: as HF's
# encode(text, add_special_tokens=False))
with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "add_bos": False}) + "\n")
    batch = f.name
out = subprocess.run(["./gemma3", "tokenize", "--tokenizer", trimmed_path, "--input", batch],
                     check=True, capture_output=True, text=True).stdout.splitlines()
os.unlink(batch)
ours = [json.loads(l)["ids"] for l in out]

ok = True
n_same = sum(trimmed.encode(t, add_special_tokens=False).ids == o for t, o in zip(texts, ours))
print(f"{trimmed_path}: vocabulary {trimmed.get_vocab_size()}; ids equal gemma3.c's for {n_same}/{len(texts)} texts")
ok &= n_same == len(texts)

kept = trimmed.get_vocab()
n_kept = n_kept_same = n_round = 0
for t in texts:
    fp = full.encode(t, add_special_tokens=False).tokens
    tp = trimmed.encode(t, add_special_tokens=False)
    if all(p in kept for p in fp):
        n_kept += 1
        n_kept_same += fp == tp.tokens
    # the decoder maps a literal `▁` in the text to a space, in the full tokenizer as well
    n_round += trimmed.decode(tp.ids, skip_special_tokens=False) == full.decode(
        full.encode(t, add_special_tokens=False).ids, skip_special_tokens=False)
print(f"texts whose full-tokenizer pieces are all kept: {n_kept}; same pieces from the trimmed one: {n_kept_same}")
print(f"decode(encode(text)) equal to the full tokenizer's: {n_round}/{len(texts)}")
ok &= n_kept == n_kept_same and n_round == len(texts) and n_kept > 0
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
