"""VideoPose3D's temporal convolutional lifting network, plain or chiral, in one code path.

The network maps a window of 2D poses to 3D poses:

    x [*batch, frames, J_in, 2]  ->  y [*batch, frames - receptive_field + 1, J_out, 3]

Expand conv (kernel ``w0``, no bias) -> BN -> act -> dropout; then per block ``i >= 1``:
conv (kernel ``w_i``, dilation ``prod(w[:i])``, no bias) -> BN -> act -> dropout -> 1x1
conv (no bias) -> BN -> act -> dropout, plus the block input cropped to the frames the
conv kept; a final 1x1 conv with bias gives ``J_out * 3`` channels. Every convolution is
"valid", so the receptive field is ``prod(filter_widths)``.

With ``chiral=True`` every conv is a :class:`chiral_jax.ChiralConv1d`, every BN a
:class:`chiral_jax.ChiralBatchNorm` and the activation must be odd; the model is then
exactly chirality equivariant, ``f(T_in x) = T_out f(x)``, with about half the
parameters. Dropout stays plain in both (the paper's choice).

Training can use the *strided* path (VideoPose3D's ``TemporalModelOptimized1f``): on the
same weights, each conv strides by its width instead of dilating, and a window of exactly
``receptive_field`` frames yields one output frame at a fraction of the cost. Evaluate
on whole sequences with the default dilated path.

Every conv module is built undilated with stride 1; the two paths only rearrange time
around the module's own call: the dilated path splits the sequence into ``dilation``
interleaved phases (a conv with dilation ``d`` is an undilated conv on each phase), the
strided path cuts it into windows of the kernel width (one output each).

A chiral model runs in one of two forms (``impl``), chosen by width by default: ``"dense"``
keeps joint-basis activations between layers and runs each conv with its assembled
kernel (narrow layers); ``"even_odd"`` keeps the activations in the even/odd basis
(:class:`chiral_jax.EvenOdd`) from the expand conv to the shrink conv, so each conv is
two half-size convs, batch norm and tanh are elementwise maps, and the basis changes
only at the narrow input and output (wide layers). Every layer is a chiral module, so
the model composes them the same way in both forms. Both are the same function on the
same weights, up to float rounding; dropout masks are drawn over joint-basis channels
in both, so the forms draw other masks from the same distribution.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax import (
    ChiralActivation,
    ChiralBatchNorm,
    ChiralDropout,
    ChiralSequential,
    EvenOdd,
    Skeleton,
)
from chiral_jax._tied import IMPLS, Impl
from chiral_jax.activations import activation as plain_activation
from chiral_jax.even_odd import prefers_even_odd
from chiral_jax.generators import MODES, Mode
from chiral_tasks.common import layers
from chiral_tasks.common.layers import Space

Activation = str | Callable[[jax.Array], jax.Array]

def _check_widths(filter_widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(filter_widths)
    if not widths:
        raise ValueError("filter_widths must hold at least one width (the expand conv)")
    for w in widths:
        if not isinstance(w, int) or w < 1 or w % 2 == 0:
            raise ValueError(
                f"filter widths must be odd positive integers (the residual is cropped to "
                f"the centre of each kernel), got {widths}"
            )
    return widths


class BNMomentum(nnx.Variable):
    """A batch norm's running-average momentum held as a (non-trainable) variable.

    Both ``nnx.BatchNorm`` and :class:`chiral_jax.ChiralBatchNorm` only multiply by their
    ``momentum``, so a scalar variable serves where a float would; being state rather
    than a static attribute, changing it (:func:`set_bn_momentum`) leaves a jitted step's
    compilation valid, and checkpoints carry it.
    """


def _norm(space: Space, *, momentum: float, **kwargs) -> nnx.Module:
    """:func:`chiral_tasks.common.layers.norm` (``[..., size(space)]`` in and out), its
    momentum a :class:`BNMomentum`."""
    norm = layers.norm(space, momentum=momentum, **kwargs)
    # Momentum as state, not a static setting: the per-epoch decay retraces nothing.
    norm.momentum = nnx.data(BNMomentum(jnp.asarray(momentum, jnp.float32)))
    return norm


Features = jax.Array | EvenOdd
"""Hidden activations: a joint-basis array, or the even/odd form."""


def _apply(layer, x: Features) -> Features:
    """A layer on either form of activations (plain layers only ever see arrays)."""
    return layer.even_odd(x) if isinstance(x, EvenOdd) else layer(x)


def _on_arrays(fn: Callable[[jax.Array], jax.Array], x: Features) -> Features:
    """``fn`` (acting on leading axes only: time crops, reshapes) on either form."""
    return x.map_arrays(fn) if isinstance(x, EvenOdd) else fn(x)


def _frames(x: Features) -> int:
    return (x.plus if isinstance(x, EvenOdd) else x).shape[1]


def _dilated_conv(conv: nnx.Module, x: Features, width: int, dilation: int) -> Features:
    """An undilated valid ``conv`` applied with ``dilation``: ``[n, t, c] -> [n, t', c']``.

    Output frame ``p + m * dilation`` only reads input frames ``p + k * dilation``, so
    each phase ``p`` is an undilated conv on ``x[:, p::dilation]``.
    """
    if dilation == 1:
        return _apply(conv, x)
    t = _frames(x)
    steps = -(-t // dilation)

    def to_phases(a: jax.Array) -> jax.Array:
        # Zero frames appended at the end only reach outputs past the valid length (cropped).
        a = jnp.pad(a, ((0, 0), (0, steps * dilation - t), (0, 0)))
        return a.reshape(a.shape[0], steps, dilation, a.shape[-1]).swapaxes(1, 2)

    def from_phases(a: jax.Array) -> jax.Array:
        a = a.swapaxes(1, 2)
        return a.reshape(a.shape[0], -1, a.shape[-1])[:, : t - (width - 1) * dilation]

    return _on_arrays(from_phases, _apply(conv, _on_arrays(to_phases, x)))


def _strided_conv(conv: nnx.Module, x: Features, width: int) -> Features:
    """An undilated valid ``conv`` of kernel ``width`` with stride ``width``.

    Shapes: ``[n, k * width, c] -> [n, k, c']`` (one output per window of ``width`` frames).
    """
    k = _frames(x) // width
    windows = _on_arrays(lambda a: a.reshape(a.shape[0], k, width, a.shape[-1]), x)
    return _on_arrays(lambda a: a.reshape(a.shape[0], k, a.shape[-1]), _apply(conv, windows))


class _Block(nnx.Module):
    """conv (width, dilation) -> BN -> act/drop -> 1x1 conv -> BN -> act/drop, + residual.

    The residual is the input frame under the kernel's centre tap (causal: its last tap).
    """

    def __init__(
        self,
        hidden: Space,
        width: int,
        dilation: int,
        causal: bool,
        conv: Callable[..., nnx.Module],
        norm: Callable[[Space], nnx.Module],
    ):
        self.width = width
        self.dilation = dilation
        self.residual_tap = width - 1 if causal else width // 2
        self.conv = conv(hidden, hidden, width, use_bias=False)
        self.bn = norm(hidden)
        self.conv1 = conv(hidden, hidden, 1, use_bias=False)
        self.bn1 = norm(hidden)

    def __call__(self, x: Features, post: Callable, strided: bool) -> Features:
        if strided:
            tap, width = self.residual_tap, self.width
            res = _on_arrays(lambda a: a.reshape(a.shape[0], -1, width, a.shape[-1])[:, :, tap], x)
            h = _strided_conv(self.conv, x, self.width)
        else:
            start = self.residual_tap * self.dilation
            stop = start + _frames(x) - (self.width - 1) * self.dilation
            res = _on_arrays(lambda a: a[:, start:stop], x)
            h = _dilated_conv(self.conv, x, self.width, self.dilation)
        h = post(_apply(self.bn, h))
        return res + post(_apply(self.bn1, _apply(self.conv1, h)))


class TemporalModel(nnx.Module):
    """VideoPose3D's temporal conv net; chirality equivariant when ``chiral=True``.

    Shapes: ``x [*batch, frames, J_in, 2]`` (or flattened ``[*batch, frames, J_in*2]``,
    joints in the skeleton's order) -> ``[*batch, frames - receptive_field + 1, J_out, 3]``;
    with ``strided=True``, ``frames = k * receptive_field`` -> ``[*batch, k, J_out, 3]``.

    Args:
      skeleton_in, skeleton_out: the 2D input and 3D output skeletons; their layouts
        are ``skeleton.layout(2)`` and ``skeleton.layout(3)`` (x negated by the mirror).
      chiral: chiral layers (equivariant, ~half the parameters) or plain ``nnx`` layers.
      filter_widths: odd kernel widths ``(w0, w1, ...)``: the expand conv, then one
        residual block per further width. ``(3, 3, 3, 3, 3)`` sees 243 frames.
      channels: hidden width. Chiral: a multiple of ``J_in`` (see :meth:`Skeleton.hidden_layout`).
      dropout: dropout rate after every activation (plain dropout in both variants).
      causal: crop residuals at the last tap instead of the centre, so that the output
        belongs to the window's last frame (pad inputs by :attr:`pad` + :attr:`causal_shift`
        on the left, :attr:`pad` - :attr:`causal_shift` on the right).
      mode: chiral parameterisation, ``"complete"`` or ``"paper"`` (unused when plain).
      activation: a name or callable; default ``"tanh"`` for chiral (which must be odd)
        and ``"relu"`` for plain, as in the paper.
      even_activation: chiral only: a function (any, e.g. ``"relu"``) for the hidden
        channels that keep their sign, ``activation`` then acting on the negated ones
        only (:class:`chiral_jax.ChiralActivation`); None: ``activation`` everywhere.
      negated_fraction: chiral only: the fraction of each hidden joint's dims negated.
      impl: chiral only: the form the model runs in (see the module docstring),
        ``"dense"`` (joint-basis activations, assembled kernels) or ``"even_odd"``
        (activations in the even/odd basis throughout). ``"auto"`` (default) decides by
        width, as for one layer: ``"even_odd"`` when the hidden convs' widest kernel
        prefers it (:func:`chiral_jax.even_odd.prefers_even_odd`).
      bn_momentum: running-average decay, Flax convention (PyTorch's 0.1 is 0.9 here);
        decay it per epoch with :func:`set_bn_momentum`.
      dtype, param_dtype: computation and parameter dtypes of every layer.
      rngs: ``nnx.Rngs`` with ``params`` (and ``dropout``, else ``default``) streams.

    >>> from chiral_jax.skeletons import H36M_17
    >>> model = TemporalModel(H36M_17, H36M_17, chiral=True, channels=68, rngs=nnx.Rngs(0))
    >>> model.receptive_field, model(jnp.zeros((2, 30, 17, 2))).shape
    (27, (2, 4, 17, 3))
    """

    def __init__(
        self,
        skeleton_in: Skeleton,
        skeleton_out: Skeleton,
        *,
        chiral: bool,
        filter_widths: Sequence[int] = (3, 3, 3),
        channels: int = 1020,
        dropout: float = 0.25,
        causal: bool = False,
        mode: Mode = "complete",
        activation: Activation | None = None,
        even_activation: Activation | None = None,
        negated_fraction: float = 1 / 3,
        impl: Impl = "auto",
        bn_momentum: float = 0.9,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = _check_widths(filter_widths)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.chiral = chiral
        self.filter_widths = widths
        self.causal = causal
        self.layout_in = skeleton_in.layout(2)
        self.layout_out = skeleton_out.layout(3)
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if chiral:
            # The oddness probe runs on concrete values, also under jit or eval_shape.
            hidden = skeleton_in.hidden_layout(channels, negated_fraction)
            with jax.ensure_compile_time_eval():
                odd = "tanh" if activation is None else activation
                act = ChiralActivation(odd, even=even_activation, layout=hidden)
            # Activation then dropout; in the even/odd form one pass over the pairs.
            self.post = ChiralSequential(act, ChiralDropout(dropout, rngs=rngs))
            n_in, n_out = self.layout_in, self.layout_out
            if impl == "auto":
                impl = "even_odd" if prefers_even_odd(hidden, hidden, max(widths)) else "dense"
        else:
            if impl == "even_odd":
                raise ValueError("impl='even_odd' needs chiral=True (the even/odd basis)")
            if even_activation is not None:
                raise ValueError("even_activation is for chiral models (their positive channels)")
            act = plain_activation("relu" if activation is None else activation)
            self.post = nnx.Sequential(act, nnx.Dropout(dropout, rngs=rngs))
            hidden, n_in, n_out = channels, self.layout_in.size, self.layout_out.size
            impl = "dense"
        self.impl = impl
        settings = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # Every conv is undilated and "valid". A chiral one's joint-basis calls run the
        # assembled kernel; the even/odd form calls `even_odd` (two half-size convs)
        # whatever the layer's impl.
        conv = functools.partial(layers.conv, padding="VALID", mode=mode, impl="dense", **settings)
        norm = functools.partial(_norm, momentum=bn_momentum, **settings)
        self.expand_conv = conv(n_in, hidden, widths[0], use_bias=False)
        self.expand_bn = norm(hidden)
        dilations = [math.prod(widths[:i]) for i in range(1, len(widths))]
        self.blocks = nnx.List(
            [
                _Block(hidden, w, d, causal, conv, norm)
                for w, d in zip(widths[1:], dilations, strict=True)
            ]
        )
        self.shrink = conv(hidden, n_out, 1, use_bias=True)

    @property
    def receptive_field(self) -> int:
        """Input frames seen by one output frame: ``prod(filter_widths)``."""
        return math.prod(self.filter_widths)

    @property
    def pad(self) -> int:
        """Context frames on each side of an output frame: ``(receptive_field - 1) // 2``."""
        return (self.receptive_field - 1) // 2

    @property
    def causal_shift(self) -> int:
        """How far outputs move towards the window's end: :attr:`pad` if causal, else 0."""
        return self.pad if self.causal else 0

    @property
    def num_params(self) -> int:
        """The number of trainable scalars (all ``nnx.Param`` leaves)."""
        return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(self, nnx.Param)))

    chunk_length = 1
    """Output frames of one training window (the strided path: one)."""
    max_frames = None
    """The longest clip one call lifts: any length."""


    def _flatten_input(self, x: jax.Array) -> jax.Array:
        joints = self.layout_in.num_joints
        if x.ndim >= 3 and x.shape[-2:] == (joints, 2):
            x = x.reshape(x.shape[:-2] + (2 * joints,))
        if x.ndim < 2 or x.shape[-1] != 2 * joints:
            raise ValueError(
                f"TemporalModel expects 2D poses [*batch, frames, {joints}, 2] or "
                f"[*batch, frames, {2 * joints}], got shape {x.shape}"
            )
        return x

    def __call__(self, x: jax.Array, *, strided: bool = False) -> jax.Array:
        """Lift ``x`` (see the class docstring for shapes); ``strided`` picks the training path."""
        x = self._flatten_input(jnp.asarray(x))
        batch, frames = x.shape[:-2], x.shape[-2]
        field = self.receptive_field
        if strided and frames % field:
            raise ValueError(
                f"the strided path needs windows of whole receptive fields: frames={frames} "
                f"is not a multiple of receptive_field={field}"
            )
        if frames < field:
            raise ValueError(f"frames={frames} is shorter than the receptive field {field}")
        x = x.reshape((-1,) + x.shape[-2:])
        h = EvenOdd.from_joint(x, self.layout_in) if self.impl == "even_odd" else x
        w0 = self.filter_widths[0]
        if strided:
            h = _strided_conv(self.expand_conv, h, w0)
        else:
            h = _apply(self.expand_conv, h)
        h = _apply(self.post, _apply(self.expand_bn, h))
        for block in self.blocks:
            h = block(h, functools.partial(_apply, self.post), strided)
        y = _apply(self.shrink, h)
        if self.impl == "even_odd":
            y = y.to_joint()
        return y.reshape(batch + y.shape[1:2] + (self.layout_out.num_joints, 3))


