"""The benchmark's temporal lifting model (VideoPose3D's architecture), plain or chiral.

    x [batch, frames, J_in * 2] -> y [batch, frames - receptive_field + 1, J_out * 3]

Expand conv (kernel ``w0``, no bias) -> BN -> act; then per block ``i >= 1``: conv
(kernel ``w_i``, dilation ``prod(w[:i])``, no bias) -> BN -> act -> 1x1 conv (no bias)
-> BN -> act, plus the block input cropped to the valid centre; a final 1x1 conv with
bias to ``J_out * 3`` channels. Dropout is left out: the benchmark runs in eval mode,
where it is the identity.

Chiral: :class:`ChiralConv1d` / :class:`ChiralBatchNorm` / tanh, exactly equivariant;
with ``structured=True`` the activations stay in the even/odd basis from the input
conv to the output conv (:class:`chiral_jax.eigen.EigenActivations`), otherwise every
layer takes and returns flat joint-basis arrays (its ``impl`` picks the path inside).
Plain: ``nnx.Conv`` / ``nnx.BatchNorm`` / ReLU. Any module with the same call
signature (``model(x)`` on flattened poses, ``model.eval()``) can replace it in
:mod:`benchmarks.run`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax import ChiralBatchNorm, ChiralConv1d, ChiralLayout
from chiral_jax.eigen import EigenActivations


class TemporalModel(nnx.Module):
    """VideoPose3D's temporal conv net, plain (``layout_in`` etc. None) or chiral.

    Args:
      n_in, n_out: input / output channels (``J_in * 2``, ``J_out * 3``).
      filter_widths: odd kernel widths ``(w0, w1, ...)``; the receptive field is their
        product (``(3, 3, 3)``: 27 frames; ``(3, 3, 3, 3, 3)``: 243).
      channels: hidden width.
      chiral_layouts: ``(layout_in, hidden, layout_out)`` for a chiral model, None for
        a plain one.
      impl: the chiral convolutions' ``impl``.
      structured: chiral only: keep activations in the even/odd basis throughout.
      rngs: ``nnx.Rngs``.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        filter_widths: Sequence[int],
        channels: int,
        chiral_layouts: tuple[ChiralLayout, ChiralLayout, ChiralLayout] | None = None,
        impl: str = "auto",
        structured: bool = False,
        rngs: nnx.Rngs,
    ):
        if structured and chiral_layouts is None:
            raise ValueError("structured=True needs chiral_layouts (a chiral model)")
        self.structured = structured
        self.layout_in = None if chiral_layouts is None else chiral_layouts[0]
        self.filter_widths = tuple(filter_widths)
        self.receptive_field = math.prod(self.filter_widths)
        chiral = chiral_layouts is not None
        if chiral:
            layout_in, hidden, layout_out = chiral_layouts
            if (layout_in.size, hidden.size, layout_out.size) != (n_in, channels, n_out):
                raise ValueError("chiral_layouts do not match n_in, channels, n_out")
            ins, hid, outs = layout_in, hidden, layout_out
        else:
            ins, hid, outs = n_in, channels, n_out

        def conv(a, b, width, dilation=1, use_bias=False):
            if chiral:
                return ChiralConv1d(
                    a, b, width, dilation=dilation, use_bias=use_bias, impl=impl, rngs=rngs
                )
            return nnx.Conv(
                a, b, (width,), kernel_dilation=(dilation,), padding="VALID",
                use_bias=use_bias, rngs=rngs,
            )

        def norm(n):
            return ChiralBatchNorm(n, rngs=rngs) if chiral else nnx.BatchNorm(n, rngs=rngs)

        self.activation = jnp.tanh if chiral else jax.nn.relu
        self.expand = conv(ins, hid, self.filter_widths[0])
        self.expand_bn = norm(hid)
        widths = self.filter_widths
        self.dilations = tuple(math.prod(widths[:i]) for i in range(1, len(widths)))
        self.blocks = nnx.List(
            [
                nnx.List([conv(hid, hid, w, d), norm(hid), conv(hid, hid, 1), norm(hid)])
                for w, d in zip(widths[1:], self.dilations, strict=True)
            ]
        )
        self.shrink = conv(hid, outs, 1, use_bias=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.structured:
            return self._forward(EigenActivations.from_joint(x, self.layout_in)).to_joint()
        return self._forward(x)

    def _forward(self, x):
        """The network on flat arrays, or on :class:`EigenActivations` when structured."""
        x = self._post(self.expand_bn, _conv(self.expand, x))
        for (conv, bn, conv1, bn1), width, dilation in zip(
            self.blocks, self.filter_widths[1:], self.dilations, strict=True
        ):
            pad = (width - 1) * dilation // 2
            res = _crop_frames(x, pad, _frames(x) - pad)
            x = res + self._post(bn1, _conv(conv1, self._post(bn, _conv(conv, x))))
        return _conv(self.shrink, x)

    def _post(self, bn, x):
        if isinstance(x, EigenActivations):
            return x.norm(bn).map("tanh")
        return self.activation(bn(x))


def _conv(layer, x):
    return layer.eigen_call(x) if isinstance(x, EigenActivations) else layer(x)


def _frames(x) -> int:
    return (x.plus if isinstance(x, EigenActivations) else x).shape[1]


def _crop_frames(x, start: int, stop: int):
    if isinstance(x, EigenActivations):
        return x.map_arrays(lambda a: a[:, start:stop])
    return x[:, start:stop]
