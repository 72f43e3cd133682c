# Debian bookworm's torch (1.13) predates the float8 and unsigned dtypes that the converter
# names in a lookup table; give the names placeholders so the table builds. A Gemma 3
# checkpoint in BF16/F16 never uses them. See transformers/__init__.py.
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
                 "uint16", "uint32", "uint64"):
        if not hasattr(torch, name):
            setattr(torch, name, object())
