"""An odd activation as a chiral module."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from chiral_jax._module import ChiralModule
from chiral_jax.activations import odd_activation
from chiral_jax.even_odd import EvenOdd


class ChiralActivation(ChiralModule):
    """An elementwise odd activation as a chiral module; rejects non-odd functions.

    Shapes: any; equivariant for every layout because ``f`` is odd and elementwise
    (``layout_in`` and ``layout_out`` are None: the layout passes through).
    :meth:`even_odd` applies it to even/odd activations (:meth:`EvenOdd.map`).
    """

    layout_in = layout_out = None

    def __init__(self, fn: str | Callable[[jax.Array], jax.Array] = "tanh"):
        self.fn = odd_activation(fn)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)

    def even_odd(self, z: EvenOdd) -> EvenOdd:
        """``f`` on :class:`~chiral_jax.even_odd.EvenOdd` activations (any layout)."""
        return z.map(self.fn)

    def to_plain(self, rngs: nnx.Rngs | None = None) -> Callable[[jax.Array], jax.Array]:
        """The function itself (plain Flax containers such as ``nnx.Sequential`` take it)."""
        return self.fn
