"""A spatial-temporal transformer lifter (MixSTE-style), plain or chiral, in one code path.

The network maps a clip of 2D poses to the 3D poses of every frame (sequence to
sequence):

    x [*batch, T, J_in, 2]  ->  y [*batch, T, J_out, 3],   T <= frames

Every (frame, joint) is a token of ``D`` channels: each joint's 2D point is embedded
by a linear map, a learned joint embedding and a learned frame embedding are added;
then ``depth`` pairs of blocks alternate *spatial* attention (the tokens of one frame
attend to each other) and *temporal* attention (the tokens of one joint attend across
frames), each block ``x + attn(LN(x))``, ``x + MLP(LN(x))``; a final layer norm and a
linear map from each frame's ``J_in * D`` channels give its ``J_out x 3`` coordinates.

With ``chiral=True`` the model is exactly chirality equivariant, ``f(T_in x) = T_out
f(x)``: a token's channels have a layout of their own (``ChiralLayout.hidden(0, 1, D,
negated_fraction)``: the transform flips the negated ones), the per-token maps are chiral
linear maps (negated to negated, positive to positive), attention is
:class:`chiral_jax.ChiralMultiHeadAttention` (spatial attention moves with the joints,
which the transform swaps), layer norms are :class:`chiral_jax.ChiralLayerNorm`, the
joint embedding is tied (``e[right] = s * e[left]``, :class:`chiral_jax.ChiralEmbedding`),
the frame embedding has no negated part, the MLP's activation is odd (tanh) on negated
channels and GELU on positive ones, and the head is a :class:`chiral_jax.ChiralLinear`
from the skeleton's joints of ``D`` dims to its 3D layout. The plain model uses the
Flax layers of the same shapes (GELU everywhere); see :mod:`chiral_tasks.common.layers`.
Dropout (after attention and in the MLP) is plain in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax import ChiralLayout, Skeleton
from chiral_tasks.common import layers
from chiral_tasks.common.layers import Space


class _Block(nnx.Module):
    """``x + drop(attn(LN(x)))``, then ``x + drop(MLP(LN(x)))``, over tokens on axis -2.

    Shapes: ``[..., tokens, size(token)] -> same``.
    """

    def __init__(self, token: Space, hidden: Space, heads: int, dropout: float, **settings):
        rngs = settings["rngs"]
        self.norm1 = layers.layer_norm(token, **settings)
        self.attention = layers.attention(token, heads, **settings)
        self.norm2 = layers.layer_norm(token, **settings)
        self.expand = layers.linear(token, hidden, **settings)
        self.activation = layers.activation(hidden)
        self.contract = layers.linear(hidden, token, **settings)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.dropout(self.attention(self.norm1(x)))
        h = self.dropout(self.activation(self.expand(self.norm2(x))))
        return x + self.dropout(self.contract(h))


class PoseTransformer(nnx.Module):
    """The spatial-temporal transformer lifter; chirality equivariant when ``chiral=True``.

    Shapes: ``x [*batch, T, J_in, 2]`` (or ``[*batch, T, J_in * 2]``), ``1 <= T <=
    frames`` -> ``[*batch, T, J_out, 3]``, one pose per input frame.

    Args:
      skeleton_in, skeleton_out: the 2D input and 3D output skeletons.
      chiral: chiral layers (equivariant, about half the parameters) or plain ones.
      frames: the longest clip (the frame embedding's length); training windows have
        this many frames, and so have evaluation chunks.
      dims: channels per token ``D``.
      depth: pairs of (spatial, temporal) blocks.
      heads: attention heads (``D`` splits evenly).
      mlp_ratio: the MLPs' hidden width, in multiples of ``D``.
      dropout: dropout rate after attention and in the MLPs.
      negated_fraction: chiral only: the share of each token's channels negated.
      dtype, param_dtype, rngs: as every Flax layer (``rngs``: ``params`` and
        ``dropout`` streams, else ``default``).

    >>> from chiral_jax.skeletons import H36M_17
    >>> model = PoseTransformer(H36M_17, H36M_17, chiral=True, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 9, 17, 2))).shape
    (2, 9, 17, 3)
    """

    def __init__(
        self,
        skeleton_in: Skeleton,
        skeleton_out: Skeleton,
        *,
        chiral: bool,
        frames: int = 27,
        dims: int = 32,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 2,
        dropout: float = 0.1,
        negated_fraction: float = 1 / 3,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        for name, value in (("frames", frames), ("dims", dims), ("depth", depth),
                            ("heads", heads), ("mlp_ratio", mlp_ratio)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if dims % heads:
            raise ValueError(f"dims={dims} must split evenly into heads={heads}")
        self.chiral = chiral
        self.frames = frames
        self.layout_in = skeleton_in.layout(2)
        self.layout_out = skeleton_out.layout(3)
        joints = self.layout_in.num_joints
        if chiral:
            token = ChiralLayout.hidden(0, 1, dims, negated_fraction)
            point = ChiralLayout(left=(), right=(), centre=(0,), dims=2,
                                 negated=self.layout_in.negated)  # fmt: skip
            joint_tokens: Space = self.layout_in.with_dims(dims, negated_fraction)
            frame_tokens: Space = ChiralLayout.hidden(0, frames, dims, negated_fraction)
            hidden: Space = token.with_dims(mlp_ratio * dims, negated_fraction)
            out: Space = self.layout_out
        else:
            token, point, joint_tokens, frame_tokens = dims, 2, joints, frames
            hidden, out = mlp_ratio * dims, self.layout_out.size
        settings = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embed = layers.linear(point, token, **settings)
        self.joint_embedding = layers.embedding(joint_tokens, dims, param_dtype=param_dtype,
                                                rngs=rngs)  # fmt: skip
        self.frame_embedding = layers.embedding(frame_tokens, dims, param_dtype=param_dtype,
                                                rngs=rngs)  # fmt: skip
        self.blocks = nnx.List(
            [_Block(token, hidden, heads, dropout, **settings) for _ in range(2 * depth)]
        )
        self.norm = layers.layer_norm(token, **settings)
        head_in = joint_tokens if chiral else joints * dims
        self.head = layers.linear(head_in, out, **settings)

    # The training and evaluation code asks every lifting model for these.
    pad = 0
    """Context frames beyond the output frames: none (sequence to sequence)."""
    causal_shift = 0

    @property
    def receptive_field(self) -> int:
        """Input frames an output frame may see: the whole clip, up to :attr:`frames`."""
        return self.frames

    @property
    def chunk_length(self) -> int:
        """Output frames of one training window: every frame of a :attr:`frames` clip."""
        return self.frames

    @property
    def max_frames(self) -> int:
        """The longest clip one call lifts."""
        return self.frames

    @property
    def num_params(self) -> int:
        """The number of trainable scalars (all ``nnx.Param`` leaves)."""
        return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(self, nnx.Param)))

    def __call__(self, x: jax.Array, *, strided: bool = False) -> jax.Array:
        """Lift ``x`` (shapes in the class docstring). ``strided`` is accepted for the
        training code's sake and changes nothing: training windows are whole clips."""
        del strided
        joints = self.layout_in.num_joints
        x = jnp.asarray(x)
        if x.ndim >= 2 and x.shape[-1] == 2 * joints and x.shape[-2:] != (joints, 2):
            x = x.reshape(*x.shape[:-1], joints, 2)
        if x.ndim < 3 or x.shape[-2:] != (joints, 2):
            raise ValueError(
                f"PoseTransformer expects 2D poses [*batch, frames, {joints}, 2], got {x.shape}"
            )
        batch, frames = x.shape[:-3], x.shape[-3]
        if not 1 <= frames <= self.frames:
            raise ValueError(f"clips of 1 to {self.frames} frames, got {frames}")
        h = self.embed(x.reshape(-1, frames, joints, 2))  # [N, T, J, D]
        h = self.joint_embedding(h)
        h = _over_frames(self.frame_embedding, h)
        for i, block in enumerate(self.blocks):
            h = block(h) if i % 2 == 0 else _over_frames(block, h)
        h = self.norm(h)
        y = self.head(h.reshape(*h.shape[:2], -1))
        return y.reshape(*batch, frames, self.layout_out.num_joints, 3)


def _over_frames(fn: Callable[[jax.Array], jax.Array], h: jax.Array) -> jax.Array:
    """``fn`` with frames as the token axis: ``[N, T, J, D]`` in and out."""
    return fn(h.swapaxes(1, 2)).swapaxes(1, 2)
