# Stand-in for tqdm (a progress bar the GGUF writer imports); see transformers/__init__.py.
class tqdm:
    def __init__(self, *args, **kwargs):
        pass

    def update(self, n=1):
        pass

    def close(self):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass
