"""The part every tied-kernel layer shares: free blocks in, assembled kernel out."""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes

from chiral_jax import eigen
from chiral_jax._layout import ChiralLayout
from chiral_jax._variables import ChiralParam
from chiral_jax.generators import ChiralGenerator, ChiralParams, Mode

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()

Impl = Literal["auto", "kernel", "eigen"]
IMPLS = ("auto", "kernel", "eigen")


class TiedKernel(nnx.Module):
    """Stores the free blocks of ``ChiralGenerator(layout_in, layout_out, mode, lead)``.

    Subclasses define their linear operation ``_op`` (a matmul, a convolution) and
    call :meth:`apply` inside ``__call__``. The kernel is a pure function of the free blocks,
    rebuilt each step (``O(params)``), so gradients flow to the free blocks only,
    along one of two paths (``impl``):

    * ``"kernel"``: assemble the full tied kernel and run one ``n_in x n_out`` op;
    * ``"eigen"``: change to the even/odd basis (:mod:`chiral_jax.eigen`) and run two
      ops, ``n+_in x n+_out`` and ``n-_in x n-_out``: about half the multiply-adds
      for balanced layouts, plus ``O(width)`` adds per sample for the basis change;
    * ``"auto"`` (default): ``"eigen"`` where :func:`chiral_jax.eigen.prefers_eigen`
      says the saved multiply-adds outweigh the basis change, else ``"kernel"``.

    Both paths give the same outputs and gradients (to float rounding).
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

    def eigen_kernel(self) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """The tied kernel in the even/odd basis: ``(A, B, bias_plus)``.

        Shapes: ``A (*lead, n+_in, n+_out)``, ``B (*lead, n-_in, n-_out)``,
        ``bias_plus (n+_out,)`` (None without bias; the ``-1`` space has none).
        """
        params = self.free_params()
        a, b = eigen.eigen_kernels(self.generator, params.kernel)
        bias = None if params.bias is None else eigen.eigen_bias(self.generator, params.bias)
        return a, b, bias

    @property
    def resolved_impl(self) -> Literal["kernel", "eigen"]:
        """The path ``impl`` picks for this layer's shapes (``"auto"`` resolved)."""
        if self.impl != "auto":
            return self.impl
        taps = math.prod(self.generator.lead)
        return "eigen" if eigen.prefers_eigen(self.layout_in, self.layout_out, taps) else "kernel"

    def _op(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        """The layer's linear operation on channels-last ``x``, kernel ``(*lead, n_in, n_out)``."""
        raise NotImplementedError

    def apply(self, x: jax.Array) -> jax.Array:
        """``op(x, kernel) + bias`` on joint-basis inputs ``[..., n_in]``, by ``resolved_impl``.

        The computation dtype is ``self.dtype``, or promoted from the input and the
        parameters when None, as in Flax layers.
        """
        if self.resolved_impl == "kernel":
            kernel, bias = self.dense_kernel()
            x, kernel, bias = dtypes.promote_dtype((x, kernel, bias), dtype=self.dtype)
            return add_bias(self._op(x, kernel), bias)
        a, b, bias = self.eigen_kernel()
        x, a, b, bias = dtypes.promote_dtype((x, a, b, bias), dtype=self.dtype)
        plus, minus = self._eigen_op(*eigen.to_eigen(x, self.layout_in), a, b, bias)
        return eigen.from_eigen(plus, minus, self.layout_out)

    def eigen_call(self, z: eigen.EigenActivations) -> eigen.EigenActivations:
        """The layer on activations held in the even/odd basis (no basis change).

        ``z.layout`` must be ``layout_in``; returns activations in ``layout_out``. See
        :class:`chiral_jax.eigen.EigenActivations`: networks that stay in this form
        change basis only around their activations.
        """
        if z.layout != self.layout_in:
            raise ValueError(
                f"eigen_call expects activations in this layer's input layout "
                f"{self.layout_in}, got {z.layout}"
            )
        a, b, bias = self.eigen_kernel()
        plus, minus, a, b, bias = dtypes.promote_dtype(
            (z.plus, z.minus, a, b, bias), dtype=self.dtype
        )
        return eigen.EigenActivations(*self._eigen_op(plus, minus, a, b, bias), self.layout_out)

    def _eigen_op(self, plus, minus, a, b, bias) -> tuple[jax.Array, jax.Array]:
        return add_bias(self._op(plus, a), bias), self._op(minus, b)

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
