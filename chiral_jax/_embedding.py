"""Learned token embeddings (joint or frame identities), tied by the transform."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax._module import ChiralModule
from chiral_jax._variables import ChiralParam
from chiral_jax.generators import ChiralGenerator

_INIT = nnx.initializers.normal(0.02)


def _add(x: jax.Array, table: jax.Array) -> jax.Array:
    """``x [..., T, D] + table[:T]``: a clip may hold fewer tokens than the table."""
    tokens = x.shape[-2]
    if tokens > table.shape[0]:
        raise ValueError(f"{tokens} tokens, but the embedding has {table.shape[0]}")
    table = table[:tokens].astype(x.dtype)
    return x + jnp.reshape(table, (1,) * (x.ndim - 2) + table.shape)


class ChiralEmbedding(ChiralModule):
    """A learned vector per token, added to it, tied so that ``e[sigma(j)] = s * e[j]``.

    The tokens are the layout's joints and a token's features its dims: a joint's
    embedding is free on the left, mirrored (signs of the negated dims) on the right,
    and a centre joint's has zeros on its negated dims. This is the tied bias of the
    layout, so adding it keeps ``f(T x) = T f(x)``. Joint embeddings use a skeleton's
    layout (``skeleton.layout(D)``, or ``.with_dims``); frame embeddings, which the
    transform does not move, a layout of centre tokens only
    (``ChiralLayout.hidden(0, frames, D, negated)``: their negated dims stay zero).

    Shapes: ``x [..., T, layout.dims] -> same``, ``T <= layout.num_joints`` (the first
    ``T`` tokens' embeddings are added: a shorter clip); equivariant on the flattened
    ``[..., layout.size]`` when ``T`` is all tokens.
    """

    def __init__(
        self, layout: ChiralLayout, *, init=_INIT, param_dtype=jnp.float32, rngs: nnx.Rngs
    ):
        self.layout = self.layout_in = self.layout_out = layout
        self._gen = ChiralGenerator(layout, layout)
        drawn = init(rngs.params(), (layout.size,), param_dtype)
        self.free_embedding = ChiralParam(
            jnp.asarray(self._gen.pack(self._gen.select_bias(drawn), "bias"))
        )

    def table(self) -> jax.Array:
        """The tied embeddings, ``[layout.num_joints, layout.dims]``, in token order."""
        flat = self._gen.assemble_packed(self.free_embedding[...], "bias")
        return flat.reshape(self.layout.num_joints, self.layout.dims)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _add(x, self.table())

    def to_plain(self, rngs: nnx.Rngs | None = None) -> Embedding:
        """An :class:`Embedding` holding the tied table (no tying)."""
        plain = Embedding(self.layout.num_joints, self.layout.dims, rngs=rngs or nnx.Rngs(0))
        plain.embedding[...] = self.table()
        return plain


class Embedding(nnx.Module):
    """The plain twin of :class:`ChiralEmbedding`: a free ``[tokens, features]`` table.

    Shapes: ``x [..., T, features] -> same``, ``T <= tokens``.
    """

    def __init__(
        self, tokens: int, features: int, *, init=_INIT, param_dtype=jnp.float32, rngs: nnx.Rngs
    ):
        self.embedding = nnx.Param(init(rngs.params(), (tokens, features), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _add(x, self.embedding[...])
