"""Model: a Gemma 3 / Gemma 2 checkpoint driven from Python through libgemma3.

Everything runs in the C library; this module turns numpy arrays into pointers and back.
Activation arrays from ``run_with_cache`` are views of the library's own buffers (no copy):
they keep that memory alive for as long as any of them is referenced.
"""
from __future__ import annotations

import ctypes
import fnmatch
from ctypes import POINTER, byref, c_char_p, c_float, c_int, c_int32, c_int64
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._lib import (HOOK_FN, Activation, Gemma3Error, ModelInfo, Sampling, TrainOptions, c_strings, check, error, lib,
                   take_string)

Ids = Union[Sequence[int], np.ndarray]
HookFn = Callable[[np.ndarray, "HookPoint"], Optional[np.ndarray]]
Hooks = Sequence[Tuple[str, HookFn]]


@dataclass(frozen=True)
class HookPoint:
    """Where a hook call happens: the site's TransformerLens name, its layer (-1 for
    hook_embed, ln_final, logits), the attention head (score/pattern sites, else -1), the
    sequence (batch row), the position of the first row, and for attention score/pattern
    sites the position of key column 0."""
    name: str
    layer: int
    head: int
    slot: int
    pos0: int
    key0: int


class _Handle:
    """Owns one C object and frees it when the last Python reference goes. keep: the handle of
    an object this one uses (a state reads its model), kept alive for as long as this one."""

    def __init__(self, ptr: int, free: Callable[[int], None], keep: Optional["_Handle"] = None):
        self.ptr = ptr
        self._free = free
        self._keep = keep

    def __del__(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = None


def _ids_2d(ids: Ids) -> Tuple[np.ndarray, bool]:
    """ids as a C-contiguous int32 [B, T] array, and whether the input was 1-D."""
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise Gemma3Error(f"token ids must be integers, not {a.dtype}")
    one = a.ndim == 1
    if one:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] < 1:
        raise Gemma3Error(f"token ids must be a non-empty [T] or [B, T] array, not shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.int32), one


def _i32p(a: np.ndarray):
    return a.ctypes.data_as(POINTER(c_int32))


def _f32p(a: np.ndarray):
    return a.ctypes.data_as(POINTER(c_float))


class _HookSet:
    """The Python side of one C hook: dispatches each call to the (pattern, fn) pairs whose
    glob matches the site, gives them a numpy view of the rows, copies back what they return,
    and keeps the first exception to raise once the forward pass is over."""

    def __init__(self, hooks: Hooks):
        self.hooks = [(p, f) for p, f in hooks]
        self.error: Optional[BaseException] = None
        self.cfn = HOOK_FN(self._call)
        self.patterns = c_strings([p for p, _ in self.hooks])

    def _call(self, ctx, ap):
        if self.error is not None:
            return
        try:
            a: Activation = ap.contents
            name = a.name.decode()
            if a.rows <= 0 or a.cols <= 0:
                return
            view = np.ctypeslib.as_array(a.data, shape=(a.rows, a.cols))
            if a.heads > 0:
                view = view.reshape(a.rows, a.heads, a.head_dim)
            point = HookPoint(name, a.layer, a.head, a.slot, a.pos0, a.key0)
            for pattern, fn in self.hooks:
                if fnmatch.fnmatchcase(name, pattern):
                    out = fn(view, point)
                    if out is not None and out is not view:
                        view[...] = np.asarray(out, dtype=np.float32).reshape(view.shape)
        except BaseException as e:  # raised after the pass: an exception cannot cross C
            self.error = e

    def raise_pending(self):
        if self.error is not None:
            e, self.error = self.error, None
            raise e


class Model:
    """A Gemma 3 (or Gemma 2) model loaded by libgemma3.

    >>> m = gemma3c.Model("tests/fixtures/gemma3-tiny-f32", exact=True)
    >>> logits, cache = m.run_with_cache([2, 17, 300], names=["blocks.0.hook_resid_post"])

    path: a Hub folder (config.json + safetensors) or a .gguf file. exact: f32 activations
    everywhere (as ``gemma3 trace --exact``); False runs the matrix products of bf16 weights
    with bf16 activations (faster, about 1e-2 relative). tokenizer: a tokenizer.json /
    tokenizer.model path (default: the one in the model folder, if any).
    """

    def __init__(self, path: str, exact: bool = True, tokenizer: Optional[str] = None):
        L = lib()
        ptr = L.gemma3_model_open(str(path).encode())
        if not ptr:
            raise error(f"loading {path}")
        self._h = _Handle(ptr, L.gemma3_model_close)
        self.path = str(path)
        self.exact = bool(exact)
        info = ModelInfo()
        check(L.gemma3_model_get_info(ptr, byref(info)))
        self.cfg = {f: getattr(info, f) for f, _ in ModelInfo._fields_}
        self._tok_path = tokenizer
        self._tok: Optional[_Handle] = None

    # ---- shape and sites ----

    @property
    def vocab(self) -> int:
        return self.cfg["vocab"]

    @property
    def n_layers(self) -> int:
        return self.cfg["layers"]

    @property
    def d_model(self) -> int:
        return self.cfg["hidden"]

    def site_names(self) -> List[str]:
        """Every hook site of this model, layers expanded ("blocks.3.hook_resid_post", ...)."""
        return take_string(lib().gemma3_site_names(self._h.ptr)).split()

    def site_width(self, name: str) -> int:
        """Floats per position at a site (0 for attention scores/patterns)."""
        return check(lib().gemma3_site_width(self._h.ptr, name.encode()), f"site {name}")

    # ---- tokenizer ----

    def _tokenizer(self) -> int:
        if self._tok is None:
            L = lib()
            path = self._tok_path or self.path
            ptr = L.gemma3_tokenizer_open(path.encode())
            if not ptr:
                raise error(f"tokenizer of {path}")
            self._tok = _Handle(ptr, L.gemma3_tokenizer_close)
        return self._tok.ptr

    def tokenize(self, text: str, bos: bool = True) -> np.ndarray:
        """Text to token ids (int32), with <bos> first unless bos=False."""
        L, t = lib(), self._tokenizer()
        raw = text.encode()
        n = check(L.gemma3_tokenize(t, raw, len(raw), int(bos), None, 0), "tokenize")
        out = np.zeros(n, dtype=np.int32)
        check(L.gemma3_tokenize(t, raw, len(raw), int(bos), _i32p(out), n), "tokenize")
        return out

    def detokenize(self, ids: Ids, skip_special: bool = False) -> str:
        """Token ids to text."""
        a = np.ascontiguousarray(np.asarray(ids).reshape(-1), dtype=np.int32)
        return take_string(lib().gemma3_detokenize(self._tokenizer(), _i32p(a), len(a), int(skip_special)))

    def to_tokens(self, text: str) -> np.ndarray:
        """TransformerLens' name for tokenize (with <bos>)."""
        return self.tokenize(text)

    # ---- forward passes ----

    def _run(self, ids: Ids, names: Optional[Sequence[str]], hooks: Hooks) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        L = lib()
        a, one = _ids_2d(ids)
        B, T = a.shape
        V = self.vocab
        sp = L.gemma3_state_new(self._h.ptr, B, T, min(T, 512), int(self.exact))
        if not sp:
            raise error("state")
        state = _Handle(sp, L.gemma3_state_free, keep=self._h)  # cache views may outlive the Model
        hs = None
        if hooks:
            hs = _HookSet(hooks)
            check(L.gemma3_state_set_hook(sp, hs.patterns, len(hs.hooks), hs.cfn, None), "hooks")
        if names:
            pats = c_strings(names)
            check(L.gemma3_state_record(sp, pats, len(names)), "run_with_cache")
        logits = np.empty((B, T, V), dtype=np.float32)
        for b in range(B):
            rc = L.gemma3_forward(sp, b, _i32p(a[b]), T, _f32p(logits[b]), 0)
            if hs is not None:
                hs.raise_pending()
            check(rc, "forward")
        cache: Dict[str, np.ndarray] = {}
        for i in range(L.gemma3_record_count(sp)):
            ndim, shape, data = c_int(), (c_int64 * 4)(), POINTER(c_float)()
            name = L.gemma3_record_array(sp, i, byref(ndim), shape, byref(data))
            if name is None:
                raise error("run_with_cache")
            dims = tuple(shape[d] for d in range(ndim.value))
            n = int(np.prod(dims))
            buf = (c_float * n).from_address(ctypes.addressof(data.contents))
            buf._owner = state  # the state owns the memory: alive while any view is
            cache[name.decode()] = np.frombuffer(buf, dtype=np.float32).reshape(dims)
        return (logits[0] if one else logits), cache

    def forward(self, ids: Ids, fwd_hooks: Hooks = ()) -> np.ndarray:
        """Logits of every position: [T, V] for ids [T], [B, T, V] for [B, T].

        fwd_hooks: (pattern, fn) pairs as for run_with_hooks."""
        return self._run(ids, None, fwd_hooks)[0]

    __call__ = forward

    def run_with_cache(self, ids: Ids, names: Optional[Sequence[str]] = None,
                       fwd_hooks: Hooks = ()) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """Logits and the activations at the named sites.

        names: site names or globs ("blocks.*.hook_resid_post"); default every row site
        (attention scores and patterns, [B, heads, T, T] each, only when named). Returns
        (logits [T, V] (or [B, T, V]), {name: array}) with each array laid out as
        ``gemma3 trace`` writes it: [B, T, d] for row sites, [B, T, heads, head_dim] for
        per-head sites, [B, heads, T, T] for attention scores/patterns. The arrays are views
        of the library's memory (no copy). With fwd_hooks, what is cached is what the hooks
        left.
        """
        if names is None:
            names = [n for n in self.site_names() if not n.endswith(("attn.hook_attn_scores", "attn.hook_pattern"))]
        if isinstance(names, str):
            names = [names]
        return self._run(ids, list(names), fwd_hooks)

    def run_with_hooks(self, ids: Ids, fwd_hooks: Hooks) -> np.ndarray:
        """Logits with hooks that read or edit activations.

        fwd_hooks: (pattern, fn) pairs; fn(activation, hook) is called at every site whose
        name matches pattern ('*' matches any run), with activation a numpy view [rows,
        cols] ([rows, heads, head_dim] at per-head sites; one head's [rows, keys] at
        attention score/pattern sites) of the rows the pass is about to use. Edit it in
        place, or return an array of its shape to replace it. The view is valid only during
        the call: copy what you keep. An exception in fn is raised once the pass is over.
        """
        return self._run(ids, None, fwd_hooks)[0]

    def loss(self, ids: Ids, fwd_hooks: Hooks = ()) -> float:
        """Mean next-token cross-entropy of ids (natural log), hooks applied."""
        a, _ = _ids_2d(ids)
        logits = self._run(a, None, fwd_hooks)[0].astype(np.float64)
        lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        tgt = np.take_along_axis(logits[:, :-1], a[:, 1:, None].astype(np.int64), -1)[..., 0]
        return float((lse[:, :-1] - tgt).mean())

    # ---- generation ----

    def generate(self, prompt: Union[str, Ids], max_tokens: int = 32, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, min_p: float = 0.0, seed: int = 0, stop: Optional[Iterable[int]] = None,
                 fwd_hooks: Hooks = ()) -> Iterator[int]:
        """Streams new token ids one at a time (greedy at temperature 0, else sampled).

        prompt: text (tokenized with <bos>) or ids. stop: ids that end generation (default:
        the tokenizer's eos and end_of_turn when there is a tokenizer). fwd_hooks apply at
        every step (steering, ablation)."""
        L = lib()
        ids = self.tokenize(prompt) if isinstance(prompt, str) else np.ascontiguousarray(np.asarray(prompt).reshape(-1), dtype=np.int32)
        if stop is None:
            stop = []
            try:
                t = self._tokenizer()
                stop = [x for x in (L.gemma3_token_eos(t), L.gemma3_token_end_of_turn(t)) if x >= 0]
            except Gemma3Error:
                pass
        stops = np.ascontiguousarray(np.asarray(list(stop), dtype=np.int32))
        ctx = len(ids) + max_tokens + 1
        gp = L.gemma3_generator_new(self._h.ptr, 1, ctx, int(self.exact))
        if not gp:
            raise error("generator")
        gen = _Handle(gp, L.gemma3_generator_free, keep=self._h)
        hs = None
        if fwd_hooks:
            hs = _HookSet(fwd_hooks)
            check(L.gemma3_generator_set_hook(gp, hs.patterns, len(hs.hooks), hs.cfn, None), "hooks")
        sp = L.gemma3_sampling_defaults()
        sp.temperature, sp.top_k, sp.top_p, sp.min_p, sp.seed = temperature, top_k, top_p, min_p, seed
        if temperature == 0:
            sp.top_k, sp.top_p = 0, 1.0
        sid = check(L.gemma3_generator_add(gp, _i32p(ids), len(ids), max_tokens, _i32p(stops), len(stops), byref(sp)), "generate")
        seen = 0
        while True:
            left = L.gemma3_generator_step(gp)
            if hs is not None:
                hs.raise_pending()
            check(left, "generate")
            out, n, done = POINTER(c_int32)(), c_int(), c_int()
            check(L.gemma3_generator_read(gp, sid, byref(out), byref(n), byref(done)), "generate")
            for i in range(seen, n.value):
                yield int(out[i])
            seen = n.value
            if done.value or left == 0:
                break
        del gen

    def generate_text(self, prompt: Union[str, Ids], max_tokens: int = 32, **kw) -> Iterator[str]:
        """As generate, streaming text: each chunk is what the new token adds to the decoded
        continuation (a token that ends inside a UTF-8 character waits for the next)."""
        ids: List[int] = []
        text = ""
        for t in self.generate(prompt, max_tokens, **kw):
            ids.append(t)
            full = self.detokenize(ids, skip_special=True)
            if full.endswith("\ufffd"):
                continue
            yield full[len(text):]
            text = full

    # ---- gradients and training ----

    def trainer(self, batch: int = 1, seq: int = 128, lr: float = 1e-4, **opts) -> "Trainer":
        """A Trainer over f32 copies of this model's weights (see Trainer)."""
        return Trainer(self, batch=batch, seq=seq, lr=lr, **opts)

    def grad(self, ids: Ids, targets: Optional[Ids] = None) -> Tuple[float, Dict[str, np.ndarray]]:
        """The mean next-token loss of ids and the gradient of every weight.

        ids [T] or [B, T]; targets default to ids shifted by one (the last position ignored).
        Returns (loss, {checkpoint tensor name: gradient array of the tensor's shape})."""
        a, _ = _ids_2d(ids)
        t = Trainer(self, batch=a.shape[0], seq=a.shape[1])
        loss = t.grad(a, targets)
        return loss, t.gradients()

    def train(self, data: Union[Ids, Iterable[Ids]], steps: int, seq: int = 128, batch: int = 1, lr: float = 1e-4,
              save: Optional[str] = None, **opts) -> List[float]:
        """A minimal training loop: `steps` AdamW steps on consecutive windows of `data` (a
        long id array, cycled, or an iterable of [B, T] / [T] batches); saves a Hub folder
        to `save` at the end when given. Returns the loss of every step."""
        t = Trainer(self, batch=batch, seq=seq, lr=lr, **opts)
        losses: List[float] = []
        if isinstance(data, np.ndarray) or (isinstance(data, (list, tuple)) and data and isinstance(data[0], (int, np.integer))):
            flat = np.asarray(data, dtype=np.int32).reshape(-1)
            need = batch * seq + 1
            if len(flat) < need:
                raise Gemma3Error(f"train: {len(flat)} tokens, need at least batch x seq + 1 = {need}")
            pos = 0
            for _ in range(steps):
                if pos + need > len(flat):
                    pos = 0
                win = flat[pos:pos + need]
                x = win[:-1].reshape(batch, seq)
                y = win[1:].reshape(batch, seq)
                losses.append(t.step(x, y)[0])
                pos += batch * seq
        else:
            it = iter(data)
            for _ in range(steps):
                b, _one = _ids_2d(next(it))
                losses.append(t.step(b[:, :-1], b[:, 1:])[0])
        if save:
            t.save(save)
        return losses


class Trainer:
    """Training over f32 copies of a model's weights (every tensor trainable), AdamW.

    batch x seq: the shape of every call's inputs. opts: weight_decay, beta1, beta2, eps,
    clip (global-norm clipping, 0 off), bf16 (bf16 operands), recompute (checkpointing)."""

    def __init__(self, model: Model, batch: int = 1, seq: int = 128, lr: float = 1e-4, **opts):
        L = lib()
        o: TrainOptions = L.gemma3_train_defaults()
        o.batch, o.seq, o.lr = batch, seq, lr
        for k, v in opts.items():
            if k not in dict(TrainOptions._fields_):
                raise Gemma3Error(f"Trainer: unknown option '{k}'")
            setattr(o, k, v)
        ptr = L.gemma3_trainer_new(model._h.ptr, byref(o))
        if not ptr:
            raise error("trainer")
        self._h = _Handle(ptr, L.gemma3_trainer_free, keep=model._h)
        self._model = model  # the trainer reads the model's config
        self.batch, self.seq = batch, seq

    def _xy(self, inputs: Ids, targets: Optional[Ids]) -> Tuple[np.ndarray, np.ndarray]:
        x, _ = _ids_2d(inputs)
        if targets is None:
            y = np.full_like(x, -1)
            y[:, :-1] = x[:, 1:]
        else:
            y, _ = _ids_2d(targets)
        if x.shape != (self.batch, self.seq) or y.shape != x.shape:
            raise Gemma3Error(f"trainer: inputs {x.shape} and targets {y.shape} must both be [batch {self.batch}, seq {self.seq}]")
        return x, y

    def loss(self, inputs: Ids, targets: Optional[Ids] = None) -> float:
        """Mean next-token loss (targets < 0 ignored; default: inputs shifted by one)."""
        x, y = self._xy(inputs, targets)
        v = lib().gemma3_trainer_loss(self._h.ptr, _i32p(x), _i32p(y))
        if np.isnan(v):
            raise error("loss")
        return v

    def grad(self, inputs: Ids, targets: Optional[Ids] = None) -> float:
        """Loss and gradients (read them with gradient / gradients)."""
        x, y = self._xy(inputs, targets)
        v = lib().gemma3_trainer_grad(self._h.ptr, _i32p(x), _i32p(y))
        if np.isnan(v):
            raise error("grad")
        return v

    def tensors(self) -> List[Tuple[str, Tuple[int, ...]]]:
        """The trainable tensors' checkpoint names and shapes."""
        L = lib()
        out = []
        for i in range(L.gemma3_trainer_tensor_count(self._h.ptr)):
            nd, sh = c_int(), (c_int64 * 2)()
            name = L.gemma3_trainer_tensor_info(self._h.ptr, i, byref(nd), sh)
            out.append((name.decode(), tuple(sh[d] for d in range(nd.value))))
        return out

    def gradient(self, name: str, shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
        """A copy of one tensor's gradient from the last grad call."""
        n = c_int64()
        p = lib().gemma3_trainer_tensor_grad(self._h.ptr, name.encode(), byref(n))
        if not p:
            raise error("gradient")
        a = np.ctypeslib.as_array(p, shape=(n.value,)).copy()
        return a.reshape(shape) if shape else a

    def gradients(self) -> Dict[str, np.ndarray]:
        """Every tensor's gradient from the last grad call, by checkpoint name."""
        return {name: self.gradient(name, shape) for name, shape in self.tensors()}

    def step(self, inputs: Ids, targets: Optional[Ids] = None) -> Tuple[float, float]:
        """grad, then one AdamW step; returns (loss, gradient norm before clipping)."""
        loss = self.grad(inputs, targets)
        norm = lib().gemma3_trainer_step(self._h.ptr)
        if norm < 0:
            raise error("step")
        return loss, norm

    def save(self, path: str, bf16: bool = False) -> None:
        """Writes config.json + model.safetensors (a Hub folder) to path."""
        check(lib().gemma3_trainer_save(self._h.ptr, str(path).encode(), int(bf16)), f"saving {path}")
