"""Fused CPU kernels for the even/odd basis, as JAX primitives over XLA's FFI.

Two jobs that XLA's CPU fusions do in several passes run here in one
(``csrc/even_odd.cc``):

* **The odd activation** (:func:`odd_pair_map`). On
  :class:`~chiral_jax.eigen.EigenActivations` it has to mix each pair's ``u`` and ``v``:
  ``u' = f(p) + f(q)``, ``v' = f(p) - f(q)`` with ``p, q = (u +- v) / 2``. XLA either
  evaluates ``f`` twice per value or writes ``f(p)``, ``f(q)`` to memory in between,
  about twice the cost of the plain network's ``tanh``. The kernel reads ``u, v`` and
  writes ``u', v'`` in place; its backward pass needs only the outputs. Its JVP is a
  second primitive, ``J(y) t``, which is its own transpose (``J`` is symmetric).
* **The basis changes** (:func:`split`, :func:`merge`: ``to_eigen`` and ``from_eigen``
  on canonical layouts), each the other's transpose. XLA emits the pair sums, the
  strided centre slices and the concatenation as separate kernels.

So ``grad``, ``jvp``, ``jacfwd``, Hessians and ``vmap`` all work. Each primitive lowers
to its kernel on CPU for float32 when the kernels are available, and to the equivalent
XLA ops everywhere else (GPU, TPU, other dtypes, no compiler, and computations that XLA
partitions over several devices, which cannot split a custom call): the same numbers.

The kernels are compiled on first use with the system C++ compiler (``$CXX``, else
``c++``/``g++``), against the FFI headers of the installed jaxlib and for the host CPU
(``-march=native``), and cached in ``$CHIRAL_JAX_CACHE_DIR`` (default
``~/.cache/chiral_jax``) under a key of the source, the jax and jaxlib versions, the
flags and the CPU. Without a compiler, or with ``CHIRAL_JAX_NATIVE=0``,
:func:`available` is ``False`` (with one warning naming the reason).
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

_SOURCE = Path(__file__).parent / "csrc" / "even_odd.cc"
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-w")
# FFI target name -> the handler's symbol in the library.
KERNEL_TARGETS = {
    "chiral_odd_map_forward": "ChiralOddMapForward",
    "chiral_odd_map_backward": "ChiralOddMapBackward",
    "chiral_split": "ChiralSplit",
    "chiral_merge": "ChiralMerge",
}

#: The activations with a fused kernel, by name, and their codes in the kernel.
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


def _build(compiler: str) -> Path:
    """Compile the kernel (or find it in the cache); returns the shared library's path."""
    include = jax.ffi.include_dir()
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), jax.__version__, jaxlib.__version__, " ".join(_FLAGS),
                 compiler, _cpu_signature()):
        key.update(part if isinstance(part, bytes) else part.encode())
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    library = cache / f"even_odd-{key.hexdigest()[:16]}.so"
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
        path = _build(compiler)
        try:
            library = ctypes.cdll.LoadLibrary(str(path))
        except OSError:  # a damaged cache entry: build it once more
            path.unlink(missing_ok=True)
            library = ctypes.cdll.LoadLibrary(str(_build(compiler)))
    except Exception as err:  # an optional speed-up: any failure means XLA ops instead
        return False, f"{type(err).__name__}: {err}"
    for target, symbol in KERNEL_TARGETS.items():
        jax.ffi.register_ffi_target(
            target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )
    return True, ""


def available() -> bool:
    """Whether the fused kernels are built and registered (builds them on the first call)."""
    ok, reason = _load()
    if not ok:
        _warn_once(reason)
    return ok


def unavailable_reason() -> str:
    """Why the kernels are unavailable (empty when they are available)."""
    return _load()[1]


