# Stand-in for transformers in llama.cpp's convert_hf_to_gguf.py (bench/peers/llama_cpp.sh):
# for a Gemma 3 checkpoint it only reads config.json through AutoConfig, and transformers
# is not a Debian package on bookworm. Benchmarks only; nothing of gemma3.c imports this.
import json
import os


class _Config:
    def __init__(self, d):
        self._d = d

    def to_dict(self):
        return self._d


class AutoConfig:
    @staticmethod
    def from_pretrained(path, **kwargs):
        with open(os.path.join(path, "config.json")) as f:
            return _Config(json.load(f))
