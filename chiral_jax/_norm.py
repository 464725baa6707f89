"""Chiral batch normalisation: statistics of the batch united with its mirror."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes

from chiral_jax._layout import ChiralLayout
from chiral_jax._variables import ChiralParam
from chiral_jax.generators import ChiralGenerator

_ONES = nnx.initializers.ones_init()
_ZEROS = nnx.initializers.zeros_init()


def _bcast(v: jax.Array, ndim: int) -> jax.Array:
    return jnp.reshape(v, (1,) * (ndim - 1) + (-1,))


class ChiralBatchNorm(nnx.Module):
    """Batch norm whose statistics are those of the batch and its mirror image.

    With ``m = E[x]`` and ``q = E[x^2]`` over every axis but the last,
    ``mu = (m + T m) / 2`` and ``E[x^2]`` is averaged with its unsigned swap, so
    ``mu`` is mirror symmetric and ``var`` is swap symmetric; normalising then
    commutes with ``T``: ``f(T x) = T f(x)`` in training and in evaluation. The
    scale is tied like an unsigned bias (``gamma_r = gamma_l``), the offset like
    a bias (``beta_r = s * beta_l``, ``beta_cn = 0``). Train with 50% mirrored
    samples so that batch statistics match this assumption.

    Shapes: ``x [..., layout.size] -> same``.

    Args:
      layout: the channel layout.
      use_running_average: use the stored statistics (``model.eval()`` sets it).
      momentum: running-average decay, Flax convention
        ``ra = momentum * ra + (1 - momentum) * batch`` (PyTorch's 0.1 is 0.9 here).
      epsilon: added to the variance.
      use_scale, use_bias: the affine part, each on or off.
      axis_name: a mapped axis name to average statistics across devices.
      dtype, param_dtype, scale_init, bias_init, rngs: as ``nnx.BatchNorm``.
    """

    def __init__(
        self,
        layout: ChiralLayout,
        *,
        use_running_average: bool = False,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        use_scale: bool = True,
        use_bias: bool = True,
        axis_name: str | None = None,
        dtype=None,
        param_dtype=jnp.float32,
        scale_init=_ONES,
        bias_init=_ZEROS,
        rngs: nnx.Rngs,
    ):
        self.layout = layout
        self.use_running_average = use_running_average
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_scale = use_scale
        self.use_bias = use_bias
        self.axis_name = axis_name
        self.dtype = dtype
        self.param_dtype = param_dtype
        n = layout.size
        self.mean = nnx.BatchStat(jnp.zeros((n,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((n,), jnp.float32))
        # The offset ties like a bias; the scale like a bias that never changes sign.
        self._offset_gen = ChiralGenerator(layout, layout)
        self._scale_gen = ChiralGenerator(layout.unsigned(), layout.unsigned())
        key = rngs.params()

        def free(gen: ChiralGenerator, init) -> ChiralParam:
            drawn = init(key, (n,), param_dtype)
            return ChiralParam(jnp.asarray(gen.pack(gen.select_bias(drawn), "bias")))

        # The free entries, packed (ChiralGenerator.pack); None where switched off.
        self.free_scale = free(self._scale_gen, scale_init) if use_scale else None
        self.free_offset = free(self._offset_gen, bias_init) if use_bias else None

    def scale(self) -> jax.Array | None:
        """The tied scale ``gamma``, shape ``[layout.size]`` (None without ``use_scale``)."""
        if self.free_scale is None:
            return None
        return self._scale_gen.assemble_packed(self.free_scale[...], "bias")

    def offset(self) -> jax.Array | None:
        """The tied offset ``beta``, shape ``[layout.size]`` (None without ``use_bias``)."""
        if self.free_offset is None:
            return None
        return self._offset_gen.assemble_packed(self.free_offset[...], "bias")

    def _mirror_stats(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        axes = tuple(range(x.ndim - 1))
        m = jnp.mean(x, axis=axes)
        q = jnp.mean(jnp.square(x), axis=axes)
        if self.axis_name is not None:
            m, q = jax.lax.pmean((m, q), self.axis_name)
        perm = self.layout.permutation
        signs = jnp.asarray(self.layout.signs, m.dtype)
        mu = (m + signs * jnp.take(m, perm)) / 2
        q = (q + jnp.take(q, perm)) / 2
        return mu, jnp.maximum(q - jnp.square(mu), 0.0)

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None) -> jax.Array:
        self.layout.check_features(x, "ChiralBatchNorm input")
        use_ra = self.use_running_average if use_running_average is None else use_running_average
        if use_ra:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var = self._mirror_stats(x.astype(jnp.float32))
            self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
            self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var
        x, mean, var, scale, offset = dtypes.promote_dtype(
            (x, mean, var, self.scale(), self.offset()), dtype=self.dtype
        )
        mul = jax.lax.rsqrt(var + self.epsilon)
        if scale is not None:
            mul = mul * scale
        y = (x - _bcast(mean, x.ndim)) * _bcast(mul, x.ndim)
        return y if offset is None else y + _bcast(offset, x.ndim)

    def to_plain(self, rngs: nnx.Rngs | None = None) -> nnx.BatchNorm:
        """An ``nnx.BatchNorm`` with the same affine and running statistics.

        Equal to this layer in evaluation mode (``use_running_average=True``); in
        training it would not symmetrise the batch statistics.
        """
        momentum = self.momentum
        if isinstance(momentum, nnx.Variable):  # momentum held as state by a model
            momentum = float(momentum[...])
        plain = nnx.BatchNorm(
            self.layout.size,
            use_running_average=True,
            momentum=momentum,
            epsilon=self.epsilon,
            use_scale=self.use_scale,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            rngs=rngs or nnx.Rngs(0),
        )
        plain.mean[...] = self.mean[...]
        plain.var[...] = self.var[...]
        if self.use_scale:
            plain.scale[...] = self.scale()
        if self.use_bias:
            plain.bias[...] = self.offset()
        return plain