@functools.cache
def _warn_once(reason: str) -> None:
    warnings.warn(
        f"chiral_jax: the fused CPU kernels are unavailable ({reason}); "
        "using XLA ops (same results, slower)",
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


def _partitioned_by_xla(ctx) -> bool:
    """Whether XLA's SPMD partitioner will split this computation (a ``jit`` over several
    devices, or the automatic axes of a ``shard_map``). It cannot split a custom call and
    would gather its operands onto every device, so the XLA ops are used there instead."""
    axis_context = ctx.module_context.axis_context
    if getattr(axis_context, "num_devices", 1) > 1:
        return True
    mesh, manual = getattr(axis_context, "mesh", None), getattr(axis_context, "manual_axes", None)
    if mesh is None or manual is None:
        return False
    return any(size > 1 for name, size in mesh.shape.items() if name not in manual)


def _primitive(name: str, target: str, xla_fn, out_shapes, ffi_attrs, aliases) -> Primitive:
    """A primitive lowered to the FFI ``target`` on CPU (float32, kernel available) and to
    ``xla_fn`` elsewhere. ``out_shapes(*in_shapes, **params)`` gives the output shapes
    (dtype of the first operand), ``ffi_attrs(**params)`` the kernel's attributes, and
    ``aliases`` maps operands to the outputs they may overwrite."""
    prim = Primitive(name)
    prim.multiple_results = True

    @functools.cache
    def compiled(**params):
        return jax.jit(functools.partial(prim.bind, **params))

    def abstract(*avals, **params):
        shapes = out_shapes(*(a.shape for a in avals), **params)
        return tuple(jax.core.ShapedArray(shape, avals[0].dtype) for shape in shapes)

    prim.def_impl(lambda *args, **params: compiled(**params)(*args))
    prim.def_abstract_eval(abstract)

    def ffi(*args, **params):
        shapes = out_shapes(*(a.shape for a in args), **params)
        results = tuple(jax.ShapeDtypeStruct(shape, args[0].dtype) for shape in shapes)
        call = jax.ffi.ffi_call(target, results, input_output_aliases=aliases)
        return call(*args, **ffi_attrs(**params))

    fallback = mlir.lower_fun(xla_fn, multiple_results=True)
    native = mlir.lower_fun(ffi, multiple_results=True)

    def lower(ctx, *args, **params):
        avals = [*ctx.avals_in, *ctx.avals_out]
        f32 = all(a.dtype == jnp.float32 and a.size for a in avals)
        use_kernel = f32 and not _partitioned_by_xla(ctx) and available()
        return (native if use_kernel else fallback)(ctx, *args, **params)

    mlir.register_lowering(prim, fallback)
    mlir.register_lowering(prim, lower, platform="cpu")

    def batch(args, dims, **params):
        # Every operand gets the batch axis in front; the kernels treat it as more rows.
        size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
        args = [
            jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
            for a, d in zip(args, dims, strict=True)
        ]
        out = prim.bind(*args, **params)
        return out, (0,) * len(out)

    batching.primitive_batchers[prim] = batch
    return prim


def _same_shapes(plus, minus, *_, **__):
    return plus, minus


def _map_attrs(*, pairs: int, kind: str) -> dict:
    return dict(pairs=np.int64(pairs), kind=np.int32(KINDS[kind]))


_map_p = _primitive(
    "chiral_odd_map", "chiral_odd_map_forward", _xla_map, _same_shapes, _map_attrs, {0: 0, 1: 1}
)
_slope_p = _primitive(
    "chiral_odd_map_slope", "chiral_odd_map_backward", _xla_slope, _same_shapes, _map_attrs, {}
)


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


# --- Basis changes (canonical layouts) -------------------------------------------------
# Parameters: left (pairs of joints), centre (centre joints), joint_dims, negated (how many of
# each joint's joint_dims are negated: the first ones), scale.


def _basis_sizes(left: int, centre: int, joint_dims: int, negated: int) -> tuple[int, ...]:
    """``(joint-basis size, n+, n-)``."""
    pairs = left * joint_dims
    size = (2 * left + centre) * joint_dims
    return size, pairs + centre * (joint_dims - negated), pairs + centre * negated


def _split_shapes(x, *, left, centre, joint_dims, negated, scale):
    _, n_plus, n_minus = _basis_sizes(left, centre, joint_dims, negated)
    return (*x[:-1], n_plus), (*x[:-1], n_minus)


def _merge_shapes(plus, minus, *, left, centre, joint_dims, negated, scale):
    size, _, _ = _basis_sizes(left, centre, joint_dims, negated)
    return ((*plus[:-1], size),)


def _basis_attrs(*, left, centre, joint_dims, negated, scale) -> dict:
    return dict(left=np.int64(left), centre=np.int64(centre), dims=np.int64(joint_dims),
                negated=np.int64(negated), scale=np.float32(scale))


def pair_signs(*, left: int, joint_dims: int, negated: int, like: jax.Array) -> jax.Array:
    """``s`` over the flattened pair channels ``(left, joint_dims)`` of a canonical layout
    (``-1`` on each joint's first ``negated`` dims), shaped to broadcast against ``like``."""
    signs = np.tile(np.r_[-np.ones(negated), np.ones(joint_dims - negated)], left)
    return jnp.asarray(signs, like.dtype).reshape((1,) * (like.ndim - 1) + (-1,))


def _xla_split(x, *, left, centre, joint_dims, negated, scale):
    """``x -> (plus, minus)``: ``u, v = scale (x_L +- s x_R)``; centre dims split by sign."""
    pairs = left * joint_dims
    lead = x.shape[:-1]
    s = pair_signs(left=left, joint_dims=joint_dims, negated=negated, like=x)
    k = jnp.asarray(scale, x.dtype)
    x_l, x_r = x[..., :pairs], x[..., pairs : 2 * pairs]
    c = x[..., 2 * pairs :].reshape(lead + (centre, joint_dims))
    c_p = c[..., negated:].reshape(lead + (centre * (joint_dims - negated),))
    c_n = c[..., :negated].reshape(lead + (centre * negated,))
    return (
        jnp.concatenate([k * (x_l + s * x_r), c_p], axis=-1),
        jnp.concatenate([k * (x_l - s * x_r), c_n], axis=-1),
    )


def _xla_merge(plus, minus, *, left, centre, joint_dims, negated, scale):
    """``(plus, minus) -> x``: ``x_L = scale (u + v)``, ``x_R = scale s (u - v)``."""
    pairs = left * joint_dims
    lead = plus.shape[:-1]
    s = pair_signs(left=left, joint_dims=joint_dims, negated=negated, like=plus)
    k = jnp.asarray(scale, plus.dtype)
    u, v = plus[..., :pairs], minus[..., :pairs]
    c = jnp.concatenate(
        [minus[..., pairs:].reshape(lead + (centre, negated)),
         plus[..., pairs:].reshape(lead + (centre, joint_dims - negated))],
        axis=-1,
    ).reshape(lead + (centre * joint_dims,))
    return (jnp.concatenate([k * (u + v), k * s * (u - v), c], axis=-1),)


_split_p = _primitive("chiral_split", "chiral_split", _xla_split, _split_shapes, _basis_attrs, {})
_merge_p = _primitive("chiral_merge", "chiral_merge", _xla_merge, _merge_shapes, _basis_attrs, {})


def _linear_jvp(prim):
    def jvp(primals, tangents, **params):
        tangents = [ad.instantiate_zeros(t) for t in tangents]
        return prim.bind(*primals, **params), prim.bind(*tangents, **params)

    return jvp


def _split_transpose(cotangents, x, **params):
    # The transpose of u = k (x_L + s x_R), v = k (x_L - s x_R) is x_L = k (u + v),
    # x_R = k s (u - v): the merge with the same scale (centre channels: copies).
    return _merge_p.bind(*(ad.instantiate_zeros(c) for c in cotangents), **params)


def _merge_transpose(cotangents, plus, minus, **params):
    return _split_p.bind(ad.instantiate_zeros(cotangents[0]), **params)


ad.primitive_jvps[_split_p] = _linear_jvp(_split_p)
ad.primitive_jvps[_merge_p] = _linear_jvp(_merge_p)
ad.primitive_transposes[_split_p] = _split_transpose
ad.primitive_transposes[_merge_p] = _merge_transpose


def split(
    x: jax.Array, *, left: int, centre: int, joint_dims: int, negated: int, scale: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """A canonical joint-basis ``x [..., (2 left + centre) joint_dims]`` to ``(plus, minus)``.

    ``u, v = scale (x_L +- s x_R)`` (``s = -1`` on each joint's first ``negated`` dims),
    then the centre joints' positive / negated dims. ``scale=1`` is
    :func:`chiral_jax.eigen.to_eigen` on a canonical layout.
    """
    params = dict(
        left=left, centre=centre, joint_dims=joint_dims, negated=negated, scale=float(scale)
    )
    if x.shape[-1:] != (_basis_sizes(left, centre, joint_dims, negated)[0],):
        raise ValueError(f"split: x [..., {_basis_sizes(left, centre, joint_dims, negated)[0]}] "
                         f"expected for this layout, got {x.shape}")
    plus, minus = _split_p.bind(x, **params)
    return plus, minus


def merge(
    plus: jax.Array,
    minus: jax.Array,
    *,
    left: int,
    centre: int,
    joint_dims: int,
    negated: int,
    scale: float = 0.5,
) -> jax.Array:
    """The inverse shape of :func:`split`: ``x_L = scale (u + v)``, ``x_R = scale s (u - v)``.

    ``scale=1/2`` is :func:`chiral_jax.eigen.from_eigen` on a canonical layout.
    """
    params = dict(
        left=left, centre=centre, joint_dims=joint_dims, negated=negated, scale=float(scale)
    )
    _, n_plus, n_minus = _basis_sizes(left, centre, joint_dims, negated)
    if plus.shape[-1:] != (n_plus,) or minus.shape != plus.shape[:-1] + (n_minus,):
        raise ValueError(f"merge: plus [..., {n_plus}] and minus [..., {n_minus}] with equal "
                         f"leading axes expected for this layout, got {plus.shape}, {minus.shape}")
    (x,) = _merge_p.bind(plus, minus, **params)
    return x
