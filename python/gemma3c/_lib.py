"""Loading libgemma3.so and declaring the C functions of include/gemma3.h for ctypes.

Where the library comes from, first found wins:
  1. the GEMMA3_LIB environment variable (a path to libgemma3.so);
  2. a copy installed inside the package (``pip install ./python`` bundles the one ``make`` built);
  3. the checkout this package sits in: ``<repo>/build/rel/libgemma3.so`` (``PYTHONPATH=python``);
  4. the system's library path (``ctypes.util.find_library("gemma3")``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint64, c_void_p)
from pathlib import Path
from typing import Optional


class Gemma3Error(RuntimeError):
    """An error reported by libgemma3; the message is the library's own (it names the file,
    tensor, field or argument at fault)."""


def _find_library() -> str:
    env = os.environ.get("GEMMA3_LIB")
    if env:
        if not Path(env).is_file():
            raise Gemma3Error(f"GEMMA3_LIB={env}: no such file")
        return env
    here = Path(__file__).resolve().parent
    for cand in (here / "libgemma3.so", here.parent.parent / "build" / "rel" / "libgemma3.so"):
        if cand.is_file():
            return str(cand)
    found = ctypes.util.find_library("gemma3")
    if found:
        return found
    raise Gemma3Error("libgemma3.so not found: build it with `make` in the gemma3.c checkout, "
                      "or point GEMMA3_LIB at it")


class Activation(Structure):
    """gemma3_activation: one hook site's rows as the pass produces them."""
    _fields_ = [("name", c_char_p), ("layer", c_int), ("head", c_int), ("slot", c_int), ("pos0", c_int),
                ("rows", c_int), ("cols", c_int), ("heads", c_int), ("head_dim", c_int), ("key0", c_int),
                ("data", POINTER(c_float))]


class ModelInfo(Structure):
    _fields_ = [("vocab", c_int), ("hidden", c_int), ("intermediate", c_int), ("layers", c_int), ("heads", c_int),
                ("kv_heads", c_int), ("head_dim", c_int), ("max_positions", c_int), ("sliding_window", c_int),
                ("gemma2", c_int), ("parameters", c_int64)]


class Sampling(Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("presence_penalty", c_float), ("frequency_penalty", c_float),
                ("seed", c_uint64)]


class TrainOptions(Structure):
    _fields_ = [("batch", c_int), ("seq", c_int), ("lr", c_double), ("weight_decay", c_double), ("beta1", c_double),
                ("beta2", c_double), ("eps", c_double), ("clip", c_double), ("bf16", c_int), ("recompute", c_int)]


HOOK_FN = CFUNCTYPE(None, c_void_p, POINTER(Activation))

_P = c_void_p
_F = POINTER(c_float)
_I32 = POINTER(c_int32)
_I64 = POINTER(c_int64)

