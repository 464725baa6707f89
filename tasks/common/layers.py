"""Layers in a feature space: where a task model becomes plain or chiral.

A *space* describes the features a layer reads or writes: a
:class:`chiral_jax.ChiralLayout` (features the mirror acts on; the layer is chiral) or
an ``int`` channel count (plain features; the layer is the ordinary Flax one). A model
is plain or chiral only through the spaces it passes, so one code path builds both.

Each factory below builds the chiral layer when its input space is a layout and the
Flax layer when it is an ``int``, from the same arguments (the chiral-only ones,
``mode`` and ``impl``, are ignored by a plain layer). A chiral layer onto an ``int``
space is the *invariance layer*: its output layout is ``ChiralLayout.invariant(n)``,
``n`` channels the mirror leaves alone, which plain layers may read from then on. A
plain layer cannot write a layout (``TypeError``).

Every layer acts on the last axis, ``[..., size(space_in)] -> [..., size(space_out)]``
(a conv also over the axis before it, time), where ``size(space)`` is the layout's
``size`` or the ``int``.

>>> from chiral_jax.skeletons import H36M_17
>>> x = jnp.zeros((1, 5, 34))  # 5 frames of 17 joints x 2 dims
>>> invariant = conv(H36M_17.layout(2), 8, 3, rngs=nnx.Rngs(0))  # the invariance layer
>>> type(invariant).__name__, invariant.layout_out.size, invariant(x).shape
('ChiralConv1d', 8, (1, 3, 8))
>>> plain = conv(34, 8, 3, rngs=nnx.Rngs(0))
>>> type(plain).__name__, plain(x).shape
('Conv', (1, 3, 8))
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax import (
    ChiralActivation,
    ChiralBatchNorm,
    ChiralConv1d,
    ChiralEmbedding,
    ChiralLayerNorm,
    ChiralLayout,
    ChiralLinear,
    ChiralLSTMCell,
    ChiralMultiHeadAttention,
    Embedding,
)
from chiral_jax import activation as plain_activation
from chiral_jax._conv import Padding
from chiral_jax._tied import Impl
from chiral_jax.generators import Mode

Space = ChiralLayout | int
"""A feature space: a chiral layout, or the channel count of plain features."""


def _layout_out(space_in: Space, space_out: Space) -> ChiralLayout | None:
    """The output layout of the layer ``space_in -> space_out``; ``None`` when it is plain."""
    if isinstance(space_in, ChiralLayout):
        if isinstance(space_out, ChiralLayout):
            return space_out
        return ChiralLayout.invariant(space_out)
    if isinstance(space_out, ChiralLayout):
        raise TypeError(
            f"a plain layer (input space {space_in!r}) cannot write the chiral layout "
            f"{space_out!r}; pass its size for plain features"
        )
    return None


def conv(
    space_in: Space,
    space_out: Space,
    kernel: int,
    *,
    strides: int = 1,
    padding: Padding = "VALID",
    use_bias: bool = True,
    mode: Mode = "complete",
    impl: Impl = "auto",
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> ChiralConv1d | nnx.Conv:
    """A temporal convolution, :class:`chiral_jax.ChiralConv1d` or ``nnx.Conv``.

    Shapes: ``[B, T, size(space_in)] -> [B, T', size(space_out)]``, ``T'`` as ``lax``
    gives for ``kernel``, ``strides`` and ``padding`` (``"VALID"``, ``"SAME"``,
    ``"CAUSAL"``, an ``int`` on both ends or ``(lo, hi)``; the same in both layers).
    ``mode`` and ``impl``: the chiral layer's parameterisation and form.
    """
    layout_out = _layout_out(space_in, space_out)
    common = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if layout_out is not None:
        return ChiralConv1d(
            space_in,
            layout_out,
            kernel,
            strides=strides,
            padding=padding,
            mode=mode,
            impl=impl,
            **common,
        )
    if isinstance(padding, tuple):  # Flax reads (lo, hi) per spatial axis
        padding = (padding,)
    return nnx.Conv(space_in, space_out, (kernel,), strides=strides, padding=padding, **common)


def norm(
    space: Space,
    *,
    momentum: float,
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> ChiralBatchNorm | nnx.BatchNorm:
    """Batch norm over the last axis, :class:`chiral_jax.ChiralBatchNorm` or ``nnx.BatchNorm``.

    Shapes: ``[..., size(space)] -> [..., size(space)]``. ``momentum``: the
    running-average decay in Flax's convention (PyTorch's 0.1 is 0.9 here).
    """
    common = dict(momentum=momentum, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if isinstance(space, ChiralLayout):
        return ChiralBatchNorm(space, **common)
    return nnx.BatchNorm(space, **common)


def linear(
    space_in: Space,
    space_out: Space,
    *,
    use_bias: bool = True,
    mode: Mode = "complete",
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> ChiralLinear | nnx.Linear:
    """A dense layer, :class:`chiral_jax.ChiralLinear` or ``nnx.Linear``.

    Shapes: ``[..., size(space_in)] -> [..., size(space_out)]``.
    """
    layout_out = _layout_out(space_in, space_out)
    common = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if layout_out is not None:
        return ChiralLinear(space_in, layout_out, mode=mode, **common)
    return nnx.Linear(space_in, space_out, **common)


def lstm_cell(
    space_in: Space,
    space_hidden: Space,
    *,
    mode: Mode = "complete",
    dtype=None,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> ChiralLSTMCell | nnx.OptimizedLSTMCell:
    """An LSTM cell, :class:`chiral_jax.ChiralLSTMCell` or ``nnx.OptimizedLSTMCell``.

    Shapes: ``cell((c, h), x)`` with ``x [B, size(space_in)]`` and ``c, h [B,
    size(space_hidden)]`` returns ``((c', h'), h')``.
    """
    layout_hidden = _layout_out(space_in, space_hidden)
    common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if layout_hidden is not None:
        return ChiralLSTMCell(space_in, layout_hidden, mode=mode, **common)
    return nnx.OptimizedLSTMCell(space_in, space_hidden, **common)


def layer_norm(
    space: Space, *, epsilon: float = 1e-6, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs
) -> ChiralLayerNorm | nnx.LayerNorm:
    """Layer norm over the last axis, :class:`chiral_jax.ChiralLayerNorm` or ``nnx.LayerNorm``.

    Shapes: ``[..., size(space)] -> [..., size(space)]``.
    """
    common = dict(epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if isinstance(space, ChiralLayout):
        return ChiralLayerNorm(space, **common)
    return nnx.LayerNorm(space, **common)


def attention(
    space: Space, heads: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs
) -> ChiralMultiHeadAttention | nnx.MultiHeadAttention:
    """Self-attention over tokens, :class:`chiral_jax.ChiralMultiHeadAttention` or
    ``nnx.MultiHeadAttention``: ``heads`` heads splitting ``size(space)`` channels.

    Shapes: ``[..., tokens, size(space)] -> [..., tokens, size(space)]``.
    """
    common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if isinstance(space, ChiralLayout):
        return ChiralMultiHeadAttention(space, heads, **common)
    return nnx.MultiHeadAttention(heads, space, decode=False, **common)


def embedding(
    tokens: Space, features: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs
) -> ChiralEmbedding | Embedding:
    """A learned vector per token, added: :class:`chiral_jax.ChiralEmbedding` when
    ``tokens`` is a layout (its joints are the tokens, ``features`` its dims) or a free
    :class:`chiral_jax.Embedding` of ``tokens`` rows.

    Shapes: ``[..., T, features] -> [..., T, features]``, ``T`` at most the tokens.
    """
    if isinstance(tokens, ChiralLayout):
        if tokens.dims != features:
            raise ValueError(f"a layout of {tokens.dims} dims embeds {tokens.dims} features")
        return ChiralEmbedding(tokens, param_dtype=param_dtype, rngs=rngs)
    return Embedding(tokens, features, param_dtype=param_dtype, rngs=rngs)


def activation(
    space: Space, *, even: str = "gelu", odd: str = "tanh"
) -> ChiralActivation | Callable[[jax.Array], jax.Array]:
    """A pointwise nonlinearity: ``even`` on channels that keep their sign (every plain
    channel), ``odd`` on a layout's negated channels (:class:`chiral_jax.ChiralActivation`).

    Shapes: ``[..., size(space)] -> [..., size(space)]``.
    """
    if isinstance(space, ChiralLayout):
        return ChiralActivation(odd, even=even, layout=space)
    return plain_activation(even)
