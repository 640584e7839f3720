"""Building the sampling library from its C++ sources (`csrc/`) at first use, and loading it with ctypes.

The library is built with the system C++ compiler (`$CXX`, else `g++` or `c++`) into a per-user cache
(`$XDG_CACHE_HOME/soundalike/kernels`), keyed by every source file, the compiler and its version, the flags
and the CPU, so a changed source or a different machine never loads a stale build. No torch headers, no
extension build step: `pip install -e .` is enough. The flags are portable ones plus `-march=native` (x86) or
`-mcpu=native` (ARM), then `$SOUNDALIKE_CXXFLAGS` (e.g. "-g -O1 -fsanitize=address"). Each .cpp is compiled
in its own process (in parallel), then linked. When a build fails, the sources and the compiler's message are
kept in a folder that the warning names.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from ..atomic import atomic_open

SOURCES = Path(__file__).resolve().parent / "csrc"
# Without -march: any CPU of the architecture. -fno-math-errno lets exp / tanh inline; -Wno-psabi silences a
# note on passing 512-bit vectors between inlined functions (never across the library's interface).
# -ffp-contract=off: a multiply and an add are rounded apart, as torch does (the sampling head's tilts are
# compared bit for bit; the products' own fused multiply-adds are explicit intrinsics).
PORTABLE_FLAGS = ["-O3", "-fPIC", "-std=c++17", "-fno-math-errno", "-ffp-contract=off", "-pthread", "-Wno-psabi"]


class BuildError(Exception):
    """The compiler failed; the message says where its output and the sources were kept."""


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "soundalike" / "kernels"


def native_flags(machine: str | None = None) -> list[str]:
    """The flag that tunes the build to this CPU: -march=native on x86, -mcpu=native on ARM (where GCC and
    Clang take no -march=native), none elsewhere."""
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64", "i386", "i686"):
        return ["-march=native"]
    if machine in ("aarch64", "arm64") or machine.startswith("armv"):
        return ["-mcpu=native"]
    return []


def flags() -> list[str]:
    """Every compile and link flag: portable, native, then the developer's $SOUNDALIKE_CXXFLAGS."""
    return PORTABLE_FLAGS + native_flags() + shlex.split(os.environ.get("SOUNDALIKE_CXXFLAGS", ""))


def source_files() -> list[Path]:
    """The library's sources: every .h and .cpp of csrc/ (not its tests/)."""
    return sorted(p for p in SOURCES.iterdir() if p.suffix in (".h", ".cpp"))


def _cpu_id() -> str:
    """What `-march=native` depends on: the CPU's model and flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.processor()


def build_key(cxx: str, build_flags: list[str]) -> str:
    """Hash of everything the library's bits depend on."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    h = hashlib.sha256()
    for p in source_files():
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update("\0".join([cxx, version, " ".join(build_flags), _cpu_id()]).encode())
    return h.hexdigest()[:16]


def _keep_failure(key: str, log: str) -> Path:
    """The sources and the compiler's output of a failed build, kept in a folder of their own."""
    kept = cache_dir() / f"failed-{key}"
    kept.mkdir(parents=True, exist_ok=True)
    for p in source_files():
        with atomic_open(kept / p.name, "wb") as f:
            f.write(p.read_bytes())
    with atomic_open(kept / "compiler.log", "w") as f:
        f.write(log)
    return kept


def _first_error(output: str) -> str:
    """The compiler's first error line (file:line:column: error: ...), or its first line."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return next((ln for ln in lines if "error" in ln), lines[0] if lines else "no output")


def build(cxx: str, name: str) -> Path:
    """The library `name` built from csrc/ (from the cache when it is there); raises BuildError."""
    build_flags = flags()
    key = build_key(cxx, build_flags)
    lib = cache_dir() / f"{name}-{key}.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        # The real source paths, so that the compiler's messages point at files a developer can open.
        commands = [[cxx, *build_flags, "-c", str(src), "-o", str(Path(tmp) / f"{src.stem}.o")]
                    for src in source_files() if src.suffix == ".cpp"]
        jobs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
        outputs = [job.communicate()[0] for job in jobs]
        out = Path(tmp) / lib.name
        link = [cxx, *build_flags, "-shared", *(c[-1] for c in commands), "-o", str(out)]
        if all(job.returncode == 0 for job in jobs):
            done = subprocess.run(link, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            commands.append(link)
            outputs.append(done.stdout)
        if not out.is_file():
            log = "".join(f"$ {shlex.join(c)}\n{o}\n" for c, o in zip(commands, outputs))
            failed = "".join(o for o in outputs if o)
            kept = _keep_failure(key, log)
            raise BuildError(f"{_first_error(failed)} (the sources and the compiler's full output are kept in "
                             f"{kept})")
        os.replace(out, lib)  # atomic: concurrent first uses each compile and one rename wins
    return lib


def load(name: str, fallback: str) -> ctypes.CDLL | None:
    """The library `name` built from csrc/, or None after one warning that names `fallback`, what is used
    instead. SOUNDALIKE_KERNEL=numpy skips it without a warning."""
    if os.environ.get("SOUNDALIKE_KERNEL", "").lower() == "numpy":
        return None
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        warnings.warn(f"no C++ compiler found (set CXX or install g++): {fallback}", RuntimeWarning, stacklevel=3)
        return None
    try:
        return ctypes.CDLL(str(build(cxx, name)))
    except (OSError, subprocess.CalledProcessError, BuildError) as e:
        warnings.warn(f"building the compiled sampling library failed: {e}; {fallback}", RuntimeWarning,
                      stacklevel=3)
        return None
