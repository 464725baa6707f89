"""Equivariance assertions for users' own models (built on chex)."""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from chiral_jax._layout import ChiralLayout


def equivariance_error(
    fn: Callable, layout_in: ChiralLayout, layout_out: ChiralLayout | None, x
) -> jax.Array:
    """``max|f(T_in x) - T_out f(x)| / max|f(x)|`` (``T_out = I`` when ``layout_out`` is None)."""
    y = fn(x)
    y_mirror = fn(layout_in.transform(x))
    expected = y if layout_out is None else layout_out.transform(y)
    scale = jnp.maximum(jnp.max(jnp.abs(expected)), jnp.finfo(expected.dtype).tiny)
    return jnp.max(jnp.abs(y_mirror - expected)) / scale


def assert_equivariant(
    fn: Callable,
    layout_in: ChiralLayout,
    layout_out: ChiralLayout | None,
    x,
    *,
    rtol: float = 1e-5,
    check_involution: bool = True,
) -> None:
    """Assert ``fn(T_in x) == T_out fn(x)`` to ``rtol`` relative to ``max|fn(x)|``.

    Checks both elements of the chirality group: the mirror ``T`` and, with
    ``check_involution``, the identity reached as ``T(T x) = x`` (so a transform
    that is not an involution, or a stateful ``fn``, is caught too).

    Args:
      fn: any function of ``x`` (a jitted or vmapped model, a gradient...).
      layout_in: the layout of ``x``'s trailing axes (``[..., J*D]`` or ``[..., J, D]``).
      layout_out: the output layout; ``None`` asserts invariance ``fn(T x) == fn(x)``.
      x: an input batch.
      rtol: tolerance relative to the largest output magnitude (1e-5 suits
        float32 layers; use ~1e-12 under x64 and ~1e-2 for bfloat16).

    >>> from flax import nnx
    >>> from chiral_jax import ChiralLinear
    >>> from chiral_jax.skeletons import H36M_17
    >>> lin = ChiralLinear(H36M_17.layout(2), H36M_17.layout(3), rngs=nnx.Rngs(0))
    >>> x = jax.random.normal(jax.random.key(0), (8, 34))
    >>> assert_equivariant(lin, H36M_17.layout(2), H36M_17.layout(3), x)
    """
    y = fn(x)
    y_mirror = fn(layout_in.transform(x))
    expected = y if layout_out is None else layout_out.transform(y)
    chex.assert_equal_shape([y_mirror, expected])
    chex.assert_tree_all_finite(y)
    atol = rtol * float(jnp.max(jnp.abs(expected)))
    what = "invariant" if layout_out is None else "equivariant"
    try:
        chex.assert_trees_all_close(y_mirror, expected, rtol=rtol, atol=atol)
    except AssertionError as err:
        err_rel = float(jnp.max(jnp.abs(y_mirror - expected))) / max(atol / rtol, 1e-30)
        raise AssertionError(
            f"function is not chirality {what}: max |f(T x) - T f(x)| / max |f(x)| = "
            f"{err_rel:.3g} > rtol={rtol:g}\n{err}"
        ) from err
    if check_involution:
        back = layout_in.transform(layout_in.transform(x))
        chex.assert_trees_all_close(back, x, rtol=0, atol=0)
        chex.assert_trees_all_close(fn(back), y, rtol=rtol, atol=atol)
