# check_npz.py: reads what gemma3's .npz writer and `gemma3 trace` wrote, with numpy (run by
# tests/test_trace.c; exit status is the verdict, the first problem is printed).
#   check_npz.py unit FILE.npz                 the arrays test_trace.c wrote through io/npz.h
#   check_npz.py trace FILE.npz FIXTURE_DIR N  a trace of the fixture's prompt (batch row 0) and
#                                              of its first 17 tokens (row 1), N tokens generated
import json
import struct
import sys
import zipfile

import numpy as np


def fail(msg):
    print("check_npz: " + msg)
    sys.exit(1)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    types = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=types[v["dtype"]]).reshape(v["shape"])
    return out


def rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    d = np.linalg.norm(b)
    return np.linalg.norm(a - b) / (d if d > 0 else 1.0)


def unit(path):
    if zipfile.ZipFile(path).testzip() is not None:
        fail("%s: CRC mismatch" % path)
    z = np.load(path)
    want = {"a": ((3, 4, 5), np.float32), "ids": ((7,), np.int32), "empty": ((0, 3), np.float32),
            "big": ((1000, 300), np.float32), "scalar": ((), np.float32)}
    if sorted(z.files) != sorted(want):
        fail("%s: names %s" % (path, z.files))
    for k, (shape, dt) in want.items():
        if z[k].shape != shape or z[k].dtype != dt:
            fail("%s: %s is %s %s" % (path, k, z[k].shape, z[k].dtype))
    if not np.array_equal(z["a"].ravel(), np.arange(60, dtype=np.float32) * 0.5 - 3):
        fail("a: values")
    if not np.array_equal(z["ids"], np.arange(7, dtype=np.int32) * 7 - 100):
        fail("ids: values")
    if not np.array_equal(z["big"].ravel(), (np.arange(300000) % 1000).astype(np.float32)):
        fail("big: values")
    if z["scalar"] != np.float32(2.5):
        fail("scalar: value")


def trace(path, fixture, ngen):
    z = np.load(path)
    side = json.load(open(path[:-4] + ".json"))
    exp = load_safetensors(fixture + "/expected.safetensors")
    cfg = side["config"]
    T0 = exp["input_ids"].shape[0]
    T = T0 + ngen
    L, NH, C, V = cfg["layers"], cfg["heads"], cfg["hidden"], cfg["vocab"]
    names = [a["name"] for a in side["arrays"]]
    if sorted(names) != sorted(z.files):
        fail("sidecar names %s != npz names %s" % (names, z.files))
    for a in side["arrays"]:
        if list(z[a["name"]].shape) != a["shape"] or str(z[a["name"]].dtype) != a["dtype"]:
            fail("%s: %s %s, sidecar says %s %s" % (a["name"], z[a["name"]].shape, z[a["name"]].dtype, a["shape"], a["dtype"]))
    want = {"hook_embed": (2, T, C), "ln_final.hook_normalized": (2, T, C), "logits": (2, T, V), "ids": (2, T), "lengths": (2,)}
    for i in range(L):
        want["blocks.%d.attn.hook_pattern" % i] = (2, NH, T, T)
        want["blocks.%d.attn.hook_attn_scores" % i] = (2, NH, T, T)
        for s in ("hook_attn_out", "hook_mlp_out", "hook_resid_post"):
            want["blocks.%d.%s" % (i, s)] = (2, T, C)
    for k, shape in want.items():
        if k not in z.files:
            fail("%s missing" % k)
        if z[k].shape != shape:
            fail("%s: shape %s, expected %s" % (k, z[k].shape, shape))
    n1 = 17
    ids = z["ids"]
    if list(ids[0, :T0]) != list(exp["input_ids"]) or list(ids[1, :n1]) != list(exp["input_ids"][:n1]):
        fail("ids: %s" % ids)
    if list(z["lengths"]) != [T, n1 + ngen] or list(z["prompt_lengths"]) != [T0, n1]:
        fail("lengths %s prompt_lengths %s" % (z["lengths"], z["prompt_lengths"]))
    if (ids[1, n1 + ngen:] != -1).any():
        fail("padding ids: %s" % ids[1])
    if ngen:
        g = exp["greedy_ids"][:ngen]
        if list(ids[0, T0:]) != list(g):
            fail("generated %s, greedy_ids %s" % (ids[0, T0:], g))
        if list(np.argmax(z["logits"][0, T0 - 1:T - 1], axis=-1)) != list(g):
            fail("logits at the generated steps do not choose the greedy ids")
    worst = 0.0
    refs = [("hook_embed", "embed"), ("ln_final.hook_normalized", "final_norm"), ("logits", "logits")]
    for i in range(L):
        refs += [("blocks.%d.hook_attn_out" % i, "attn_out.%d" % i), ("blocks.%d.hook_mlp_out" % i, "mlp_out.%d" % i),
                 ("blocks.%d.hook_resid_post" % i, "layer.%d" % i), ("blocks.%d.attn.hook_pattern" % i, "attn.%d" % i)]
    for name, ref in refs:
        r = exp[ref]
        a = z[name]
        if "pattern" in name:  # [batch, head, query, key]; row 1 is causal, so its block is the reference's
            e = max(rel(a[0, :, :T0, :T0], r), rel(a[1, :, :n1, :n1], r[:, :n1, :n1]))
            if (a[0, :, :T0, T0:] != 0).any():
                fail("%s: nonzero pattern beyond the query" % name)
        else:
            e = max(rel(a[0, :T0], r), rel(a[1, :n1], r[:n1]))
        worst = max(worst, e)
        if not e <= 1e-5:
            fail("%s vs %s: rel err %.3g" % (name, ref, e))
    sc = z["blocks.0.attn.hook_attn_scores"]
    if not np.isneginf(sc[0, 0, 0, 1]) or not np.isneginf(sc[1, 0, n1 + ngen, 0]):
        fail("masked scores are not -inf")
    p = np.where(np.isneginf(sc[0, :, :T, :T]), 0.0, np.exp(sc[0, :, :T, :T] - sc[0, :, :T, :T].max(-1, keepdims=True)))
    p /= p.sum(-1, keepdims=True)
    if not rel(p, z["blocks.0.attn.hook_pattern"][0, :, :T, :T]) <= 1e-5:
        fail("pattern != softmax(scores)")
    print("check_npz: %s: %d arrays, worst rel err %.2e" % (path, len(z.files), worst))


if __name__ == "__main__":
    if sys.argv[1] == "unit":
        unit(sys.argv[2])
    else:
        trace(sys.argv[2], sys.argv[3], int(sys.argv[4]))
