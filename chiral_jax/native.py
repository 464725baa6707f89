"""A fused CPU kernel for odd activations in the even/odd basis (XLA FFI primitives).

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
``False`` (with one warning naming the reason).

:func:`odd_pair_map` binds a JAX primitive with the full set of rules: its JVP is a
second primitive, the map's Jacobian-vector product ``J(y) t`` (which is its own
transpose: ``J`` is symmetric), so ``grad``, ``jvp``, ``jacfwd``, Hessians and ``vmap``
all work. Each primitive lowers to the FFI kernel on CPU for float32 when the kernel is
available, and to the equivalent XLA elementwise ops everywhere else (GPU, TPU, other
dtypes, no compiler): same numbers, only slower.
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
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from chiral_jax.activations import ODD_ACTIVATIONS

_SOURCE = Path(__file__).parent / "csrc" / "odd_map.cc"
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-w")
# FFI target name -> the handler's symbol in the library.
KERNEL_TARGETS = {
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
    for target, symbol in KERNEL_TARGETS.items():
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


# f'(x) in terms of y = f(x), per kernel.
_SLOPES = {
    "tanh": lambda y: 1 - y * y,
    "softsign": lambda y: jnp.square(1 - jnp.abs(y)),
    "hardtanh": lambda y: (jnp.abs(y) < 1).astype(y.dtype),
}


def mix_pairs(plus, minus, pairs: int, fn):
    """An odd ``fn`` in XLA ops: ``u' = f(p) + f(q)``, ``v' = f(p) - f(q)``, centre ``f(c)``.

    ``fn`` sees the joint-basis values ``p = (u + v) / 2``, ``q = (u - v) / 2`` and the
    centre channels, one array per call.
    """
    u, v = plus[..., :pairs], minus[..., :pairs]
    half = jnp.asarray(0.5, u.dtype)
    f_p, f_q = fn((u + v) * half), fn((u - v) * half)
    return (
        jnp.concatenate([f_p + f_q, fn(plus[..., pairs:])], axis=-1),
        jnp.concatenate([f_p - f_q, fn(minus[..., pairs:])], axis=-1),
    )


def _xla_map(plus, minus, *, pairs: int, kind: str):
    return mix_pairs(plus, minus, pairs, ODD_ACTIVATIONS[kind])


def _xla_slope(plus_out, minus_out, t_plus, t_minus, *, pairs: int, kind: str):
    """``J(y) t`` in XLA ops, from the map's outputs ``y``: the pairs' Jacobian is
    ``[[a + b, a - b], [a - b, a + b]] / 2`` with ``a = f'(p)``, ``b = f'(q)``."""
    slope = _SLOPES[kind]
    u, v = plus_out[..., :pairs], minus_out[..., :pairs]
    half = jnp.asarray(0.5, u.dtype)
    e_p = (t_plus[..., :pairs] + t_minus[..., :pairs]) * slope((u + v) * half)
    e_q = (t_plus[..., :pairs] - t_minus[..., :pairs]) * slope((u - v) * half)
    return (
        jnp.concatenate([(e_p + e_q) * half, t_plus[..., pairs:] * slope(plus_out[..., pairs:])],
                        axis=-1),
        jnp.concatenate([(e_p - e_q) * half, t_minus[..., pairs:] * slope(minus_out[..., pairs:])],
                        axis=-1),
    )


def _primitive(name: str, target: str, xla_fn, aliases: dict[int, int]) -> Primitive:
    """A primitive lowered to the FFI ``target`` on CPU (float32, kernel available) and to
    ``xla_fn`` elsewhere; outputs have the first two operands' shapes."""
    prim = Primitive(name)
    prim.multiple_results = True

    @functools.cache
    def compiled(**params):
        return jax.jit(functools.partial(prim.bind, **params))

    prim.def_impl(lambda *args, **params: compiled(**params)(*args))
    prim.def_abstract_eval(lambda *args, **_: (args[0].update(), args[1].update()))

    def ffi(*args, pairs, kind):
        shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args[:2])
        return jax.ffi.ffi_call(target, shapes, input_output_aliases=aliases)(
            *args, pairs=np.int64(pairs), kind=np.int32(KINDS[kind])
        )

    fallback = mlir.lower_fun(xla_fn, multiple_results=True)
    native = mlir.lower_fun(ffi, multiple_results=True)

    def lower(ctx, *args, **params):
        f32 = all(a.dtype == jnp.float32 and a.size for a in ctx.avals_in)
        return (native if f32 and available() else fallback)(ctx, *args, **params)

    mlir.register_lowering(prim, fallback)
    mlir.register_lowering(prim, lower, platform="cpu")

    def batch(args, dims, **params):
        # Every operand gets the batch axis in front; the kernel treats it as more rows.
        size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
        args = [
            jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
            for a, d in zip(args, dims, strict=True)
        ]
        return prim.bind(*args, **params), (0, 0)

    batching.primitive_batchers[prim] = batch
    return prim


