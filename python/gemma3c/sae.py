"""Sae: a sparse autoencoder (JumpReLU, ReLU or TopK) loaded by libgemma3 from a Gemma Scope 2
folder (params.safetensors + config.json), Gemma Scope 1 (params.npz) or SAELens
(sae_weights.safetensors + cfg.json). Encoding and decoding run in C (one GEMM and a sparse
sum); numpy arrays go in and out."""
from __future__ import annotations

from ctypes import POINTER, byref, c_float, c_int
from typing import Tuple

import numpy as np

from ._lib import Gemma3Error, check, error, lib
from .model import _Handle


def _rows(x: np.ndarray, width: int, what: str) -> Tuple[np.ndarray, Tuple[int, ...]]:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 0 or a.shape[-1] != width:
        raise Gemma3Error(f"{what}: the last dimension must be {width}, not shape {a.shape}")
    lead = a.shape[:-1]
    return np.ascontiguousarray(a.reshape(-1, width)), lead


class Sae:
    """A sparse autoencoder: features = JumpReLU(x W_enc + b_enc), x^ = features W_dec + b_dec.

    >>> sae = gemma3c.Sae("layer_12/width_16k/average_l0_82")
    >>> f = sae.encode(cache["blocks.12.hook_resid_post"])   # [..., d_sae]
    """

    def __init__(self, path: str):
        L = lib()
        ptr = L.gemma3_sae_open(str(path).encode())
        if not ptr:
            raise error(f"loading SAE {path}")
        self._h = _Handle(ptr, L.gemma3_sae_close)
        self.path = str(path)
        dm, ds = c_int(), c_int()
        check(L.gemma3_sae_dims(ptr, byref(dm), byref(ds)))
        self.d_model, self.d_sae = dm.value, ds.value
        self.site = L.gemma3_sae_site(ptr).decode()  # from its config, or ""

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Features [..., d_sae] of activations [..., d_model]."""
        a, lead = _rows(x, self.d_model, "encode")
        out = np.empty((a.shape[0], self.d_sae), dtype=np.float32)
        check(lib().gemma3_sae_encode(self._h.ptr, a.ctypes.data_as(POINTER(c_float)), a.shape[0],
                                      out.ctypes.data_as(POINTER(c_float))), "encode")
        return out.reshape(*lead, self.d_sae)

    def decode(self, f: np.ndarray) -> np.ndarray:
        """Reconstruction [..., d_model] of features [..., d_sae]."""
        a, lead = _rows(f, self.d_sae, "decode")
        out = np.empty((a.shape[0], self.d_model), dtype=np.float32)
        check(lib().gemma3_sae_decode(self._h.ptr, a.ctypes.data_as(POINTER(c_float)), a.shape[0],
                                      out.ctypes.data_as(POINTER(c_float))), "decode")
        return out.reshape(*lead, self.d_model)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """decode(encode(x))."""
        return self.decode(self.encode(x))

    def hook(self):
        """A hook function that replaces the activation by its reconstruction (the
        "spliced-in" SAE): model.run_with_hooks(ids, [(sae.site, sae.hook())])."""
        def fn(act, point):
            return self.reconstruct(act)
        return fn