# name: (restype, argtypes)
_PROTOS = {
    "gemma3_last_error": (c_char_p, []),
    "gemma3_version": (c_char_p, []),
    "gemma3_free": (None, [c_void_p]),
    "gemma3_model_open": (_P, [c_char_p]),
    "gemma3_model_close": (None, [_P]),
    "gemma3_model_get_info": (c_int, [_P, POINTER(ModelInfo)]),
    "gemma3_model_layer_sliding": (c_int, [_P, c_int]),
    "gemma3_tokenizer_open": (_P, [c_char_p]),
    "gemma3_tokenizer_close": (None, [_P]),
    "gemma3_tokenize": (c_int, [_P, c_char_p, c_size_t, c_int, _I32, c_int]),
    "gemma3_detokenize": (c_void_p, [_P, _I32, c_int, c_int]),
    "gemma3_token_bos": (c_int, [_P]),
    "gemma3_token_eos": (c_int, [_P]),
    "gemma3_token_end_of_turn": (c_int, [_P]),
    "gemma3_state_new": (_P, [_P, c_int, c_int, c_int, c_int]),
    "gemma3_state_free": (None, [_P]),
    "gemma3_state_reset": (c_int, [_P, c_int]),
    "gemma3_state_length": (c_int, [_P, c_int]),
    "gemma3_forward": (c_int, [_P, c_int, _I32, c_int, _F, c_int]),
    "gemma3_state_set_hook": (c_int, [_P, POINTER(c_char_p), c_int, HOOK_FN, c_void_p]),
    "gemma3_site_names": (c_void_p, [_P]),
    "gemma3_site_width": (c_int, [_P, c_char_p]),
    "gemma3_state_record": (c_int, [_P, POINTER(c_char_p), c_int]),
    "gemma3_record_count": (c_int, [_P]),
    "gemma3_record_array": (c_char_p, [_P, c_int, POINTER(c_int), _I64, POINTER(_F)]),
    "gemma3_sampling_defaults": (Sampling, []),
    "gemma3_generator_new": (_P, [_P, c_int, c_int, c_int]),
    "gemma3_generator_free": (None, [_P]),
    "gemma3_generator_add": (c_int, [_P, _I32, c_int, c_int, _I32, c_int, POINTER(Sampling)]),
    "gemma3_generator_step": (c_int, [_P]),
    "gemma3_generator_read": (c_int, [_P, c_int, POINTER(_I32), POINTER(c_int), POINTER(c_int)]),
    "gemma3_generator_cancel": (c_int, [_P, c_int]),
    "gemma3_generator_set_hook": (c_int, [_P, POINTER(c_char_p), c_int, HOOK_FN, c_void_p]),
    "gemma3_train_defaults": (TrainOptions, []),
    "gemma3_trainer_new": (_P, [_P, POINTER(TrainOptions)]),
    "gemma3_trainer_free": (None, [_P]),
    "gemma3_trainer_loss": (c_double, [_P, _I32, _I32]),
    "gemma3_trainer_grad": (c_double, [_P, _I32, _I32]),
    "gemma3_trainer_tensor_grad": (_F, [_P, c_char_p, _I64]),
    "gemma3_trainer_step": (c_double, [_P]),
    "gemma3_trainer_save": (c_int, [_P, c_char_p, c_int]),
    "gemma3_trainer_tensor_count": (c_int, [_P]),
    "gemma3_trainer_tensor_info": (c_char_p, [_P, c_int, POINTER(c_int), _I64]),
    "gemma3_sae_open": (_P, [c_char_p]),
    "gemma3_sae_close": (None, [_P]),
    "gemma3_sae_dims": (c_int, [_P, POINTER(c_int), POINTER(c_int)]),
    "gemma3_sae_site": (c_char_p, [_P]),
    "gemma3_sae_encode": (c_int, [_P, _F, c_int, _F]),
    "gemma3_sae_decode": (c_int, [_P, _F, c_int, _F]),
}

_lib: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """The loaded library, with every function's prototype declared (loaded on first use)."""
    global _lib
    if _lib is None:
        path = _find_library()
        # OpenMP's threads wait passively unless the user chose otherwise, as the gemma3
        # program does (src/cli/main.c says why); libgomp reads this when it is loaded, so it
        # holds unless another module loaded libgomp first
        if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
            os.environ["OMP_WAIT_POLICY"] = "passive"
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            raise Gemma3Error(f"cannot load {path}: {e}") from None
        for name, (res, args) in _PROTOS.items():
            try:
                fn = getattr(handle, name)
            except AttributeError:
                raise Gemma3Error(f"{path} lacks {name}: rebuild it with `make`") from None
            fn.restype = res
            fn.argtypes = args
        _lib = handle
    return _lib


def error(what: str = "") -> Gemma3Error:
    """The library's last error as an exception."""
    msg = lib().gemma3_last_error()
    text = msg.decode("utf-8", "replace") if msg else "unknown error"
    return Gemma3Error(f"{what}: {text}" if what else text)


def check(rc: int, what: str = "") -> int:
    """Raises the library's error when rc is negative; returns rc otherwise."""
    if rc < 0:
        raise error(what)
    return rc


def take_string(ptr: Optional[int]) -> str:
    """A malloc'd C string from the library as str (freed with gemma3_free)."""
    if not ptr:
        raise error()
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib().gemma3_free(ptr)


def c_strings(items) -> "ctypes.Array[c_char_p]":
    """A C array of UTF-8 strings (the caller keeps the result alive while C uses it)."""
    enc = [s.encode() for s in items]
    return (c_char_p * max(len(enc), 1))(*enc)
