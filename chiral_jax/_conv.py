"""Chiral 1D temporal convolution."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax._tied import Impl, TiedKernel, default_bias_init, default_kernel_init
from chiral_jax.generators import Mode

Padding = str | int | tuple[int, int]
_PADDING_ERROR = "padding must be VALID, SAME, CAUSAL, an int or (lo, hi); got {!r}"


def resolve_padding(
    padding: Padding, kernel_size: int, dilation: int
) -> str | list[tuple[int, int]]:
    """Map ``"VALID" | "SAME" | "CAUSAL" | int | (lo, hi)`` to ``lax`` padding."""
    if isinstance(padding, str):
        name = padding.upper()
        if name == "CAUSAL":
            return [((kernel_size - 1) * dilation, 0)]
        if name in ("VALID", "SAME"):
            return name
        raise ValueError(_PADDING_ERROR.format(padding))
    if isinstance(padding, int):
        return [(padding, padding)]
    if len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [tuple(padding)]
    raise ValueError(_PADDING_ERROR.format(padding))


class ChiralConv1d(TiedKernel):
    """A temporal convolution with the chiral tying at every tap.

    Shapes: ``x [*batch, time, layout_in.size] -> y [*batch, time', layout_out.size]``
    (channels last and flattened joint-major, as ``nnx.Conv``; reshape ``[..., J, D]``
    poses with ``x.reshape(*x.shape[:-2], -1)``). Equivariance acts on channels
    only: ``f(T_in x) = T_out f(x)`` at every output frame.

    Args:
      layout_in, layout_out: channel layouts.
      kernel_size: taps ``K``.
      strides: temporal stride.
      dilation: temporal dilation (VideoPose3D's blocks use ``prod(widths[:i])``).
      padding: ``"VALID"`` (default, as VideoPose3D), ``"SAME"``, ``"CAUSAL"``
        (left pad ``(K-1)*dilation``: output frame t sees frames ``<= t``), an
        int, or an explicit ``(lo, hi)``.
      mode, use_bias, dtype, param_dtype, precision, kernel_init, bias_init,
      rngs, impl: as :class:`ChiralLinear`; ``kernel_init`` gets the full shape
      ``(K, n_in, n_out)`` so its fan-in counts the taps, as in ``nnx.Conv``. With
      ``impl="even_odd"`` both half-size convolutions use every tap.
    """

    def __init__(
        self,
        layout_in: ChiralLayout,
        layout_out: ChiralLayout,
        kernel_size: int,
        *,
        strides: int = 1,
        dilation: int = 1,
        padding: Padding = "VALID",
        mode: Mode = "complete",
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision: jax.lax.PrecisionLike = None,
        kernel_init=default_kernel_init,
        bias_init=default_bias_init,
        rngs: nnx.Rngs,
        impl: Impl = "auto",
    ):
        if kernel_size < 1 or strides < 1 or dilation < 1:
            raise ValueError(
                f"kernel_size, strides and dilation must be >= 1, got "
                f"{kernel_size}, {strides}, {dilation}"
            )
        resolve_padding(padding, kernel_size, dilation)
        super().__init__(
            layout_in,
            layout_out,
            mode=mode,
            lead=(kernel_size,),
            use_bias=use_bias,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            bias_init=bias_init,
            rngs=rngs,
            impl=impl,
        )
        self.kernel_size = kernel_size
        self.strides = strides
        self.dilation = dilation
        self.padding = padding
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision

    def __call__(self, x: jax.Array) -> jax.Array:
        self.layout_in.check_features(x, "ChiralConv1d input")
        return self.apply(x)

    def _op(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(f"ChiralConv1d expects [*batch, time, channels], got shape {x.shape}")
        batch = x.shape[:-2]
        y = jax.lax.conv_general_dilated(
            x.reshape((math.prod(batch),) + x.shape[-2:]),
            kernel,
            window_strides=(self.strides,),
            padding=resolve_padding(self.padding, self.kernel_size, self.dilation),
            rhs_dilation=(self.dilation,),
            dimension_numbers=("NWC", "WIO", "NWC"),
            precision=self.precision,
        )
        return y.reshape(batch + y.shape[-2:])

    def to_plain(self, rngs: nnx.Rngs | None = None) -> nnx.Conv:
        """An ``nnx.Conv`` holding the assembled kernel: same outputs, no tying (export)."""
        kernel, bias = self.dense_kernel()
        pad = resolve_padding(self.padding, self.kernel_size, self.dilation)
        plain = nnx.Conv(
            self.layout_in.size,
            self.layout_out.size,
            kernel_size=(self.kernel_size,),
            strides=(self.strides,),
            kernel_dilation=(self.dilation,),
            padding=pad,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            rngs=rngs or nnx.Rngs(0),
        )
        plain.kernel[...] = kernel
        if bias is not None:
            plain.bias[...] = bias
        return plain
