"""Dropout as a chiral module."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax._module import ChiralModule
from chiral_jax.even_odd import EvenOdd


class ChiralDropout(ChiralModule):
    """``nnx.Dropout`` on either form of activations; any layout.

    Dropout is equivariant in distribution: the mirrored input's masks are as likely as
    the input's. On :class:`~chiral_jax.even_odd.EvenOdd` activations the mask is drawn
    over the joint-basis channels (:meth:`scale`, in the layout's order), as the
    joint-basis call draws it, and multiplies the joint-basis values
    (:meth:`EvenOdd.map` with ``scale``).

    Args: as ``nnx.Dropout`` (``rate``, ``deterministic``, ``rngs``...).
    """

    def __init__(self, rate: float, **kwargs):
        self.dropout = nnx.Dropout(rate, **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(x)

    @property
    def active(self) -> bool:
        """Whether a call drops anything (training mode and a positive rate)."""
        return not self.dropout.deterministic and self.dropout.rate > 0

    def scale(self, z: EvenOdd) -> jax.Array:
        """A dropout mask for ``z``'s joint-basis channels, ``[..., layout.size]``: 0 where
        dropped, ``1 / keep`` elsewhere (what a joint-basis call multiplies by)."""
        shape = z.plus.shape[:-1] + (z.layout.size,)
        return self.dropout(jnp.ones(shape, z.plus.dtype))

    def even_odd(self, z: EvenOdd) -> EvenOdd:
        """Dropout on even/odd activations (masks over joint-basis channels)."""
        if not self.active:
            return z
        return z.map("identity", scale=self.scale(z))

    def to_plain(self, rngs: nnx.Rngs | None = None) -> nnx.Dropout:
        """The wrapped ``nnx.Dropout``."""
        return self.dropout
