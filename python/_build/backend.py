"""A PEP 517 build backend for gemma3c that needs nothing beyond the standard library, so
`pip install ./python` works offline: it zips gemma3c/ (and libgemma3.so when it finds one)
into a wheel with the metadata pip needs. Only build_wheel (and its editable and sdist
siblings) are provided; the metadata comes from pyproject.toml's [project] table."""
import base64
import hashlib
import io
import os
import re
import sysconfig
import tarfile
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # python/
NAME = "gemma3c"


def _project():
    text = open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8").read()
    proj = text.split("[project]", 1)[1].split("\n[", 1)[0]

    def field(key):
        m = re.search(r"^%s\s*=\s*\"([^\"]*)\"" % key, proj, re.M)
        return m.group(1) if m else ""

    deps = re.search(r"^dependencies\s*=\s*\[([^\]]*)\]", proj, re.M)
    return {"version": field("version"), "summary": field("description"), "requires_python": field("requires-python"),
            "deps": re.findall(r"\"([^\"]+)\"", deps.group(1)) if deps else []}


def _library():
    env = os.environ.get("GEMMA3_LIB")
    for cand in ([env] if env else []) + [os.path.join(HERE, "..", "build", "rel", "libgemma3.so")]:
        if cand and os.path.isfile(cand):
            return cand
    return None


def _metadata(p):
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {p['version']}", f"Summary: {p['summary']}"]
    if p["requires_python"]:
        lines.append(f"Requires-Python: {p['requires_python']}")
    lines += [f"Requires-Dist: {d}" for d in p["deps"]]
    return "\n".join(lines) + "\n"


def _tag(with_lib):
    if not with_lib:
        return "py3-none-any"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _wheel(wheel_directory, files, p, with_lib):
    tag = _tag(with_lib)
    dist = f"{NAME}-{p['version']}.dist-info"
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: gemma3c-backend\nRoot-Is-Purelib: {'false' if with_lib else 'true'}\nTag: {tag}\n"
    files = dict(files)
    files[f"{dist}/METADATA"] = _metadata(p).encode()
    files[f"{dist}/WHEEL"] = wheel_meta.encode()
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    name = f"{NAME}-{p['version']}-{tag}.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    files = {}
    pkg = os.path.join(HERE, NAME)
    for f in sorted(os.listdir(pkg)):
        if f.endswith(".py"):
            files[f"{NAME}/{f}"] = open(os.path.join(pkg, f), "rb").read()
    lib = _library()
    if lib:
        files[f"{NAME}/libgemma3.so"] = open(lib, "rb").read()
    return _wheel(wheel_directory, files, p, bool(lib))


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """An editable install: a .pth file that puts python/ on sys.path."""
    p = _project()
    return _wheel(wheel_directory, {f"{NAME}.pth": (HERE + "\n").encode()}, p, False)


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = f"{NAME}-{p['version']}"
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for rel in ["pyproject.toml", "_build/backend.py"] + [f"{NAME}/{f}" for f in sorted(os.listdir(os.path.join(HERE, NAME))) if f.endswith(".py")]:
            t.add(os.path.join(HERE, rel), arcname=f"{base}/{rel}")
        info = _metadata(p).replace("Metadata-Version: 2.1", "Metadata-Version: 2.1").encode()
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(info)
        t.addfile(ti, io.BytesIO(info))
    return name
