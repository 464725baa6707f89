"""Chiral layer normalisation: statistics of each sample that the transform leaves alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes

from chiral_jax._layout import ChiralLayout
from chiral_jax._norm import TiedAffine

_ONES = nnx.initializers.ones_init()
_ZEROS = nnx.initializers.zeros_init()


def centred_layer_norm(
    x: jax.Array,
    centred: np.ndarray,
    scale: jax.Array | None,
    offset: jax.Array | None,
    epsilon: float,
) -> jax.Array:
    """Layer norm over the last axis that centres only the channels where ``centred`` holds.

    ``y = (x - m * centred) / sqrt(v + epsilon) * scale + offset`` per sample, with ``m``
    the mean of the centred channels and ``v`` the mean square of the centred ``x`` over
    all channels. Shapes: ``x [..., C]``, ``centred [C]`` (bool), ``scale``, ``offset`` ``[C]``
    or None.
    """

    def last(v):  # [C] -> [1, ..., 1, C]
        return jnp.reshape(v, (1,) * (x.ndim - 1) + (-1,))

    count = int(np.sum(centred))
    if count:
        mask = last(jnp.asarray(centred, x.dtype))
        mean = jnp.sum(x * mask, axis=-1, keepdims=True) / count
        x = x - mean * mask
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + epsilon)
    if scale is not None:
        y = y * last(scale)
    return y if offset is None else y + last(offset)


class ChiralLayerNorm(TiedAffine):
    """Layer norm whose statistics the transform leaves alone: ``f(T x) = T f(x)``.

    A sample's mean over every channel flips with its negated channels, so it is taken
    over the positive channels only and subtracted from them alone (negated channels
    are left uncentred: a shift would break their sign); the scale is the root mean
    square of all centred channels, which the transform only permutes and negates. The
    affine part is tied as in :class:`ChiralBatchNorm`: the scale like an unsigned bias
    (``gamma_r = gamma_l``), the offset like a bias (``beta_r = s * beta_l``,
    ``beta_cn = 0``). With no negated channels it is the ordinary layer norm.

    Shapes: ``x [..., layout.size] -> same`` (statistics over the last axis).

    Args:
      layout: the channel layout (e.g. one token's: ``ChiralLayout.hidden(0, 1, D, 1/3)``).
      epsilon: added to the mean square.
      use_scale, use_bias: the affine part, each on or off.
      dtype, param_dtype, scale_init, bias_init, rngs: as ``nnx.LayerNorm``.
    """

    def __init__(
        self,
        layout: ChiralLayout,
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        scale_init=_ONES,
        bias_init=_ZEROS,
        rngs: nnx.Rngs,
    ):
        self.layout = self.layout_in = self.layout_out = layout
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self._init_affine(layout, use_scale, use_bias, scale_init, bias_init, param_dtype, rngs)

    @property
    def centred(self) -> np.ndarray:
        """``[layout.size]`` bool: the positive channels, the ones centred."""
        return self.layout.signs > 0

    def __call__(self, x: jax.Array) -> jax.Array:
        self.layout.check_features(x, "ChiralLayerNorm input")
        with jax.named_scope("ChiralLayerNorm"):
            x, scale, offset = dtypes.promote_dtype(
                (x, self.scale(), self.offset()), dtype=self.dtype
            )
            return centred_layer_norm(x, self.centred, scale, offset, self.epsilon)

    def to_plain(self, rngs: nnx.Rngs | None = None) -> CentredLayerNorm:
        """A :class:`CentredLayerNorm` with the assembled scale and offset (no tying)."""
        plain = CentredLayerNorm(
            self.centred,
            epsilon=self.epsilon,
            use_scale=self.free_scale is not None,
            use_bias=self.free_offset is not None,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            rngs=rngs or nnx.Rngs(0),
        )
        if plain.scale is not None:
            plain.scale[...] = self.scale()
        if plain.bias is not None:
            plain.bias[...] = self.offset()
        return plain


class CentredLayerNorm(nnx.Module):
    """The plain twin of :class:`ChiralLayerNorm`: the same statistics, a free affine part.

    Shapes: ``x [..., C] -> same``; ``centred`` (``[C]`` bool) marks the channels centred.
    """

    def __init__(
        self,
        centred,
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        del rngs  # ones and zeros: nothing to draw (the argument mirrors nnx.LayerNorm's)
        self.centred = tuple(bool(c) for c in np.asarray(centred).reshape(-1))
        self.epsilon = epsilon
        self.dtype = dtype
        size = len(self.centred)
        self.scale = nnx.Param(jnp.ones((size,), param_dtype)) if use_scale else None
        self.bias = nnx.Param(jnp.zeros((size,), param_dtype)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        x, scale, bias = dtypes.promote_dtype((x, scale, bias), dtype=self.dtype)
        return centred_layer_norm(x, np.asarray(self.centred), scale, bias, self.epsilon)
