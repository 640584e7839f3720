"""Compiling the generation loops' C++ source at first use and loading it with ctypes.

Each library is built with the system `g++` (`-O3 -march=native`) into a per-user cache
(`$XDG_CACHE_HOME/soundalike/kernels`), keyed by the source, the compiler, the flags and the CPU, so a changed
kernel or a different machine never loads a stale build. No torch headers, no extension build step.
Without a compiler, or with SOUNDALIKE_KERNEL=numpy, `load` returns None after one warning (none for the
switch) and the callers use their slower fallbacks.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c++17", "-fno-math-errno", "-pthread"]


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "soundalike" / "kernels"


def _cpu_id() -> str:
    """What `-march=native` depends on: the CPU's model and flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


def _compile(cxx: str, name: str, source: str) -> Path:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([source, cxx, version, " ".join(FLAGS), _cpu_id()]).encode()).hexdigest()
    lib = cache_dir() / f"{name}-{key[:16]}.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        src = Path(tmp) / f"{name}.cpp"
        src.write_text(source)
        out = Path(tmp) / lib.name
        subprocess.run([cxx, *FLAGS, str(src), "-o", str(out)], check=True, capture_output=True, text=True)
        os.replace(out, lib)  # atomic: concurrent first uses each compile and one rename wins
    return lib


def load(name: str, source: str, fallback: str) -> ctypes.CDLL | None:
    """The compiled library `name` built from `source`, or None; `fallback` names what is used instead."""
    if os.environ.get("SOUNDALIKE_KERNEL", "").lower() == "numpy":
        return None
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        warnings.warn(f"no C++ compiler found: sampling uses {fallback} (slower)", stacklevel=3)
        return None
    try:
        return ctypes.CDLL(str(_compile(cxx, name, source)))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or e
        warnings.warn(f"compiling the {name} kernel failed, sampling uses {fallback}: {detail}", stacklevel=3)
        return None
