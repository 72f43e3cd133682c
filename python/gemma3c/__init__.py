"""gemma3c: Python over libgemma3 (gemma3.c): run, look inside and train Gemma 3 / Gemma 2
models, and read sparse-autoencoder features, at the C library's speed.

    import gemma3c
    m = gemma3c.Model("path/to/model", exact=True)
    logits, cache = m.run_with_cache(ids, names=["blocks.0.hook_resid_post"])

numpy is the only dependency; the library is found as gemma3c._lib describes (GEMMA3_LIB, a
bundled copy, the checkout's build/rel/libgemma3.so, the system path).
"""
from ._lib import Gemma3Error
from .model import HookPoint, Model, Trainer
from .sae import Sae

__version__ = "0.1.0"


def library_version() -> str:
    """The C library's version string."""
    from ._lib import lib
    return lib().gemma3_version().decode()


__all__ = ["Model", "Trainer", "Sae", "HookPoint", "Gemma3Error", "library_version", "__version__"]
