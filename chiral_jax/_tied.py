"""The part every tied-kernel layer shares: free blocks in, assembled kernel out."""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes

from chiral_jax import even_odd
from chiral_jax._layout import ChiralLayout
from chiral_jax._module import ChiralModule
from chiral_jax._variables import ChiralParam
from chiral_jax.even_odd import EvenOdd
from chiral_jax.generators import ChiralGenerator, ChiralParams, Mode

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()

Impl = Literal["auto", "dense", "even_odd"]
IMPLS = ("auto", "dense", "even_odd")


class TiedKernel(ChiralModule):
    """Stores the free blocks of ``ChiralGenerator(layout_in, layout_out, mode, lead)``.

    Subclasses define their linear operation ``_op`` (a matmul, a convolution) and
    call :meth:`apply` inside ``__call__``. The kernel is a pure function of the free blocks,
    rebuilt each step (``O(params)``), so gradients flow to the free blocks only,
    along one of two paths (``impl``):

    * ``"dense"``: assemble the full tied kernel (one gather from the packed free
      blocks) and run one ``n_in x n_out`` op;
    * ``"even_odd"``: change to the even/odd basis (:mod:`chiral_jax.even_odd`) and run
      two ops, ``n+_in x n+_out`` and ``n-_in x n-_out``: about half the multiply-adds
      for balanced layouts, plus ``O(width)`` adds per sample for the basis change;
    * ``"auto"`` (default): ``"even_odd"`` where :func:`chiral_jax.even_odd.prefers_even_odd`
      says the saved multiply-adds outweigh the basis change, else ``"dense"``.

    Both paths give the same outputs and gradients (to float rounding). :meth:`even_odd`
    runs the two half-size ops on activations already in the even/odd basis.
    """

    def __init__(
        self,
        layout_in: ChiralLayout,
        layout_out: ChiralLayout,
        *,
        mode: Mode,
        lead: tuple[int, ...],
        use_bias: bool,
        param_dtype,
        kernel_init,
        bias_init,
        rngs: nnx.Rngs,
        impl: Impl = "auto",
    ):
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
        self.layout_in = layout_in
        self.layout_out = layout_out
        self.mode = mode
        self.use_bias = use_bias
        self.generator = ChiralGenerator(layout_in, layout_out, mode, lead)
        params = self.generator.init(
            rngs.params(), kernel_init, bias_init if use_bias else None, param_dtype
        )
        # The free blocks, each packed into one vector (ChiralGenerator.pack).
        self.free_kernel = ChiralParam(jnp.asarray(self.generator.pack(params.kernel)))
        self.free_bias = (
            ChiralParam(jnp.asarray(self.generator.pack(params.bias, "bias")))
            if use_bias
            else None
        )

    def free_params(self) -> ChiralParams:
        """The free blocks' current values, by name, as a :class:`ChiralParams` pytree."""
        kernel = self.generator.unpack(self.free_kernel[...])
        bias = None
        if self.free_bias is not None:
            bias = self.generator.unpack(self.free_bias[...], "bias")
        return ChiralParams(kernel, bias)

    def dense_kernel(self) -> tuple[jax.Array, jax.Array | None]:
        """The exported plain ``(kernel, bias)``.

        Shapes: kernel ``(*lead, n_in, n_out)``, bias ``(n_out,)`` (None without bias).
        """
        kernel = self.generator.assemble_packed(self.free_kernel[...])
        bias = None
        if self.free_bias is not None:
            bias = self.generator.assemble_packed(self.free_bias[...], "bias")
        return kernel, bias

    def even_odd_kernel(self) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """The tied kernel in the even/odd basis: ``(A, B, bias_plus)``.

        Shapes: ``A (*lead, n+_in, n+_out)``, ``B (*lead, n-_in, n-_out)``,
        ``bias_plus (n+_out,)`` (None without bias; the ``-1`` space has none).
        """
        a, b = even_odd.kernels_packed(self.generator, self.free_kernel[...])
        bias = None
        if self.free_bias is not None:
            bias = even_odd.bias_packed(self.generator, self.free_bias[...])
        return a, b, bias

    @property
    def resolved_impl(self) -> Literal["dense", "even_odd"]:
        """The path ``impl`` picks for this layer's shapes (``"auto"`` resolved)."""
        if self.impl != "auto":
            return self.impl
        taps = math.prod(self.generator.lead)
        prefers = even_odd.prefers_even_odd(self.layout_in, self.layout_out, taps)
        return "even_odd" if prefers else "dense"

    def _op(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        """The layer's linear operation on channels-last ``x``, kernel ``(*lead, n_in, n_out)``."""
        raise NotImplementedError

    def apply(self, x: jax.Array) -> jax.Array:
        """``op(x, kernel) + bias`` on joint-basis inputs ``[..., n_in]``, by ``resolved_impl``.

        The computation dtype is ``self.dtype``, or promoted from the input and the
        parameters when None, as in Flax layers.
        """
        with jax.named_scope(f"{type(self).__name__}.{self.resolved_impl}"):
            if self.resolved_impl == "dense":
                kernel, bias = self.dense_kernel()
                x, kernel, bias = dtypes.promote_dtype((x, kernel, bias), dtype=self.dtype)
                return add_bias(self._op(x, kernel), bias)
            return self._even_odd(EvenOdd.from_joint(x, self.layout_in)).to_joint()

    def even_odd(self, z: EvenOdd) -> EvenOdd:
        """The layer on activations in the even/odd basis: two half-size ops, no basis change.

        ``z.layout`` must be ``layout_in``; returns activations in ``layout_out``.
        """
        self._check_even_odd(z)
        with jax.named_scope(f"{type(self).__name__}.even_odd"):
            return self._even_odd(z)

    def _even_odd(self, z: EvenOdd) -> EvenOdd:
        a, b, bias = self.even_odd_kernel()
        plus, minus, a, b, bias = dtypes.promote_dtype(
            (z.plus, z.minus, a, b, bias), dtype=self.dtype
        )
        return EvenOdd(add_bias(self._op(plus, a), bias), self._op(minus, b), self.layout_out)

    def load_dense(self, kernel: jax.Array, bias: jax.Array | None = None) -> None:
        """Set the free blocks to the orthogonal projection of a plain kernel (and bias)."""
        if bias is not None and self.free_bias is None:
            raise ValueError("this layer has no bias (use_bias=False) but a bias was given")
        params = self.generator.project(kernel, bias)
        packed = self.generator.pack(params.kernel)
        self.free_kernel[...] = packed.astype(self.free_kernel[...].dtype)
        if params.bias is not None:
            packed = self.generator.pack(params.bias, "bias")
            self.free_bias[...] = packed.astype(self.free_bias[...].dtype)

    @property
    def num_free_params(self) -> int:
        """Number of free parameters (kernel and bias blocks)."""
        return self.generator.count(self.use_bias)


def add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    if bias is None:
        return y
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
