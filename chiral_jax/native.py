"""A fused CPU kernel for odd activations in the even/odd basis (XLA FFI).

An odd activation on :class:`~chiral_jax.eigen.EigenActivations` has to mix each pair's
``u`` and ``v``: ``u' = f(p) + f(q)``, ``v' = f(p) - f(q)`` with ``p, q = (u +- v) / 2``.
XLA's CPU fusions either evaluate ``f`` twice per value or write ``f(p)``, ``f(q)`` to
memory in between, which made the activation cost about twice the plain network's
``tanh``. :func:`odd_pair_map` does it in one pass per direction (``csrc/odd_map.cc``):
forward reads ``u, v`` and writes ``u', v'`` in place; backward needs only the outputs.

The kernel is compiled on first use with the system C++ compiler (``$CXX``, else
``c++``/``g++``), against the FFI headers of the installed jaxlib and for the host CPU
(``-march=native``), and cached in ``$CHIRAL_JAX_CACHE_DIR`` (default
``~/.cache/chiral_jax``) under a key of the source, the jaxlib version, the flags and
the CPU. Without a compiler, or with ``CHIRAL_JAX_NATIVE=0``, :func:`available` is
``False`` (with one warning naming the reason) and every caller keeps the pure-XLA path:
same numbers, only slower. The kernel is registered for the CPU platform only;
:func:`usable` also requires float32 arrays and a CPU default backend.
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
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from chiral_jax.activations import ODD_ACTIVATIONS

_SOURCE = Path(__file__).parent / "csrc" / "odd_map.cc"
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-w")
# FFI target name -> the handler's symbol in the library.
_TARGETS = {
    "chiral_odd_map_forward": "ChiralOddMapForward",
    "chiral_odd_map_backward": "ChiralOddMapBackward",
}

#: The activations with a fused kernel, by name, and their kernel codes.
KINDS = {"tanh": 0, "softsign": 1, "hardtanh": 2}


def kind_of(fn) -> str | None:
    """The fused kernel's name for ``fn`` (an activation function), or ``None``."""
    for name in KINDS:
        if ODD_ACTIVATIONS[name] is fn:
            return name
    return None


def _compiler() -> str | None:
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return shutil.which("c++") or shutil.which("g++")


def _cache_dir() -> Path:
    if os.environ.get("CHIRAL_JAX_CACHE_DIR"):
        return Path(os.environ["CHIRAL_JAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chiral_jax"


def _cpu_signature() -> str:
    """The host CPU's feature flags (``-march=native`` binaries are not portable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(compiler: str) -> Path:
    """Compile the kernel (or find it in the cache); returns the shared library's path."""
    include = jax.ffi.include_dir()
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), jax.__version__, jaxlib.__version__, " ".join(_FLAGS),
                 compiler, _cpu_signature()):
        key.update(part if isinstance(part, bytes) else part.encode())
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    library = cache / f"odd_map-{key.hexdigest()[:16]}.so"
    if library.exists():
        return library
    # Build beside the target and rename: concurrent builds (test workers) never see a
    # half-written library.
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        partial = Path(tmp) / library.name
        cmd = [compiler, *_FLAGS, f"-I{include}", str(_SOURCE), "-o", str(partial)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"compiling {_SOURCE.name} failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}"
            )
        os.replace(partial, library)
    return library


@functools.cache
def _load() -> tuple[bool, str]:
    """Build, load and register the kernel once per process: ``(ok, reason if not)``."""
    if os.environ.get("CHIRAL_JAX_NATIVE", "1") == "0":
        return False, "disabled by CHIRAL_JAX_NATIVE=0"
    compiler = _compiler()
    if compiler is None:
        return False, "no C++ compiler found (set CXX or install g++)"
    try:
        library = ctypes.cdll.LoadLibrary(str(_build(compiler)))
    except (OSError, RuntimeError) as err:
        return False, str(err)
    for target, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(
            target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )
    return True, ""


def available() -> bool:
    """Whether the fused kernel is built and registered (builds it on the first call)."""
    ok, reason = _load()
    if not ok:
        _warn_once(reason)
    return ok


def unavailable_reason() -> str:
    """Why the kernel is unavailable (empty when it is available)."""
    return _load()[1]


@functools.cache
def _warn_once(reason: str) -> None:
    warnings.warn(
        f"chiral_jax: the fused CPU activation kernel is unavailable ({reason}); "
        "using the XLA path (same results, slower)",
        RuntimeWarning,
        stacklevel=3,
    )


def usable(plus: jax.Array, minus: jax.Array) -> bool:
    """Whether :func:`odd_pair_map` can run on these arrays here."""
    return (
        plus.dtype == jnp.float32
        and minus.dtype == jnp.float32
        and plus.ndim >= 1
        and plus.shape[:-1] == minus.shape[:-1]
        and plus.size > 0
        and minus.size > 0
        and jax.default_backend() == "cpu"
        and available()
    )


def _call(target: str, outputs, *args, pairs: int, kind: str, aliases: dict[int, int]):
    if not available():
        raise RuntimeError(f"the fused activation kernel is unavailable ({unavailable_reason()})")
    shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in outputs)
    return jax.ffi.ffi_call(
        target, shapes, vmap_method="broadcast_all", input_output_aliases=aliases
    )(*args, pairs=np.int64(pairs), kind=np.int32(KINDS[kind]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def odd_pair_map(
    plus: jax.Array, minus: jax.Array, pairs: int, kind: str
) -> tuple[jax.Array, jax.Array]:
    """The odd activation ``kind`` on even/odd-basis arrays, fused (CPU, float32).

    Shapes: ``plus [..., n+]``, ``minus [..., n-]`` with the same leading axes; the first
    ``pairs`` channels of each are the pairs' ``u`` and ``v``, the rest centre channels.
    Returns ``(plus', minus')`` of the same shapes, equal to
    :meth:`EigenActivations.map <chiral_jax.eigen.EigenActivations.map>` on the XLA path
    (to float32 rounding). Check :func:`usable` first.
    """
    return _forward(plus, minus, pairs, kind)[0]


def _forward(plus, minus, pairs, kind):
    # The outputs overwrite the inputs' buffers (XLA copies first if an input lives on).
    out = _call("chiral_odd_map_forward", (plus, minus), plus, minus, pairs=pairs, kind=kind,
                aliases={0: 0, 1: 1})
    return tuple(out), tuple(out)


def _backward(pairs, kind, out, grads):
    d_plus, d_minus = _call("chiral_odd_map_backward", out, *out, *grads, pairs=pairs, kind=kind,
                            aliases={})
    return d_plus, d_minus


odd_pair_map.defvjp(_forward, _backward)
