"""Compiled twins of the reference's hot steps (`native_nodes.cpp`): build and load.

The Python code (the autograd nodes `hashing._FeatureHash`, `hashing._Normalise`,
`bases._ProjectOut`, `scaled_grad._UnitBlock`; inference's `hrn._frozen_step`; the hash's
`index_add_`) is the specification; the C++ twins issue the same ATen calls or additions in the
same order, so training and inference give the same bits either way (tests compare every
output and gradient), with less interpreter time per batch. `make` builds the twins once per
virtual environment (`hrn-hw native`, under a minute of g++); where no build is present, or
with HRN_NATIVE=0 in the environment, the Python nodes run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import sysconfig
import warnings
from functools import lru_cache
from pathlib import Path

SOURCE = Path(__file__).with_name("native_nodes.cpp")
ENV_SWITCH = "HRN_NATIVE"          # "0": run the Python nodes even where a build exists
ENV_DIR = "HRN_NATIVE_DIR"         # where builds live (default: <sys.prefix>/hrn-native)


def build_dir() -> Path:
    """Directory of the builds: $HRN_NATIVE_DIR, else `hrn-native` in the interpreter's prefix
    (the virtual environment, whose torch the build links against)."""
    return Path(os.environ.get(ENV_DIR) or Path(sys.prefix) / "hrn-native")


def module_name() -> str:
    """The build's module name: a digest of the source, torch's version and the Python ABI, so
    a build made from other code or for another torch is never loaded."""
    import torch

    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), sysconfig.get_config_var("SOABI").encode()):
        key.update(part)
    return f"hrn_native_{key.hexdigest()[:12]}"


def library_path() -> Path:
    """The build's shared library: <build_dir>/<module name>/<module name>.so."""
    name = module_name()
    return build_dir() / name / f"{name}.so"


def error_line(exc: BaseException) -> str:
    """The last line of an exception's message (a compiler's or loader's), or its type's name."""
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def missing_tools() -> list[str]:
    """The build tools not found (g++, ninja); the environment's own ninja is put on PATH."""
    scripts = sysconfig.get_path("scripts")
    if shutil.which("ninja") is None and Path(scripts, "ninja").is_file():
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    return [tool for tool in ("g++", "ninja") if shutil.which(tool) is None]


def build(verbose: bool = False):
    """Compile the twins (g++ and ninja, through torch.utils.cpp_extension); returns the module."""
    import torch.utils.cpp_extension as cpp

    missing_tools()
    out = library_path().parent
    name = out.name
    shutil.rmtree(out, ignore_errors=True)       # from scratch: a broken build is not reused
    out.mkdir(parents=True)
    module = cpp.load(name, [str(SOURCE)], extra_cflags=["-O2"], build_directory=str(out), verbose=verbose)
    load.cache_clear()
    nodes.cache_clear()
    return module


@lru_cache(maxsize=1)
def load() -> tuple[object | None, str | None]:
    """(the present build's module, None), (None, why it does not load), or (None, None) when
    there is no build for this source and torch."""
    path = library_path()
    if not path.is_file():
        return None, None
    import torch  # noqa: F401  (the extension links against torch's libraries)

    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError) as exc:
        return None, error_line(exc)
    return module, None


def switched_off() -> bool:
    """HRN_NATIVE=0 in the environment: the Python nodes run even where a build exists."""
    return os.environ.get(ENV_SWITCH, "1") == "0"


@lru_cache(maxsize=1)
def nodes():
    """The loaded twins, or None: no build for this source and torch, a build that does not
    load (warned once; the Python nodes run), or HRN_NATIVE=0."""
    if switched_off():
        return None
    module, problem = load()
    if problem is not None:
        warnings.warn(f"the compiled nodes {library_path()} do not load ({problem}); the Python nodes "
                      "run (same results, slower): rebuild them with `hrn-hw native`", RuntimeWarning, stacklevel=2)
    return module


def in_use() -> str | None:
    """The loaded build's module name (for results and benchmark records), or None."""
    twins = nodes()
    return None if twins is None else twins.__name__
