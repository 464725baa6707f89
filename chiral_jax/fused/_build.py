"""Building the fused kernels: compile ``csrc/even_odd.cc`` once, cache it, remember failures.

The library is compiled on first use with the system C++ compiler (``$CXX``, else
``c++``/``g++``), against the FFI headers of the installed jaxlib and for the host CPU
(``-march=native``), and cached in ``$CHIRAL_JAX_CACHE_DIR`` (default
``~/.cache/chiral_jax``) under a key of the source, the jax and jaxlib versions, the
flags, the compiler and the CPU. A failed build is remembered in the cache under the
same key (a ``.failed`` file holding the reason): later processes do not retry it
until something in the key changes or the file is deleted.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jaxlib

_SOURCE = Path(__file__).parent / "csrc" / "even_odd.cc"
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-w")


def _compiler() -> str | None:
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return shutil.which("c++") or shutil.which("g++")


def _cache_dir() -> Path:
    """``$CHIRAL_JAX_CACHE_DIR``, else the user cache; a per-user temp dir if unwritable."""
    if os.environ.get("CHIRAL_JAX_CACHE_DIR"):
        return Path(os.environ["CHIRAL_JAX_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chiral_jax"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        user = os.getuid() if hasattr(os, "getuid") else "user"
        return Path(tempfile.gettempdir()) / f"chiral_jax-{user}"
    return base


def _cpu_signature() -> str:
    """The host CPU's feature flags (``-march=native`` binaries are not portable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(compiler: str) -> str:
    key = hashlib.sha256()
    for part in (
        _SOURCE.read_bytes(),
        jax.__version__,
        jaxlib.__version__,
        " ".join(_FLAGS),
        compiler,
        _cpu_signature(),
    ):
        key.update(part if isinstance(part, bytes) else part.encode())
    return key.hexdigest()[:16]


def _compile(compiler: str, library: Path) -> None:
    """Compile the source to ``library`` (built beside it and renamed: concurrent builds,
    such as test workers, never see a half-written library)."""
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        partial = Path(tmp) / library.name
        cmd = [compiler, *_FLAGS, f"-I{jax.ffi.include_dir()}", str(_SOURCE), "-o", str(partial)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"compiling {_SOURCE.name} failed ({' '.join(cmd)}): {done.stderr.strip()[-1000:]}"
            )
        os.replace(partial, library)


@functools.cache
def load() -> tuple[ctypes.CDLL | None, str]:
    """Build (or find in the cache) and load the library once per process.

    Returns ``(library, "")``, or ``(None, reason)`` when it cannot be had: no compiler,
    a failed build (remembered), or a library that does not load.
    """
    compiler = _compiler()
    if compiler is None:
        return None, "no C++ compiler found (set CXX or install g++)"
    cache = _cache_dir()
    key = _key(compiler)
    library = cache / f"even_odd-{key}.so"
    failed = cache / f"even_odd-{key}.failed"
    if failed.exists():
        reason = failed.read_text().strip()
        return None, f"{reason} (an earlier build failed; delete {failed} to retry)"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not library.exists():
            _compile(compiler, library)
        try:
            return ctypes.cdll.LoadLibrary(str(library)), ""
        except OSError:  # a damaged cache entry: build it once more
            library.unlink(missing_ok=True)
            _compile(compiler, library)
            return ctypes.cdll.LoadLibrary(str(library)), ""
    except (OSError, RuntimeError) as err:
        reason = f"{type(err).__name__}: {err}"
        try:
            failed.write_text(reason + "\n")
        except OSError:
            pass  # an unwritable cache: the failure is only remembered in this process
        return None, reason
