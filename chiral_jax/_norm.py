"""Chiral batch normalisation: statistics of the batch united with its mirror."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes

from chiral_jax import even_odd
from chiral_jax._layout import ChiralLayout
from chiral_jax._module import ChiralModule
from chiral_jax._variables import ChiralParam
from chiral_jax.even_odd import EvenOdd
from chiral_jax.generators import ChiralGenerator, gather

_ONES = nnx.initializers.ones_init()
_ZEROS = nnx.initializers.zeros_init()


def _bcast(v: jax.Array, ndim: int) -> jax.Array:
    return jnp.reshape(v, (1,) * (ndim - 1) + (-1,))


class TiedAffine(ChiralModule):
    """The affine part of the chiral norms: a scale tied like a bias that never changes
    sign (``gamma_r = gamma_l``) and an offset tied like a bias (``beta_r = s * beta_l``,
    ``beta_cn = 0``), each stored packed (``free_scale``, ``free_offset``; None when off)."""

    def _init_affine(
        self, layout: ChiralLayout, use_scale, use_bias, scale_init, bias_init, param_dtype, rngs
    ) -> None:
        self._offset_gen = ChiralGenerator(layout, layout)
        self._scale_gen = ChiralGenerator(layout.unsigned(), layout.unsigned())
        key = rngs.params()

        def free(gen: ChiralGenerator, init) -> ChiralParam:
            drawn = init(key, (layout.size,), param_dtype)
            return ChiralParam(jnp.asarray(gen.pack(gen.select_bias(drawn), "bias")))

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


class ChiralBatchNorm(TiedAffine):
    """Batch norm whose statistics are those of the batch and its mirror image.

    With ``m = E[x]`` and ``q = E[x^2]`` over every axis but the last,
    ``mu = (m + T m) / 2`` and ``E[x^2]`` is averaged with its unsigned swap, so
    ``mu`` is mirror symmetric and ``var`` is swap symmetric; normalising then
    commutes with ``T``: ``f(T x) = T f(x)`` in training and in evaluation. The
    scale is tied like an unsigned bias (``gamma_r = gamma_l``), the offset like
    a bias (``beta_r = s * beta_l``, ``beta_cn = 0``). Train with 50% mirrored
    samples so that batch statistics match this assumption.

    Shapes: ``x [..., layout.size] -> same``. In the even/odd basis (:meth:`even_odd`)
    it is one multiply-add per channel, with the statistics computed in that basis.

    Args:
      layout: the channel layout.
      use_running_average: use the stored statistics (``model.eval()`` sets it).
      momentum: running-average decay, Flax convention
        ``ra = momentum * ra + (1 - momentum) * batch`` (PyTorch's 0.1 is 0.9 here): a
        float, or a scalar ``nnx.Variable`` (state: a schedule can change it between
        steps without retracing a jitted step).
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
        self.layout = self.layout_in = self.layout_out = layout
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
        self._init_affine(layout, use_scale, use_bias, scale_init, bias_init, param_dtype, rngs)

    def _mirror_stats(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        axes = tuple(range(x.ndim - 1))
        m = jnp.mean(x, axis=axes)
        q = jnp.mean(jnp.square(x), axis=axes)
        if self.axis_name is not None:
            m, q = jax.lax.pmean((m, q), self.axis_name)
        # (v + T v) / 2 with one gather of the mirror partners each (not the layout's
        # general transform): one op each way per vector.
        perm, signs = self.layout.permutation, jnp.asarray(self.layout.signs, m.dtype)
        mu = (m + signs * gather(m, perm)) / 2
        q = (q + gather(q, perm)) / 2
        return mu, jnp.maximum(q - jnp.square(mu), 0.0)

    def _use_running_average(self, flag: bool | None) -> bool:
        return self.use_running_average if flag is None else flag

    def _update_running(self, mean: jax.Array, var: jax.Array) -> None:
        self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
        self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None) -> jax.Array:
        self.layout.check_features(x, "ChiralBatchNorm input")
        with jax.named_scope("ChiralBatchNorm"):
            if self._use_running_average(use_running_average):
                mean, var = self.mean[...], self.var[...]
            else:
                mean, var = self._mirror_stats(x.astype(jnp.float32))
                self._update_running(mean, var)
            x, mean, var, scale, offset = dtypes.promote_dtype(
                (x, mean, var, self.scale(), self.offset()), dtype=self.dtype
            )
            mul = jax.lax.rsqrt(var + self.epsilon)
            if scale is not None:
                mul = mul * scale
            y = (x - _bcast(mean, x.ndim)) * _bcast(mul, x.ndim)
            return y if offset is None else y + _bcast(offset, x.ndim)

    def even_odd(self, z: EvenOdd, *, use_running_average: bool | None = None) -> EvenOdd:
        """Batch norm on even/odd activations, with no basis change.

        Batch norm is ``x * m + c`` per channel with ``m`` swap symmetric and ``c``
        mirror symmetric, which this basis keeps diagonal: a pair's ``u`` and ``v`` both
        scale by ``m_L``, ``u`` shifts by ``2 c_L`` and ``v`` not at all. In training the
        united batch statistics come from this basis too
        (:func:`chiral_jax.even_odd.channel_stats`), per even/odd channel, and the
        running averages are updated exactly as the joint-basis call updates them.
        """
        self._check_even_odd(z)
        layout = self.layout
        with jax.named_scope("ChiralBatchNorm.even_odd"):
            if self._use_running_average(use_running_average):
                stats = even_odd.stats_from_joint(self.mean[...], self.var[...], layout)
            else:
                stats = even_odd.channel_stats(z, self.axis_name)
                self._update_running(*even_odd.stats_to_joint(stats, layout))
            plus_src, minus_src = even_odd.channel_sources(layout)
            scale_plus = scale_minus = offset = None
            if self.free_scale is not None:
                free = self.free_scale[...]
                scale_plus = self._scale_gen.assemble_packed(free, "bias", at=plus_src)
                scale_minus = self._scale_gen.assemble_packed(free, "bias", at=minus_src)
            if self.free_offset is not None:
                # The packed offset [b_l, b_cp] is already per even channel.
                offset = self.free_offset[...]
            mean, var_plus, var_minus, scale_plus, scale_minus, offset = dtypes.promote_dtype(
                (*stats, scale_plus, scale_minus, offset), dtype=self.dtype
            )
            dtype = self.dtype or jnp.result_type(z.plus, mean)
            mul_plus = jax.lax.rsqrt(var_plus + self.epsilon)
            mul_minus = jax.lax.rsqrt(var_minus + self.epsilon)
            if scale_plus is not None:
                mul_plus, mul_minus = mul_plus * scale_plus, mul_minus * scale_minus
            shift = -mean * mul_plus
            if offset is not None:
                shift = shift + offset
            shift = shift * even_odd.shift_factor(layout, shift.dtype)
            plus = z.plus.astype(dtype) * _bcast(mul_plus.astype(dtype), z.plus.ndim)
            minus = z.minus.astype(dtype) * _bcast(mul_minus.astype(dtype), z.minus.ndim)
            return EvenOdd(plus + _bcast(shift.astype(dtype), plus.ndim), minus, layout)

    def to_plain(self, rngs: nnx.Rngs | None = None) -> nnx.BatchNorm:
        """An ``nnx.BatchNorm`` with the same affine and running statistics.

        Equal to this layer in evaluation mode (``use_running_average=True``); in
        training it would not symmetrise the batch statistics.
        """
        plain = nnx.BatchNorm(
            self.layout.size,
            use_running_average=True,
            momentum=float(jnp.asarray(self.momentum)),
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
