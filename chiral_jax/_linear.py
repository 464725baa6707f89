"""Chiral dense layers: :class:`ChiralLinear` and the invariance layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax._tied import Impl, TiedKernel, default_bias_init, default_kernel_init
from chiral_jax.generators import Mode


class ChiralLinear(TiedKernel):
    """A dense layer whose kernel is tied so that ``f(T_in x) = T_out f(x)`` exactly.

    Shapes: ``x [..., layout_in.size] -> y [..., layout_out.size]`` (channels flattened
    joint-major, ``j * D + d``, in each layout's own joint order).

    Only the free blocks are parameters (about half of a plain layer's); the full
    kernel is assembled from them on each call, see :class:`ChiralGenerator`.

    Args:
      layout_in, layout_out: the input and output :class:`ChiralLayout`.
      mode: ``"complete"`` (default; every equivariant map) or ``"paper"``.
      use_bias: add a tied bias (``b_right = s * b_left``, ``b_cn = 0``).
      dtype: computation dtype (default: inferred from input and params).
      param_dtype: dtype of the free blocks.
      precision: ``jax.lax.Precision`` for the matmul.
      kernel_init: a Flax initialiser, called with the full kernel shape
        ``(n_in, n_out)``; free entries are kept (see ``ChiralGenerator.init``).
      bias_init: a Flax initialiser for the full bias.
      dot_general: the dot product (default ``jax.lax.dot_general``).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
      impl: ``"dense"`` (one matmul with the assembled kernel), ``"even_odd"`` (two
        matmuls of about half the multiply-adds in the even/odd basis, see
        :mod:`chiral_jax.even_odd`) or ``"auto"`` (default: ``"even_odd"`` where
        :func:`chiral_jax.even_odd.prefers_even_odd` holds, i.e. for wide layers). Same
        outputs and gradients either way.

    >>> from flax import nnx
    >>> from chiral_jax import ChiralLinear
    >>> from chiral_jax.skeletons import H36M_17
    >>> layer = ChiralLinear(H36M_17.layout(2), H36M_17.layout(3), rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((4, 34))).shape
    (4, 51)
    """

    def __init__(
        self,
        layout_in: ChiralLayout,
        layout_out: ChiralLayout,
        *,
        mode: Mode = "complete",
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision: jax.lax.PrecisionLike = None,
        kernel_init=default_kernel_init,
        bias_init=default_bias_init,
        dot_general=jax.lax.dot_general,
        rngs: nnx.Rngs,
        impl: Impl = "auto",
    ):
        super().__init__(
            layout_in,
            layout_out,
            mode=mode,
            lead=(),
            use_bias=use_bias,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            bias_init=bias_init,
            rngs=rngs,
            impl=impl,
        )
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.dot_general = dot_general

    def __call__(self, x: jax.Array) -> jax.Array:
        self.layout_in.check_features(x, "ChiralLinear input")
        return self.apply(x)

    def _op(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        dims = (((x.ndim - 1,), (0,)), ((), ()))
        return self.dot_general(x, kernel, dims, precision=self.precision)

    def to_plain(self, rngs: nnx.Rngs | None = None) -> nnx.Linear:
        """An ``nnx.Linear`` holding the assembled kernel: same outputs, no tying (export)."""
        kernel, bias = self.dense_kernel()
        plain = nnx.Linear(
            self.layout_in.size,
            self.layout_out.size,
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


class ChiralInvariant(ChiralLinear):
    """The invariance layer: ``f(T_in x) = f(x)`` exactly.

    A :class:`ChiralLinear` whose output layout is ``ChiralLayout.invariant(features)``
    (centre channels only, none negated). Layers after it are ordinary: any
    activation, any head. In ``"complete"`` mode the invariant features see both
    ``x_l + x_r`` of positive dims and ``x_l - x_r`` of negated dims (e.g. how far
    apart the wrists are horizontally); the paper's matrix drops the latter.

    Shapes: ``x [..., layout_in.size] -> y [..., features]``.
    """

    def __init__(self, layout_in: ChiralLayout, features: int, **kwargs):
        super().__init__(layout_in, ChiralLayout.invariant(features), **kwargs)
