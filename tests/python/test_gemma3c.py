"""Tests of the Python package (python/gemma3c) against the gemma3 program and numpy references.
Run by tests/test_python.c (which skips with a clear line where python3 or numpy is missing):

    GEMMA3_LIB=build/rel/libgemma3.so BIN=./gemma3 python3 tests/python/test_gemma3c.py [TMPDIR]

Exit status is the verdict; each failed check prints one line. Known answers: `gemma3 trace
--exact` of the same ids (run_with_cache equals it to the bit), `gemma3 intervene` (an MLP
and a head ablation through Python hooks give its loss and KL), the fixture's greedy ids
(generate), numpy's JumpReLU on random weights in Gemma Scope 1, Gemma Scope 2 and SAELens
layouts (the C encoder and `gemma3 sae --save`).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
import gemma3c  # noqa: E402

BIN = os.environ.get("BIN", os.path.join(ROOT, "gemma3"))
FX = os.path.join(ROOT, "tests", "fixtures", "gemma3-tiny-f32")
IDS = [2, 17, 300, 45, 9, 800, 3, 77, 512, 1000, 6, 2, 40]
failures = 0
checks = 0


def check(cond, msg):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL: " + msg)


def raises(fn, text):
    try:
        fn()
    except gemma3c.Gemma3Error as e:
        return text in str(e), str(e)
    except Exception as e:  # noqa: BLE001
        return False, f"{type(e).__name__}: {e}"
    return False, "no exception"


def run(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"gemma3 {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(v["shape"])
    return out


def save_safetensors(path, tensors):
    head, off, blobs = {}, 0, []
    for k, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        head[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def jumprelu_ref(x, w_enc, b_enc, th, w_dec, b_dec, b_dec_in=False):
    """The JumpReLU definition in float64: returns (pre, features, reconstruction)."""
    x = np.asarray(x, np.float64)
    if b_dec_in:
        x = x - b_dec
    pre = x @ w_enc.astype(np.float64) + b_enc
    f = np.where(pre > th, pre, 0.0)
    return pre, f, f @ w_dec.astype(np.float64) + b_dec


def test_run_with_cache(tmp):
    m = gemma3c.Model(FX, exact=True)
    names = ["hook_embed", "blocks.*.hook_resid_post", "blocks.1.attn.hook_pattern", "blocks.0.attn.hook_attn_scores",
             "blocks.2.attn.hook_z", "blocks.3.attn.hook_rot_k", "blocks.4.mlp.hook_post", "blocks.5.ln2_post.hook_normalized",
             "ln_final.hook_normalized", "logits"]
    out = os.path.join(tmp, "trace.npz")
    run("trace", "--model", FX, "--ids", ",".join(map(str, IDS)), "--hooks", ",".join(names), "--exact", "--out", out)
    ref = np.load(out)
    logits, cache = m.run_with_cache(IDS, names=names)
    check(logits.shape == (len(IDS), m.vocab) and logits.dtype == np.float32, f"logits shape {logits.shape}")
    want = [k for k in ref.files if k not in ("ids", "lengths", "prompt_lengths")]
    check(sorted(cache) == sorted(want), f"cache names {sorted(cache)} != trace's {sorted(want)}")
    for k in want:
        if k not in cache:
            continue
        a, b = cache[k], ref[k]
        check(a.shape == b.shape and a.dtype == b.dtype, f"{k}: shape {a.shape} {a.dtype} vs trace {b.shape} {b.dtype}")
        if a.shape == b.shape and not np.array_equal(a, b):
            fin = np.isfinite(b)
            check(False, f"{k}: differs from gemma3 trace by {np.abs(a[fin] - b[fin]).max()} (or in its -inf entries)")
    check(np.array_equal(logits, ref["logits"][0]), "logits differ from trace's logits array")
    # the fixture's own reference (float64 transformers) for the logits
    fx_ids = load_ids(os.path.join(FX, "expected.safetensors"), "input_ids")
    exp = load_f32(os.path.join(FX, "expected.safetensors"), "logits")
    lg = m.forward(fx_ids)
    rel = np.linalg.norm(lg - exp.reshape(lg.shape)) / np.linalg.norm(exp)
    check(rel < 1e-5, f"forward against the fixture's transformers logits: relative error {rel:.2e}")
    # batches: [B, T] gives [B, T, V] and [B, T, ...] caches, each row as alone
    lg2, c2 = m.run_with_cache(np.array([IDS, IDS[::-1]]), names=["blocks.2.hook_resid_post"])
    check(lg2.shape == (2, len(IDS), m.vocab), f"batched logits shape {lg2.shape}")
    check(np.allclose(lg2[0], logits, atol=1e-5, rtol=0) and np.allclose(c2["blocks.2.hook_resid_post"][0], cache["blocks.2.hook_resid_post"][0], atol=1e-5),
          "batch row 0 differs from the single sequence")
    # the arrays outlive the model and every other reference (zero-copy views keep the memory)
    keep = cache["blocks.3.hook_resid_post"].copy()
    view = cache["blocks.3.hook_resid_post"]
    del cache, m
    check(np.array_equal(view, keep), "a cache view changed after the model was dropped")
    # errors name the problem
    m = gemma3c.Model(FX)
    ok, msg = raises(lambda: m.run_with_cache(IDS, names=["blocks.9.hook_resid_post"]), "matches no site")
    check(ok, f"unknown site: {msg}")
    ok, msg = raises(lambda: m.forward([2, 5000]), "5000")
    check(ok, f"id outside the vocabulary: {msg}")
    ok, msg = raises(lambda: gemma3c.Model(os.path.join(tmp, "nope")), "nope")
    check(ok, f"missing model: {msg}")
    check(m.site_width("blocks.0.mlp.hook_pre") == 256 and m.site_width("blocks.0.attn.hook_pattern") == 0, "site widths")
    check(len(m.site_names()) == 3 + 20 * 6, f"site names: {len(m.site_names())}")


def load_ids(path, name):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    v = head[name]
    a, b = v["data_offsets"]
    dt = {"I64": np.int64, "I32": np.int32}[v["dtype"]]
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(-1).astype(np.int32)


def load_f32(path, name):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    v = head[name]
    a, b = v["data_offsets"]
    dt = {"F32": np.float32, "F64": np.float64}[v["dtype"]]
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).astype(np.float32)


def test_hooks(tmp):
    m = gemma3c.Model(FX, exact=True)
    clean = m.forward(IDS)
    # a hook that reads every site and edits nothing changes nothing, to the bit
    seen = {}

    def look(act, hook):
        seen[hook.name] = seen.get(hook.name, 0) + 1

    check(np.array_equal(m.run_with_hooks(IDS, [("*", look)]), clean), "a read-only hook changed the logits")
    check("blocks.5.hook_resid_post" in seen and "blocks.0.attn.hook_pattern" in seen, f"sites seen: {sorted(seen)[:5]}")
    check(np.array_equal(m.run_with_hooks(IDS, [("blocks.*.hook_resid_post", lambda a, h: a.copy())]), clean),
          "returning an unchanged copy changed the logits")
    # reading through a hook gives what run_with_cache records
    got = {}
    m.run_with_hooks(IDS, [("blocks.3.hook_resid_post", lambda a, h: got.__setitem__("x", a.copy()))])
    _, cache = m.run_with_cache(IDS, names=["blocks.3.hook_resid_post"])
    check(np.array_equal(got["x"], cache["blocks.3.hook_resid_post"][0]), "hook read differs from the cache")
    # ablations equal gemma3 intervene's
    ids = ",".join(map(str, IDS))
    for what, args, hooks in [
        ("mlp 2", ["--ablate-mlp", "2"], [("blocks.2.hook_mlp_out", lambda a, h: np.zeros_like(a))]),
        ("head 1.2", ["--ablate-head", "1.2"], [("blocks.1.attn.hook_z", lambda a, h: a.__setitem__((slice(None), 2), 0))]),
    ]:
        js = os.path.join(tmp, "iv.json")
        run("intervene", "--model", FX, "--ids", ids, "--exact", "--json", js, *args)
        iv = json.load(open(js))
        edited = m.run_with_hooks(IDS, hooks)
        loss = m.loss(IDS, fwd_hooks=hooks)
        check(abs(loss - iv["loss"]["intervened"]) < 1e-4 * max(1, abs(loss)), f"{what}: loss {loss} vs intervene {iv['loss']['intervened']}")
        check(abs(m.loss(IDS) - iv["loss"]["clean"]) < 1e-4 * max(1, abs(loss)), f"{what}: clean loss")
        p = np.exp(clean[-1].astype(np.float64) - clean[-1].max()); p /= p.sum()
        q = np.exp(edited[-1].astype(np.float64) - edited[-1].max()); q /= q.sum()
        kl = float(np.sum(p * (np.log(p + 1e-300) - np.log(q + 1e-300))))
        check(abs(kl - iv["next_token"]["kl"]) < 1e-6 + 1e-3 * abs(kl), f"{what}: KL {kl} vs intervene {iv['next_token']['kl']}")
        check(not np.array_equal(edited, clean), f"{what}: the ablation changed nothing")
    # an exception inside a hook surfaces after the pass, and the model still works
    def boom(a, h):
        raise ValueError("boom in hook")
    try:
        m.run_with_hooks(IDS, [("blocks.1.hook_resid_post", boom)])
        check(False, "a hook's exception was swallowed")
    except ValueError as e:
        check("boom" in str(e), f"hook exception: {e}")
    check(np.array_equal(m.forward(IDS), clean), "the model changed after a failing hook")
    ok, msg = raises(lambda: m.run_with_hooks(IDS, [("blocks.77.*", look)]), "matches no site")
    check(ok, f"hook pattern matching nothing: {msg}")


def test_generate_and_train(tmp):
    m = gemma3c.Model(FX, exact=True)
    exp = os.path.join(FX, "expected.safetensors")
    ids, greedy = load_ids(exp, "input_ids"), load_ids(exp, "greedy_ids")
    got = list(m.generate(ids, max_tokens=len(greedy), stop=[]))
    check(got == list(greedy), f"greedy generation {got[:8]} vs the fixture's {list(greedy)[:8]}")
    # a zero steering vector changes nothing; a large one changes the continuation
    zero = list(m.generate(ids, max_tokens=6, stop=[], fwd_hooks=[("blocks.2.hook_resid_post", lambda a, h: a + 0)]))
    check(zero == list(greedy[:6]), "a zero steering hook changed generation")
    rng = np.random.default_rng(0)
    vec = rng.standard_normal(m.d_model).astype(np.float32) * 50
    steered = list(m.generate(ids, max_tokens=6, stop=[], fwd_hooks=[("blocks.2.hook_resid_post", lambda a, h: a + vec)]))
    check(steered != list(greedy[:6]), "a large steering vector changed nothing")
    # gradients: the loss agrees with forward's, shapes are the checkpoint's
    loss, grads = m.grad(IDS)
    check(abs(loss - m.loss(IDS)) < 1e-3 * max(1, loss), f"grad's loss {loss} vs forward's {m.loss(IDS)}")
    emb = [k for k in grads if "embed_tokens" in k]
    check(emb and grads[emb[0]].shape == (m.vocab, m.d_model), f"embedding gradient: {emb} {[grads[k].shape for k in emb]}")
    check(all(np.isfinite(g).all() for g in grads.values()) and any(np.abs(g).sum() > 0 for g in grads.values()), "gradients not finite / all zero")
    # training on one repeated window lowers its loss; save writes a loadable model
    seq = np.array(IDS * 3, dtype=np.int32)
    out = os.path.join(tmp, "trained")
    losses = m.train(seq, steps=8, seq=16, lr=3e-3, save=out)
    check(len(losses) == 8 and losses[-1] < losses[0], f"training losses {losses}")
    m2 = gemma3c.Model(out, exact=True)
    check(m2.loss(seq[:17]) < m.loss(seq[:17]), "the saved model did not learn")
    # tokenizer round trip (Gemma's tokenizer; any model folder may name another)
    tok = os.path.join(ROOT, "tests", "data", "tokenizer", "tokenizer.model")
    if os.path.exists(tok):
        mt = gemma3c.Model(FX, tokenizer=tok)
        t = mt.tokenize("Hello world, héllo!")
        check(t[0] == 2 and t.dtype == np.int32, f"tokenize: {t}")
        check(mt.detokenize(t[1:]) == "Hello world, héllo!", f"detokenize: {mt.detokenize(t[1:])!r}")
    ok, msg = raises(lambda: m.tokenize("x"), "tokenizer")
    check(ok, f"no tokenizer: {msg}")


def make_sae(rng, D, S):
    w_enc = (rng.standard_normal((D, S)) / np.sqrt(D)).astype(np.float32)
    w_dec = (rng.standard_normal((S, D)) / np.sqrt(S)).astype(np.float32)
    b_enc = (rng.standard_normal(S) * 0.1).astype(np.float32)
    b_dec = (rng.standard_normal(D) * 0.1).astype(np.float32)
    th = np.abs(rng.standard_normal(S) * 0.5).astype(np.float32)
    return w_enc, b_enc, th, w_dec, b_dec


def compare_features(name, f, pre, th, fref, rref, r, x_scale):
    # entries within rounding of their threshold may fall either way: leave them out
    safe = np.abs(pre - th) > 1e-4 * (1 + np.abs(pre))
    check(np.array_equal(f[safe] > 0, fref[safe] > 0), f"{name}: active set differs from numpy's")
    check(np.allclose(f[safe], fref[safe], atol=1e-4 * x_scale, rtol=1e-4), f"{name}: features differ by {np.abs(f - fref)[safe].max()}")
    if safe.all():
        check(np.allclose(r, rref, atol=1e-4 * x_scale, rtol=1e-4), f"{name}: reconstruction differs by {np.abs(r - rref).max()}")


def test_sae(tmp):
    rng = np.random.default_rng(1)
    D, S = 96, 300
    m = gemma3c.Model(FX, exact=True)
    _, cache = m.run_with_cache(IDS, names=["blocks.2.hook_resid_post"])
    x = cache["blocks.2.hook_resid_post"][0]
    scale = float(np.abs(x).max())
    layouts = {}
    # Gemma Scope 2: params.safetensors + config.json
    p = make_sae(rng, D, S)
    d2 = os.path.join(tmp, "gs2")
    os.makedirs(d2)
    save_safetensors(os.path.join(d2, "params.safetensors"), dict(zip(["w_enc", "b_enc", "threshold", "w_dec", "b_dec"], p)))
    json.dump({"architecture": "jump_relu", "width": S, "d_model": D}, open(os.path.join(d2, "config.json"), "w"))
    layouts["gemma-scope-2"] = (d2, p, False)
    # Gemma Scope 1: params.npz (np.savez, stored; and compressed)
    for comp in (False, True):
        p1 = make_sae(rng, D, S)
        d1 = os.path.join(tmp, f"gs1{'z' if comp else ''}")
        os.makedirs(d1)
        (np.savez_compressed if comp else np.savez)(os.path.join(d1, "params.npz"), **dict(zip(["W_enc", "b_enc", "threshold", "W_dec", "b_dec"], p1)))
        layouts["gemma-scope-1" + (" compressed" if comp else "")] = (d1, p1, False)
    # SAELens: sae_weights.safetensors + cfg.json, b_dec subtracted from the input
    p3 = make_sae(rng, D, S)
    d3 = os.path.join(tmp, "saelens")
    os.makedirs(d3)
    save_safetensors(os.path.join(d3, "sae_weights.safetensors"), dict(zip(["W_enc", "b_enc", "threshold", "W_dec", "b_dec"], p3)))
    json.dump({"architecture": "jumprelu", "d_in": D, "d_sae": S, "hook_name": "blocks.2.hook_resid_post", "apply_b_dec_to_input": True},
              open(os.path.join(d3, "cfg.json"), "w"))
    layouts["saelens"] = (d3, p3, True)
    for name, (d, p, bdi) in layouts.items():
        sae = gemma3c.Sae(d)
        check((sae.d_model, sae.d_sae) == (D, S), f"{name}: dims {(sae.d_model, sae.d_sae)}")
        f = sae.encode(x)
        r = sae.decode(f)
        pre, fref, rref = jumprelu_ref(x, *p, b_dec_in=bdi)
        compare_features(name + " (Python)", f, pre, p[2], fref, rref, r, scale)
        # reconstruction from the exact features, and random (not activation) inputs
        xr = (rng.standard_normal((5, D)) * 2).astype(np.float32)
        pre2, fref2, rref2 = jumprelu_ref(xr, *p, b_dec_in=bdi)
        compare_features(name + " (random x)", sae.encode(xr), pre2, p[2], fref2, rref2, sae.reconstruct(xr), 2)
        check(np.allclose(sae.decode(fref.astype(np.float32)), rref, atol=1e-4 * scale), f"{name}: decode of numpy's features")
        # the command: --save writes the same features and reconstruction
        out = os.path.join(tmp, "out.safetensors")
        run("sae", "--model", FX, "--sae", d, "--site", "blocks.2.hook_resid_post", "--ids", ",".join(map(str, IDS)), "--exact", "--save", out)
        st = load_safetensors(out)
        check(st["features"].shape == (len(IDS), S) and st["reconstruction"].shape == (len(IDS), D), f"{name}: saved shapes")
        compare_features(name + " (gemma3 sae --save)", st["features"], pre, p[2], fref, rref, st["reconstruction"], scale)
    check(gemma3c.Sae(d3).site == "blocks.2.hook_resid_post", "SAELens hook_name not read")
    # spliced in through a Python hook: the loss change the command prints
    sae = gemma3c.Sae(d2)
    spliced = m.loss(IDS, fwd_hooks=[("blocks.2.hook_resid_post", sae.hook())])
    txt = run("sae", "--model", FX, "--sae", d2, "--site", "blocks.2.hook_resid_post", "--ids", ",".join(map(str, IDS)), "--exact")
    line = [ln for ln in txt.splitlines() if ln.startswith("loss:")][0]
    check(f"spliced-in {spliced:.5f}" in line, f"spliced-in loss {spliced:.5f} vs the command's '{line}'")
    # bad input: a clear error naming what is wrong
    ok, msg = raises(lambda: sae.encode(np.zeros((3, 50), np.float32)), "96")
    check(ok, f"wrong width: {msg}")
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    p = list(make_sae(rng, D, S))
    np.savez(os.path.join(bad, "params.npz"), W_enc=p[0], b_enc=p[1], W_dec=p[3], b_dec=p[4])
    ok, msg = raises(lambda: gemma3c.Sae(bad), "threshold")
    check(ok, f"missing threshold: {msg}")
    p[2][7] = np.nan
    np.savez(os.path.join(bad, "params.npz"), W_enc=p[0], b_enc=p[1], threshold=p[2], W_dec=p[3], b_dec=p[4])
    ok, msg = raises(lambda: gemma3c.Sae(bad), "threshold[7]")
    check(ok, f"NaN threshold: {msg}")
    np.savez(os.path.join(bad, "params.npz"), W_enc=p[0].T.copy(), b_enc=p[1], threshold=np.abs(p[1]), W_dec=p[3], b_dec=p[4])
    ok, msg = raises(lambda: gemma3c.Sae(bad), "shape")
    check(ok, f"transposed W_enc: {msg}")
    r = subprocess.run([BIN, "sae", "--model", FX, "--sae", d2, "--site", "blocks.2.mlp.hook_post", "--ids", "2,5"], capture_output=True, text=True)
    check(r.returncode == 1 and "wrong width" in r.stderr, f"command, wrong width for the site: {r.returncode} {r.stderr.strip()}")


def test_pip_install(tmp):
    """pip install ./python, offline, into a folder; import from elsewhere with the bundled library.
    (--target and --no-deps: numpy is Debian's here, and pip may not write to Debian's own
    site-packages; a virtual environment with --system-site-packages, as docs/python.md
    shows, works the same way.)"""
    py = sys.executable
    r = subprocess.run([py, "-m", "pip", "--version"], capture_output=True, text=True)
    if r.returncode != 0:
        print("pip install: skipped (no pip for this python3: apt-get install python3-pip)")
        return
    target = os.path.join(tmp, "site")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--target", target, os.path.join(ROOT, "python")],
                       capture_output=True, text=True, env=env, cwd=tmp)
    check(r.returncode == 0, f"pip install ./python failed: {r.stderr.strip()[-600:]}")
    if r.returncode:
        return
    check(os.path.isfile(os.path.join(target, "gemma3c", "libgemma3.so")), "the wheel did not bundle libgemma3.so")
    env.pop("GEMMA3_LIB", None)  # the copy the wheel bundled
    env["PYTHONPATH"] = target
    code = ("import gemma3c, sys; m = gemma3c.Model(sys.argv[1], exact=True); l, c = m.run_with_cache([2, 5, 9], names=['blocks.0.hook_resid_post']); "
            "print(gemma3c.__file__, l.shape, c['blocks.0.hook_resid_post'].shape)")
    r = subprocess.run([py, "-c", code, FX], capture_output=True, text=True, env=env, cwd=tmp)
    check(r.returncode == 0 and "(3, 1024) (1, 3, 96)" in r.stdout and target in r.stdout,
          f"installed package: {r.stdout.strip()} {r.stderr.strip()[-400:]}")


def main():
    tmp = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="g3py")
    for t in (test_run_with_cache, test_hooks, test_generate_and_train, test_sae, test_pip_install):
        sub = os.path.join(tmp, t.__name__)
        os.makedirs(sub, exist_ok=True)
        try:
            t(sub)
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            check(False, f"{t.__name__} raised {type(e).__name__}: {e}")
    if failures:
        print(f"{failures} of {checks} python checks failed")
        return 1
    print(f"{checks} python checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
