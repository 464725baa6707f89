"""A spatial-temporal convolutional classifier of skeleton clips, plain or chiral invariant.

One code path builds both networks. A clip ``x`` (N, C=3, T, V=18, M) is split into
its M persons (folded into the batch, shared weights), each a sequence of per-frame
feature vectors of 18 joints x 3 channels flattened joint-major ([N*M, T, 54], the
OpenPose-18 layout with x negated by the mirror; the score channel is not). Then:

    input BN
    10 blocks:  spatial 1x1 conv over the J*D channels -> BN -> act
                -> temporal conv (kernel 9, stride 2 at two blocks) -> BN
                -> + residual (identity, or 1x1 conv + BN where the shape changes) -> act
    mean over time, mean over persons, linear classifier

With ``chiral=True`` the blocks before ``invariant_block`` keep an 18-joint layout
(``width / 18`` dims per joint, the negated share going ``negated_fractions``, e.g.
1/3 -> 1/6 -> 1/12) with :class:`chiral_jax.ChiralConv1d`,
:class:`chiral_jax.ChiralBatchNorm` and an odd activation (tanh); the spatial conv of
``invariant_block`` (and its residual projection) maps onto
``ChiralLayout.invariant(width)``, and every layer after it is an ordinary one (ReLU
allowed). So ``logits(mirror(x)) == logits(x)`` exactly, in training and evaluation
mode. With ``chiral=False`` every layer is ordinary (``nnx.Conv``, ``nnx.BatchNorm``,
ReLU), the ST-GCN-like baseline.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax import ChiralActivation, ChiralLayout
from chiral_jax.activations import activation as plain_activation
from chiral_jax.activations import odd_activation
from chiral_jax.skeletons import OPENPOSE_18
from chiral_tasks.common import layers
from chiral_tasks.common.layers import Space

NUM_JOINTS = 18
NUM_CHANNELS = 3
INPUT_LAYOUT = OPENPOSE_18.layout(NUM_CHANNELS, negated=(0,))
"""The per-frame input layout: 18 joints x (x, y, score), x negated."""

_BN_MOMENTUM = 0.9  # PyTorch's 0.1 in Flax's convention

CPU_WIDTHS = (72, 72, 72, 72, 108, 108, 108, 144, 144, 144)
"""CPU-sized block widths: 4, 6 and 8 dims per joint."""
PAPER_WIDTHS = tuple(
    NUM_JOINTS * round(w / NUM_JOINTS) for w in (64,) * 4 + (128,) * 3 + (256,) * 3
)
"""ST-GCN's widths 64 x4, 128 x3, 256 x3 rounded to the nearest multiple of 18."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network's shape.

    Args:
      num_classes: output classes.
      chiral: chiral invariant (True) or plain (False).
      widths: output channels of each block (multiples of 18 before the invariance
        layer when chiral).
      strides: blocks (0-based) whose temporal conv strides by 2.
      kernel: temporal kernel size (odd; "same" padding).
      invariant_block: the block (0-based) whose spatial conv is the invariance layer.
      negated_fractions: the share of negated dims per joint in the outputs of the
        blocks before ``invariant_block`` (one per block; a nonzero share keeps at
        least one negated dim).
      activation: the odd activation before the invariance layer (chiral only).
      even_activation: chiral only: a function (any, e.g. ``"relu"``) for the channels
        before the invariance layer that keep their sign, ``activation`` then acting on
        the negated ones only; None: ``activation`` everywhere (the paper).
    """

    num_classes: int
    chiral: bool = True
    widths: tuple[int, ...] = CPU_WIDTHS
    strides: tuple[int, ...] = (4, 7)
    kernel: int = 9
    invariant_block: int = 3
    negated_fractions: tuple[float, ...] = (1 / 3, 1 / 6, 1 / 12)
    activation: str = "tanh"
    even_activation: str | None = None

    def __post_init__(self):
        for name in ("widths", "strides", "negated_fractions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = []
        if self.num_classes < 2:
            problems.append(f"num_classes must be >= 2, got {self.num_classes}")
        if not self.widths or min(self.widths) < 1:
            problems.append(f"widths must be positive, got {self.widths}")
        if any(not 0 <= b < len(self.widths) for b in self.strides):
            problems.append(f"strides must name blocks in [0, {len(self.widths)})")
        if self.kernel < 1 or self.kernel % 2 == 0:
            problems.append(f"kernel must be odd, got {self.kernel}")
        if self.chiral:
            if not 0 <= self.invariant_block < len(self.widths):
                problems.append(
                    f"invariant_block must lie in [0, {len(self.widths)}), "
                    f"got {self.invariant_block}"
                )
            if len(self.negated_fractions) != self.invariant_block:
                problems.append(
                    f"need one negated fraction per block before the invariance layer "
                    f"({self.invariant_block}), got {self.negated_fractions}"
                )
            if any(not 0.0 <= f <= 1.0 for f in self.negated_fractions):
                problems.append(f"negated fractions must lie in [0, 1]: {self.negated_fractions}")
            bad = [w for w in self.widths[: self.invariant_block] if w % NUM_JOINTS]
            if bad:
                problems.append(
                    f"chiral widths before the invariance layer must be multiples of "
                    f"{NUM_JOINTS}, got {bad}"
                )
            odd_activation(self.activation)
            if self.even_activation is not None:
                plain_activation(self.even_activation)
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    def spaces(self) -> list[Space]:
        """The input space and each block's output space."""
        if not self.chiral:
            return [INPUT_LAYOUT.size, *self.widths]
        out: list[Space] = [INPUT_LAYOUT]
        for width, fraction in zip(self.widths, self.negated_fractions, strict=False):
            dims = width // NUM_JOINTS
            count = max(1, round(fraction * dims)) if fraction > 0 else 0
            out.append(OPENPOSE_18.layout(dims, negated=tuple(range(count))))
        return out + list(self.widths[self.invariant_block :])


