#!/usr/bin/env python3
"""Token files for the ReLoRA / rank-1 experiment (docs/lora.md): TinyStories through the Gemma 3
tokenizer, ids remapped to a compact vocabulary of 8192 (the issue's 9.7M training shape).

    python3 bench/relora_data.py GEMMA3 TOKENIZER TINYSTORIES_DIR OUT_DIR

Ids 0..3 (<pad>, <eos>, <bos>, <unk>) keep their numbers; the 8188 ids most frequent in the
training text take 4..8191 (ties by id); every other id becomes <unk> (3). Writes
OUT_DIR/train.bin and OUT_DIR/val.bin in gemma3.c's token-file format (src/train/data.h), and
OUT_DIR/config.json (vocab 8192, hidden 256, inter 1024, 8 layers, 4 heads, 1 KV head, head
dim 64: bench/bench_train.c's shape (a)). Standard library only.
"""
import collections, json, os, struct, subprocess, sys

V = 8192

def stories(path):
    text = open(path, encoding="utf-8").read()
    return [s.strip() for s in text.split("<|endoftext|>") if s.strip()]

def encode(gemma3, tok, texts):
    inp = "".join(json.dumps({"text": t, "add_bos": True}) + "\n" for t in texts)
    out = subprocess.run([gemma3, "tokenize", "--tokenizer", tok, "--input", "-", "--plain"], input=inp.encode(),
                         capture_output=True, check=True).stdout.decode()
    return [json.loads(l)["ids"] + [1] for l in out.splitlines() if l.strip()]  # each story ends with <eos>

def write_bin(path, ids):
    hdr = b"G3TOKENS" + struct.pack("<IIiiQII", 1, V, 2, 1, len(ids), 0, 64) + bytes(24)
    assert len(hdr) == 64
    with open(path + ".tmp", "wb") as f:
        f.write(hdr)
        f.write(struct.pack("<%dI" % len(ids), *ids))
    os.replace(path + ".tmp", path)

def main():
    gemma3, tok, src, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    tr = encode(gemma3, tok, stories(os.path.join(src, "train.txt")))
    va = encode(gemma3, tok, stories(os.path.join(src, "valid.txt")))
    cnt = collections.Counter(i for s in tr for i in s if i > 3)
    keep = sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:V - 4]
    remap = {old: 4 + k for k, (old, _) in enumerate(keep)}
    m = lambda i: i if i <= 3 else remap.get(i, 3)
    trf = [m(i) for s in tr for i in s]
    vaf = [m(i) for s in va for i in s]
    write_bin(os.path.join(out, "train.bin"), trf)
    write_bin(os.path.join(out, "val.bin"), vaf)
    unk = sum(i == 3 for i in vaf) / max(1, len(vaf))
    cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gemma3-tiny-f32", "config.json")))
    cfg.update(vocab_size=V, hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=4,
               num_key_value_heads=1, head_dim=64, query_pre_attn_scalar=64, sliding_window=128)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    print("train %d tokens, val %d tokens, val <unk> %.2f%%" % (len(trf), len(vaf), 100 * unk))

main()