_map_p = _primitive("chiral_odd_map", "chiral_odd_map_forward", _xla_map, {0: 0, 1: 1})
_slope_p = _primitive("chiral_odd_map_slope", "chiral_odd_map_backward", _xla_slope, {})


def _map_jvp(primals, tangents, **params):
    out = _map_p.bind(*primals, **params)
    t = [ad.instantiate_zeros(t) for t in tangents]
    return out, _slope_p.bind(*out, *t, **params)


def _slope_jvp(primals, tangents, **params):
    # Linear in t; through the outputs y by the XLA formula (second derivatives only).
    y_plus, y_minus, t_plus, t_minus = primals
    dy_plus, dy_minus, dt_plus, dt_minus = (ad.instantiate_zeros(t) for t in tangents)
    out, through_y = jax.jvp(
        lambda a, b: _xla_slope(a, b, t_plus, t_minus, **params),
        (y_plus, y_minus),
        (dy_plus, dy_minus),
    )
    through_t = _slope_p.bind(y_plus, y_minus, dt_plus, dt_minus, **params)
    return out, [a + b for a, b in zip(through_y, through_t, strict=True)]


def _slope_transpose(cotangents, plus_out, minus_out, t_plus, t_minus, **params):
    # J is symmetric: the transpose of t -> J t is g -> J g. y is never linear here.
    if ad.is_undefined_primal(plus_out) or ad.is_undefined_primal(minus_out):
        raise NotImplementedError("the activation slope is not linear in the outputs")
    cts = [ad.instantiate_zeros(c) for c in cotangents]
    d_plus, d_minus = _slope_p.bind(plus_out, minus_out, *cts, **params)
    return None, None, d_plus, d_minus


ad.primitive_jvps[_map_p] = _map_jvp
ad.primitive_jvps[_slope_p] = _slope_jvp
ad.primitive_transposes[_slope_p] = _slope_transpose


def odd_pair_map(
    plus: jax.Array, minus: jax.Array, pairs: int, kind: str
) -> tuple[jax.Array, jax.Array]:
    """The odd activation ``kind`` on even/odd-basis arrays, as one primitive.

    Shapes: ``plus [..., n+]``, ``minus [..., n-]`` with the same leading axes; the first
    ``pairs`` channels of each are the pairs' ``u`` and ``v``, the rest centre channels.
    Returns ``(plus', minus')`` of the same shapes. Runs the fused kernel on CPU for
    float32 (when :func:`available`), the same map in XLA ops otherwise.
    """
    if kind not in KINDS:
        raise ValueError(f"no fused kernel for {kind!r}; kernels: {sorted(KINDS)}")
    if plus.shape[:-1] != minus.shape[:-1] or not 0 <= pairs <= min(plus.shape[-1],
                                                                   minus.shape[-1]):
        raise ValueError(
            f"odd_pair_map needs plus [..., n+] and minus [..., n-] with equal leading axes "
            f"and pairs <= n+, n-; got {plus.shape}, {minus.shape}, pairs={pairs}"
        )
    plus, minus = _map_p.bind(plus, minus, pairs=int(pairs), kind=kind)
    return plus, minus
