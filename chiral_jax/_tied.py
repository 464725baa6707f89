"""The part every tied-kernel layer shares: free blocks in, assembled kernel out."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax._variables import ChiralParam
from chiral_jax.generators import ChiralGenerator, ChiralParams, Mode

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()


class TiedKernel(nnx.Module):
    """Stores the free blocks of ``ChiralGenerator(layout_in, layout_out, mode, lead)``.

    Subclasses call :meth:`assemble` inside ``__call__``: the tied kernel is a pure
    function of the free blocks, rebuilt each step (``O(params)``), so gradients
    flow to the free blocks only.
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
    ):
        self.layout_in = layout_in
        self.layout_out = layout_out
        self.mode = mode
        self.use_bias = use_bias
        self.generator = ChiralGenerator(layout_in, layout_out, mode, lead)
        params = self.generator.init(
            rngs.params(), kernel_init, bias_init if use_bias else None, param_dtype
        )
        self.kernel_blocks = nnx.Dict({k: ChiralParam(v) for k, v in params.kernel.items()})
        self.bias_blocks = (
            nnx.Dict({k: ChiralParam(v) for k, v in params.bias.items()}) if use_bias else None
        )

    def free_params(self) -> ChiralParams:
        kernel = {k: v[...] for k, v in self.kernel_blocks.items()}
        bias = None
        if self.bias_blocks is not None:
            bias = {k: v[...] for k, v in self.bias_blocks.items()}
        return ChiralParams(kernel, bias)

    def dense_kernel(self) -> tuple[jax.Array, jax.Array | None]:
        """The exported plain ``(kernel, bias)``.

        Shapes: kernel ``(*lead, n_in, n_out)``, bias ``(n_out,)`` (None without bias).
        """
        return self.generator.assemble(self.free_params())

    def load_dense(self, kernel: jax.Array, bias: jax.Array | None = None) -> None:
        """Set the free blocks to the orthogonal projection of a plain kernel (and bias)."""
        if bias is not None and self.bias_blocks is None:
            raise ValueError("this layer has no bias (use_bias=False) but a bias was given")
        params = self.generator.project(kernel, bias)
        for k, v in params.kernel.items():
            self.kernel_blocks[k].value = v.astype(self.kernel_blocks[k].value.dtype)
        if params.bias is not None:
            for k, v in params.bias.items():
                self.bias_blocks[k].value = v.astype(self.bias_blocks[k].value.dtype)

    @property
    def num_free_params(self) -> int:
        return self.generator.count(self.use_bias)


def add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    if bias is None:
        return y
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
