"""Chiral multi-head self-attention over tokens."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax._linear import ChiralLinear
from chiral_jax._module import ChiralModule
from chiral_jax.generators import Mode


def _attend(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Scaled dot-product attention, ``[B, T, heads, d]`` each -> ``[B, T, heads, d]``.

    ``jax.nn.dot_product_attention`` (twice as fast here as the same product written
    with ``einsum``), except in float64: its XLA path forms the scores in float32,
    which would cap a float64 model's precision, so they are written out there.
    """
    if q.dtype != jnp.float64:
        return jax.nn.dot_product_attention(q, k, v)
    scores = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
    return jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v)


class ChiralMultiHeadAttention(ChiralModule):
    """Multi-head self-attention over tokens whose channels the transform mirrors.

    Shapes: ``x [..., tokens, layout.size] -> [..., tokens, layout_out.size]``.

    Equivariance: for any permutation ``P`` of the tokens (the identity for frames, the
    left/right swap for joint tokens), ``f(P T x) = P T_out f(x)`` where ``T`` acts on
    every token's channels. Queries, keys and values are chiral linear maps onto a
    *heads layout*: ``num_heads`` centre "joints" of ``head_dims`` channels, of which a
    share is negated. The transform only flips signs there, and a score
    ``q.k = q_n.k_n + q_p.k_p`` does not change when both flip, so the attention weights
    are invariant under ``T`` and move with the tokens under ``P``; the values, and the
    chiral output map, carry ``T`` through. Each head is one centre joint, so every head
    is closed under the transform, whatever the token layout.

    Args:
      layout: one token's channels (a joint's: ``ChiralLayout.hidden(0, 1, D, 1/3)``; or a
        frame's, all joints: ``skeleton.layout(D)``).
      num_heads: heads; ``head_dims`` defaults to ``layout.size // num_heads``.
      negated: the share of each head's channels that is negated (count or fraction);
        default: the token layout's share.
      layout_out: the output channels (default ``layout``).
      mode, use_bias, dtype, param_dtype, rngs: as :class:`ChiralLinear` (the four maps).

    Scores are scaled by ``1 / sqrt(head_dims)``, as ``nnx.MultiHeadAttention`` does;
    :meth:`to_plain` gives that module with the assembled weights.
    """

    def __init__(
        self,
        layout: ChiralLayout,
        num_heads: int,
        *,
        head_dims: int | None = None,
        negated: int | float | None = None,
        layout_out: ChiralLayout | None = None,
        mode: Mode = "complete",
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        if head_dims is None:
            if layout.size % num_heads:
                raise ValueError(
                    f"{layout.size} channels do not split into {num_heads} heads; pass head_dims"
                )
            head_dims = layout.size // num_heads
        if negated is None:
            negated = len(layout.negated) / layout.dims
        self.layout_in = layout
        self.layout_out = layout if layout_out is None else layout_out
        self.num_heads = num_heads
        self.head_dims = head_dims
        self.heads = ChiralLayout.hidden(0, num_heads, head_dims, negated)
        settings = dict(mode=mode, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype)
        self.query = ChiralLinear(layout, self.heads, rngs=rngs, **settings)
        self.key = ChiralLinear(layout, self.heads, rngs=rngs, **settings)
        self.value = ChiralLinear(layout, self.heads, rngs=rngs, **settings)
        self.out = ChiralLinear(self.heads, self.layout_out, rngs=rngs, **settings)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.layout_in.check_features(x, "ChiralMultiHeadAttention input")
        if x.ndim < 2:
            raise ValueError(f"attention needs [..., tokens, channels], got shape {x.shape}")
        lead, tokens = x.shape[:-2], x.shape[-2]
        with jax.named_scope("ChiralMultiHeadAttention"):

            def heads(linear: ChiralLinear) -> jax.Array:
                return linear(x).reshape(-1, tokens, self.num_heads, self.head_dims)

            o = _attend(heads(self.query), heads(self.key), heads(self.value))
            return self.out(o.reshape(*lead, tokens, self.heads.size))

    def to_plain(self, rngs: nnx.Rngs | None = None) -> nnx.MultiHeadAttention:
        """An ``nnx.MultiHeadAttention`` holding the assembled weights: same outputs."""
        plain = nnx.MultiHeadAttention(
            self.num_heads,
            self.layout_in.size,
            qkv_features=self.heads.size,
            out_features=self.layout_out.size,
            use_bias=self.query.use_bias,
            dtype=self.query.dtype,
            param_dtype=self.query.param_dtype,
            decode=False,
            rngs=rngs or nnx.Rngs(0),
        )
        split = (self.num_heads, self.head_dims)
        for name in ("query", "key", "value"):
            kernel, bias = getattr(self, name).dense_kernel()
            target = getattr(plain, name)
            target.kernel[...] = kernel.reshape(kernel.shape[0], *split)
            if bias is not None:
                target.bias[...] = bias.reshape(split)
        kernel, bias = self.out.dense_kernel()
        plain.out.kernel[...] = kernel.reshape(*split, kernel.shape[-1])
        if bias is not None:
            plain.out.bias[...] = bias
        return plain
