"""An activation as a chiral module: odd on negated channels, any function on the others."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax._module import ChiralModule
from chiral_jax.activations import activation, odd_activation
from chiral_jax.even_odd import EvenOdd, joint_parts, mix_pairs

Fn = str | Callable[[jax.Array], jax.Array]


def _mixed(odd: Callable, even: Callable, negated: np.ndarray) -> Callable:
    """``x -> odd(x)`` on the channels where ``negated`` (a ``[C]`` mask) holds, ``even(x)``
    elsewhere; channels on the last axis."""

    def fn(x: jax.Array) -> jax.Array:
        mask = jnp.reshape(negated, (1,) * (x.ndim - 1) + (-1,))
        return jnp.where(mask, odd(x), even(x))

    return fn


class ChiralActivation(ChiralModule):
    """An elementwise activation as a chiral module: ``odd`` on negated channels and
    ``even`` on the channels that keep their sign.

    The transform moves a channel only to a channel of the same kind: a negated one
    (its sign flips, so the function must be odd, ``f(-x) = -f(x)``) or a positive one
    (any function commutes with a swap). So ``ChiralActivation("tanh")`` applies tanh to
    every channel and works for any layout (``layout_in = layout_out = None``), while
    ``ChiralActivation(odd="tanh", even="gelu", layout=layout)`` keeps GELU's shape
    where the symmetry allows it and needs the layout to know which channels are which.

    Shapes: ``[..., layout.size]`` (any shape without ``even``) -> the same.

    Args:
      odd: an odd function, a name in :data:`chiral_jax.activations.ODD_ACTIVATIONS` or a
        callable (checked: a function that is not odd raises ``ValueError``).
      even: None (``odd`` everywhere) or any function, a name in
        :data:`chiral_jax.activations.ACTIVATIONS` or a callable, for positive channels.
      layout: the channels' layout; required with ``even``.

    :meth:`even_odd`: one map over the pairs, with or without ``even``.
    """

    def __init__(self, odd: Fn = "tanh", *, even: Fn | None = None, layout=None):
        self.odd = odd_activation(odd)
        if even is None:
            self.even = None
            self.layout_in = self.layout_out = None
            self.fn = self.odd
            return
        if not isinstance(layout, ChiralLayout):
            raise ValueError(
                "ChiralActivation(even=...) needs the layout (which channels are negated)"
            )
        self.even = activation(even)
        self.layout_in = self.layout_out = layout
        self.fn = _mixed(self.odd, self.even, layout.signs < 0)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.layout_in is not None:
            self.layout_in.check_features(x, "ChiralActivation input")
        return self.fn(x)

    def even_odd(self, z: EvenOdd, *, scale: jax.Array | None = None) -> EvenOdd:
        """The activation on :class:`~chiral_jax.even_odd.EvenOdd` activations.

        With ``x_L = p`` and ``x_R = s q`` for a pair, ``u' = f(p) + f(q)`` and
        ``v' = f(p) - f(q)`` hold for an odd ``f`` on negated dims and for any ``f`` on
        positive ones (``s = 1``), so each pair channel takes its own function; the
        centre channels of ``plus`` are positive, those of ``minus`` negated. ``scale``:
        a joint-basis multiplier of the result (a dropout mask, see :meth:`EvenOdd.map`).
        """
        if self.even is None:
            return z.map(self.odd, scale=scale)
        self._check_even_odd(z)
        layout = self.layout_in
        neg, pos = len(layout.negated), len(layout.positive)
        pair = np.tile(np.r_[np.ones(neg, bool), np.zeros(pos, bool)], len(layout.left))
        fns = (_mixed(self.odd, self.even, pair), self.even, self.odd)
        parts = None if scale is None else joint_parts(scale, layout)
        plus, minus = mix_pairs(z.plus, z.minus, pair.size, fns, parts)
        return EvenOdd(plus, minus, layout)

    def to_plain(self, rngs: nnx.Rngs | None = None) -> Callable[[jax.Array], jax.Array]:
        """The function itself (plain Flax containers such as ``nnx.Sequential`` take it)."""
        return self.fn
