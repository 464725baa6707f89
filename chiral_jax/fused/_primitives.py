"""The fused kernels as JAX primitives over XLA's FFI (CPU, float32).

Two jobs that XLA's CPU fusions do in several passes run here in one
(``csrc/even_odd.cc``):

* **The odd activation** (:func:`odd_pair_map`) on even/odd activations has to mix each
  pair's ``u`` and ``v``: ``u' = f(p) + f(q)``, ``v' = f(p) - f(q)`` with
  ``p, q = (u +- v) / 2``. The kernel reads ``u, v`` and writes ``u', v'`` in place; its
  backward pass needs only the outputs. Its JVP is a second primitive, ``J(y) t``, which
  is its own transpose (``J`` is symmetric).
* **The basis changes** (:func:`split`, :func:`merge`), each the other's transpose.

So ``grad``, ``jvp``, ``jacfwd``, Hessians and ``vmap`` all work. Each primitive lowers
to its kernel on CPU for float32, and to the XLA ops of :mod:`chiral_jax.even_odd`
everywhere else (other dtypes, other platforms, and computations that XLA partitions
over several devices, which cannot split a custom call): the same numbers. The
primitives use ``jax.extend`` and ``jax.interpreters`` (APIs without a compatibility
promise): that is why they are opt-in (:func:`chiral_jax.fused.enable`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from chiral_jax import even_odd
from chiral_jax._layout import ChiralLayout
from chiral_jax.activations import ODD_ACTIVATIONS

# FFI target name -> the handler's symbol in the library.
KERNEL_TARGETS = {
    "chiral_odd_map_forward": "ChiralOddMapForward",
    "chiral_odd_map_backward": "ChiralOddMapBackward",
    "chiral_split": "ChiralSplit",
    "chiral_merge": "ChiralMerge",
}

#: The activations with a fused kernel, by name, and their codes in the kernel.
KINDS = {"tanh": 0, "softsign": 1, "hardtanh": 2}


def register(library) -> None:
    """Register the loaded library's handlers as the FFI targets (CPU)."""
    for target, symbol in KERNEL_TARGETS.items():
        jax.ffi.register_ffi_target(
            target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )


# f'(x) in terms of y = f(x), per kernel.
_SLOPES = {
    "tanh": lambda y: 1 - y * y,
    "softsign": lambda y: jnp.square(1 - jnp.abs(y)),
    "hardtanh": lambda y: (jnp.abs(y) < 1).astype(y.dtype),
}


def _xla_map(plus, minus, *, pairs: int, kind: str):
    fn = ODD_ACTIVATIONS[kind]
    return even_odd.mix_pairs(plus, minus, pairs, (fn, fn, fn))


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
    """A primitive lowered to the FFI ``target`` on CPU (float32) and to
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
    kernel = mlir.lower_fun(ffi, multiple_results=True)

    def lower(ctx, *args, **params):
        avals = [*ctx.avals_in, *ctx.avals_out]
        f32 = all(a.dtype == jnp.float32 and a.size for a in avals)
        use_kernel = f32 and not _partitioned_by_xla(ctx)
        return (kernel if use_kernel else fallback)(ctx, *args, **params)

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
    float32, the same map in XLA ops otherwise.
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


def _layout(*, left, centre, joint_dims, negated) -> ChiralLayout:
    return ChiralLayout.hidden(left, centre, joint_dims, negated)


def _xla_split(x, *, left, centre, joint_dims, negated, scale):
    """``x -> (plus, minus)``: :func:`chiral_jax.even_odd.to_even_odd` with the pairs'
    ``u, v`` times ``scale``."""
    plus, minus = even_odd._split(x, _layout(left=left, centre=centre, joint_dims=joint_dims,
                                             negated=negated))
    return _scale_pairs(plus, left * joint_dims, scale), _scale_pairs(minus, left * joint_dims,
                                                                      scale)


def _xla_merge(plus, minus, *, left, centre, joint_dims, negated, scale):
    """``(plus, minus) -> x``: ``x_L = scale (u + v)``, ``x_R = scale s (u - v)``."""
    pairs, k = left * joint_dims, 2 * scale
    layout = _layout(left=left, centre=centre, joint_dims=joint_dims, negated=negated)
    return (even_odd._merge(_scale_pairs(plus, pairs, k), _scale_pairs(minus, pairs, k), layout),)


def _scale_pairs(a: jax.Array, pairs: int, scale: float) -> jax.Array:
    if scale == 1:
        return a
    return jnp.concatenate([jnp.asarray(scale, a.dtype) * a[..., :pairs], a[..., pairs:]], -1)


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


def _basis(layout: ChiralLayout) -> dict:
    return dict(left=len(layout.left), centre=len(layout.centre), joint_dims=layout.dims,
                negated=len(layout.negated))


def split(x: jax.Array, layout: ChiralLayout) -> tuple[jax.Array, jax.Array]:
    """:func:`chiral_jax.even_odd.to_even_odd` on a canonical layout, as one primitive."""
    plus, minus = _split_p.bind(x, **_basis(layout), scale=1.0)
    return plus, minus


def merge(plus: jax.Array, minus: jax.Array, layout: ChiralLayout) -> jax.Array:
    """:func:`chiral_jax.even_odd.from_even_odd` on a canonical layout, as one primitive."""
    (x,) = _merge_p.bind(plus, minus, **_basis(layout), scale=0.5)
    return x