class SingleFrameModel(TemporalModel):
    """The single-frame variant: :class:`TemporalModel` with every filter width 1.

    ``blocks`` residual blocks after the expand layer (VideoPose3D's ``1,1,1`` is 2);
    receptive field 1, so ``frames`` in gives ``frames`` out. Other arguments as
    :class:`TemporalModel`.
    """

    def __init__(self, skeleton_in: Skeleton, skeleton_out: Skeleton, *, blocks: int = 2, **kw):
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        super().__init__(skeleton_in, skeleton_out, filter_widths=(1,) * (blocks + 1), **kw)


def videopose3d_bn_momentum(
    epoch: int, epochs: int, initial: float = 0.1, final: float = 0.001
) -> float:
    """VideoPose3D's BN momentum for ``epoch`` (0-based) of ``epochs``, Flax convention.

    PyTorch's momentum decays geometrically from ``initial`` towards ``final``:
    ``m = initial * exp(-epoch / epochs * ln(initial / final))``. PyTorch updates
    ``ra = (1 - m) * ra + m * batch`` and Flax ``ra = momentum * ra + (1 - momentum) * batch``,
    so this returns ``1 - m`` (0.9 at epoch 0).

    >>> round(videopose3d_bn_momentum(0, 80), 6)
    0.9
    """
    if epochs < 1 or not 0 <= epoch <= epochs:
        raise ValueError(f"need 0 <= epoch <= epochs and epochs >= 1, got {epoch}, {epochs}")
    if not 0 < final <= initial < 1:
        raise ValueError(f"need 0 < final <= initial < 1, got initial={initial}, final={final}")
    return 1.0 - initial * math.exp(-epoch / epochs * math.log(initial / final))


def set_bn_momentum(model: nnx.Module, momentum: float) -> None:
    """Set the running-average ``momentum`` (Flax convention) of every batch-norm in ``model``.

    Call once per epoch with :func:`videopose3d_bn_momentum`. In a :class:`TemporalModel`
    the momentum is a :class:`BNMomentum` variable (state, not a static setting), so a
    step jitted over ``nnx.split(model)`` keeps its compilation; other batch norms keep a
    static float, whose change retraces such a step.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BN momentum must lie in [0, 1] (Flax convention), got {momentum}")
    norms = [
        m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm | ChiralBatchNorm)
    ]
    if not norms:
        raise ValueError(f"{type(model).__name__} has no batch-norm layer to set momentum on")
    for norm in norms:
        if isinstance(norm.momentum, BNMomentum):
            norm.momentum[...] = jnp.asarray(momentum, jnp.float32)
        else:
            # A batch norm built elsewhere keeps its static float: adding state here would
            # change the structure a running trainer has already split and checkpointed.
            norm.momentum = float(momentum)
