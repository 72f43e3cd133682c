"""A notebook-style tour of gemma3c (the Python package over libgemma3). Run from the checkout:

    make && PYTHONPATH=python python3 docs/python_example.py [MODEL] [SAE_DIR]

MODEL defaults to the tiny test fixture; SAE_DIR (a Gemma Scope folder) is optional: without it
an SAE is trained on the spot with `gemma3 sae train` so that every step below runs offline.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

import gemma3c

model_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gemma3-tiny-f32"
m = gemma3c.Model(model_dir, exact=True)
print("model:", {k: m.cfg[k] for k in ("vocab", "hidden", "layers", "heads")})

# 1. Logits and a cache of activations, TransformerLens-style ([batch, pos, d_model] arrays).
ids = [2, 17, 300, 45, 99, 12, 7, 8, 9, 10, 11, 17, 300, 45]
logits, cache = m.run_with_cache(ids, names=["blocks.*.hook_resid_post", "blocks.1.attn.hook_pattern"])
print("logits", logits.shape, "next token", int(logits[-1].argmax()))
norms = [float(np.linalg.norm(cache[f"blocks.{l}.hook_resid_post"][0, -1])) for l in range(m.n_layers)]
print("residual norm by layer at the last position:", np.round(norms, 1))
pat = cache["blocks.1.attn.hook_pattern"][0]          # [heads, query, key]
print("layer 1 head 0 attends from the last token to:", pat[0, -1].argsort()[::-1][:3])

# 2. Hooks: zero-ablate head 2 of layer 1 (its columns of hook_z) and see the loss change.
def ablate_head(z, hook):
    z[:, 2, :] = 0                                     # z: [rows, heads, head_dim], edited in place

print("loss clean %.4f, head 1.2 ablated %.4f" % (m.loss(ids), m.loss(ids, fwd_hooks=[("blocks.1.attn.hook_z", ablate_head)])))

# 3. Activation patching: copy layer 3's residual from a second prompt at the last position.
src = [2, 17, 300, 45, 99, 12, 7, 8, 9, 10, 11, 40, 41, 42]
_, src_cache = m.run_with_cache(src, names=["blocks.3.hook_resid_post"])
def patch(x, hook):
    last = len(ids) - 1 - hook.pos0
    if 0 <= last < len(x):
        x[last] = src_cache["blocks.3.hook_resid_post"][0, len(src) - 1]
patched = m.run_with_hooks(ids, [("blocks.3.hook_resid_post", patch)])
print("patched next token", int(patched[-1].argmax()))

# 4. Streaming generation, with a steering vector added to layer 2's residual stream.
rng = np.random.default_rng(0)
steer = rng.standard_normal(m.d_model).astype(np.float32) * 20
print("greedy:  ", list(m.generate(ids, max_tokens=8, stop=[])))
print("steered: ", list(m.generate(ids, max_tokens=8, stop=[], fwd_hooks=[("blocks.2.hook_resid_post", lambda x, h: x + steer)])))

# 5. Gradients and a few training steps.
loss, grads = m.grad(ids)
print("loss %.4f; gradient norm of the embedding %.4f" % (loss, np.linalg.norm(grads["model.embed_tokens.weight"])))

# 6. A sparse autoencoder on the residual stream: features per token, reconstruction, splice-in.
if len(sys.argv) > 2:
    sae_dir = sys.argv[2]
else:
    sae_dir = os.path.join(tempfile.mkdtemp(), "sae")
    subprocess.run(["./gemma3", "sae", "train", "--model", model_dir, "--site", "blocks.2.hook_resid_post", "--random",
                    "--width", "256", "--l0", "16", "--steps", "200", "--batch", "256", "--seq", "32", "--log-every", "100",
                    "--out", sae_dir], check=True)
sae = gemma3c.Sae(sae_dir)
site = sae.site or "blocks.2.hook_resid_post"
x = m.run_with_cache(ids, names=[site])[1][site][0]    # [T, d_model]
f = sae.encode(x)                                      # [T, d_sae]
print("L0 per token:", (f != 0).sum(1))
print("top features of the last token:", f[-1].argsort()[::-1][:5])
print("reconstruction FVU %.3f" % (((x - sae.decode(f)) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()))
print("loss clean %.4f, SAE spliced in %.4f" % (m.loss(ids), m.loss(ids, fwd_hooks=[(site, sae.hook())])))