class Block(nnx.Module):
    """Spatial 1x1 conv -> BN -> act -> temporal conv -> BN, + residual -> act.

    Shapes: [B, T, size(space_in)] -> [B, ceil(T / stride), size(space_out)].
    """

    def __init__(
        self,
        space_in: Space,
        space_out: Space,
        *,
        kernel: int,
        stride: int,
        residual: bool,
        activation: str,
        even_activation: str | None = None,
        rngs: nnx.Rngs,
    ):
        if isinstance(space_out, ChiralLayout):
            self.act = ChiralActivation(activation, even=even_activation, layout=space_out)
        else:
            self.act = jax.nn.relu
        # Convs over time, [B, T, C_in] -> [B, T', C_out]; the temporal one pads to "same".
        pad = (kernel - 1) // 2
        conv = functools.partial(layers.conv, use_bias=False, rngs=rngs)
        norm = functools.partial(layers.norm, momentum=_BN_MOMENTUM, rngs=rngs)
        self.spatial = conv(space_in, space_out, 1)
        self.spatial_norm = norm(space_out)
        self.temporal = conv(space_out, space_out, kernel, strides=stride, padding=pad)
        self.temporal_norm = norm(space_out)
        self.residual = residual
        # The residual needs a projection where the block changes the shape.
        project = residual and (space_in != space_out or stride != 1)
        self.project = conv(space_in, space_out, 1, strides=stride) if project else None
        self.project_norm = norm(space_out) if project else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.act(self.spatial_norm(self.spatial(x)))
        y = self.temporal_norm(self.temporal(y))
        if self.residual:
            y = y + (x if self.project is None else self.project_norm(self.project(x)))
        return self.act(y)


class SkeletonClassifier(nnx.Module):
    """The classifier of :mod:`chiral_tasks.recognition.model`: (N, 3, T, 18, M) -> (N, classes).

    >>> model = SkeletonClassifier(ModelConfig(num_classes=5), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 3, 32, 18, 2))).shape
    (2, 5)
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        spaces = config.spaces()
        self.input_norm = layers.norm(spaces[0], momentum=_BN_MOMENTUM, rngs=rngs)
        self.blocks = nnx.List(
            [
                Block(
                    spaces[i],
                    spaces[i + 1],
                    kernel=config.kernel,
                    stride=2 if i in config.strides else 1,
                    residual=i > 0,
                    activation=config.activation,
                    even_activation=config.even_activation,
                    rngs=rngs,
                )
                for i in range(len(config.widths))
            ]
        )
        self.head = layers.linear(spaces[-1], config.num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """Per-person, per-frame features: (N, C, T, V, M) -> (N, M, T', widths[-1])."""
        if x.ndim != 5 or x.shape[1] != NUM_CHANNELS or x.shape[3] != NUM_JOINTS:
            raise ValueError(
                f"expected clips (N, {NUM_CHANNELS}, T, {NUM_JOINTS}, M), got {x.shape}"
            )
        n, c, t, v, m = x.shape
        h = jnp.transpose(x, (0, 4, 2, 3, 1)).reshape(n * m, t, v * c)
        h = self.input_norm(h)
        for block in self.blocks:
            h = block(h)
        return h.reshape(n, m, *h.shape[1:])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x).mean(axis=(1, 2)))


def build(config: ModelConfig, seed: int = 0) -> SkeletonClassifier:
    """The classifier with parameters drawn from ``seed``."""
    return SkeletonClassifier(config, rngs=nnx.Rngs(seed))
