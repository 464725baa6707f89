"""The even/odd basis: an equivariant layer as two half-size ops, in pure JAX.

For a pair channel (left joint ``i``, dim ``d``, sign ``s = -1`` for negated dims)

    u = x_L + s * x_R   (T u = u),        v = x_L - s * x_R   (T v = -v),

and centre channels are already even or odd: centre-positive ones in the even
(``+1``) space, centre-negative ones in the odd (``-1``) space. With

    plus  = [u (|L| * D), c_p (|C| * |Dp|)]      (n+ channels)
    minus = [v (|L| * D), c_n (|C| * |Dn|)]      (n- channels)

an equivariant ``y = x @ W + b`` becomes ``plus_y = plus @ A + a``,
``minus_y = minus @ B``: ``n+_in * n+_out + n-_in * n-_out`` multiply-adds
instead of ``n_in * n_out`` (half when the spaces are balanced). In the free
blocks' notation (rows out, columns in; ``S = diag(s_in)``)

    u_y  = u (W_ll + S W_lr) + 2 c_p W_lc[cp]      v_y  = v (W_ll - S W_lr) + 2 c_n W_lc[cn]
    y_cp = u W_cp,l + c_p W_cp,cp                  y_cn = v W_cn,l + c_n W_cn,cn

(``W_cp,l`` holds ``cp,ln`` in complete mode, zero in paper mode), and the bias
is ``a = [2 b_l, b_cp]`` (the odd space has none). ``A`` and ``B`` are sums,
differences and concatenations of the free blocks: ``O(params)``, no gathers.

The implementation of an equivariant dense layer is just::

    plus, minus = to_even_odd(x, layout_in)
    A, B = kernels(generator, blocks)
    y = from_even_odd(plus @ A + bias(generator, b), minus @ B, layout_out)

Everything here is XLA ops. :mod:`chiral_jax.fused` can install fused CPU kernels for
the basis changes and the odd activations (:func:`set_fused_ops`); this module never
imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chiral_jax._layout import ChiralLayout
from chiral_jax.activations import ODD_ACTIVATIONS, odd_activation
from chiral_jax.generators import ChiralGenerator, gather


class FusedOps(NamedTuple):
    """Faster versions of this module's basis changes and odd activation, same numbers.

    ``split(x, layout) -> (plus, minus)`` and ``merge(plus, minus, layout) -> x`` on
    canonical layouts; ``odd_map(plus, minus, pairs, name) -> (plus, minus)`` for the
    activations named in ``odd_names``.
    """

    split: Callable
    merge: Callable
    odd_map: Callable
    odd_names: frozenset[str]


_fused: FusedOps | None = None


def set_fused_ops(ops: FusedOps | None) -> None:
    """Install (or, with None, remove) fused implementations; see :mod:`chiral_jax.fused`."""
    global _fused
    _fused = ops


def fused_ops() -> FusedOps | None:
    """The fused implementations in use, or None (the default: XLA ops only)."""
    return _fused


# -- the basis change -----------------------------------------------------------------


def _canonical_channels(layout: ChiralLayout) -> np.ndarray:
    """Flat layout channel at each canonical position (joints [l, r, c], dims [n, p])."""
    joints = np.asarray(layout.left + layout.right + layout.centre, dtype=np.int64)
    dims = np.asarray(layout.negated + layout.positive, dtype=np.int64)
    return (joints[:, None] * layout.dims + dims[None, :]).reshape(-1)


def _pair_signs(layout: ChiralLayout) -> np.ndarray:
    dims = np.r_[-np.ones(len(layout.negated)), np.ones(len(layout.positive))]
    return np.tile(dims, len(layout.left))


def pair_signs(layout: ChiralLayout, dtype, ndim: int = 1) -> jax.Array:
    """``s`` over the pair channels ``[|L| * D]`` of the canonical order (-1 negated first),
    shaped to broadcast against arrays of ``ndim`` axes."""
    return jnp.asarray(_pair_signs(layout).reshape((1,) * (ndim - 1) + (-1,)), dtype)


def joint_parts(x: jax.Array, layout: ChiralLayout) -> tuple[jax.Array, ...]:
    """The channel groups of joint-basis ``x [..., J*D]`` (the layout's own order):
    ``(left, right, cp, cn)``, shapes ``[..., |L|*D]`` twice (pair ``i`` of ``right``
    mirrors pair ``i`` of ``left``), ``[..., |C|*|Dp|]`` and ``[..., |C|*|Dn|]``."""
    if not layout.is_canonical:
        x = jnp.take(x, _canonical_channels(layout), axis=-1)
    return _canonical_parts(x, layout)


def _canonical_parts(x: jax.Array, layout: ChiralLayout) -> tuple[jax.Array, ...]:
    """:func:`joint_parts` of ``x`` already in canonical order."""
    pairs, lead, neg = len(layout.left) * layout.dims, x.shape[:-1], len(layout.negated)
    c = x[..., 2 * pairs :].reshape(lead + (len(layout.centre), layout.dims))
    return (
        x[..., :pairs],
        x[..., pairs : 2 * pairs],
        c[..., neg:].reshape(lead + (-1,)),
        c[..., :neg].reshape(lead + (-1,)),
    )


def _split(x: jax.Array, layout: ChiralLayout) -> tuple[jax.Array, jax.Array]:
    """Canonical ``x`` to ``(plus, minus)``: ``u, v = x_L +- s x_R``, centre dims by sign."""
    x_l, x_r, c_p, c_n = _canonical_parts(x, layout)
    s = pair_signs(layout, x.dtype, x.ndim)
    return (
        jnp.concatenate([x_l + s * x_r, c_p], axis=-1),
        jnp.concatenate([x_l - s * x_r, c_n], axis=-1),
    )


def _merge(plus: jax.Array, minus: jax.Array, layout: ChiralLayout) -> jax.Array:
    """``(plus, minus)`` to canonical ``x``: ``x_L = (u + v) / 2``, ``x_R = s (u - v) / 2``."""
    pairs, lead = len(layout.left) * layout.dims, plus.shape[:-1]
    n_c, neg = len(layout.centre), len(layout.negated)
    s, half = pair_signs(layout, plus.dtype, plus.ndim), jnp.asarray(0.5, plus.dtype)
    u, v = plus[..., :pairs], minus[..., :pairs]
    c = jnp.concatenate(
        [
            minus[..., pairs:].reshape(lead + (n_c, neg)),
            plus[..., pairs:].reshape(lead + (n_c, layout.dims - neg)),
        ],
        axis=-1,
    ).reshape(lead + (n_c * layout.dims,))
    return jnp.concatenate([half * (u + v), half * s * (u - v), c], axis=-1)


def to_even_odd(x: jax.Array, layout: ChiralLayout) -> tuple[jax.Array, jax.Array]:
    """Joint basis to the even/odd basis.

    Shapes: ``x [..., J*D]`` (the layout's own order) ->
    ``plus [..., n+]``, ``minus [..., n-]`` (``layout.n_plus``, ``layout.n_minus``).
    A layout not in canonical order costs one static channel permutation first.
    """
    layout.check_features(x, "to_even_odd input")
    if not layout.is_canonical:
        x = jnp.take(x, _canonical_channels(layout), axis=-1)
    return (_fused.split if _fused else _split)(x, layout)


def from_even_odd(plus: jax.Array, minus: jax.Array, layout: ChiralLayout) -> jax.Array:
    """The even/odd basis back to the joint basis (inverse of :func:`to_even_odd`).

    Shapes: ``plus [..., n+]``, ``minus [..., n-]`` -> ``x [..., J*D]`` (layout order).
    """
    if plus.shape[-1:] != (layout.n_plus,) or minus.shape != plus.shape[:-1] + (layout.n_minus,):
        raise ValueError(
            f"from_even_odd expects plus [..., {layout.n_plus}] and minus [..., "
            f"{layout.n_minus}] with equal leading axes, got {plus.shape} and {minus.shape}"
        )
    x = (_fused.merge if _fused else _merge)(plus, minus, layout)
    if not layout.is_canonical:
        x = jnp.take(x, np.argsort(_canonical_channels(layout)), axis=-1)
    return x


def mix_pairs(
    plus: jax.Array,
    minus: jax.Array,
    pairs: int,
    fns: tuple[Callable, Callable, Callable],
    scale: tuple[jax.Array, ...] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Elementwise maps on even/odd arrays: ``u' = f(p) + f(q)``, ``v' = f(p) - f(q)``.

    ``fns = (f, f_cp, f_cn)``: ``f`` sees the pair channels' joint-basis values
    ``p = (u + v) / 2`` and ``q = (u - v) / 2`` (the left joints and the sign-corrected
    right joints, ``[..., pairs]``; the signs drop out where ``f`` is odd, which it must
    be on negated dims), ``f_cp`` and ``f_cn`` the centre channels of ``plus`` and of
    ``minus``. ``scale``: multipliers of ``(f(p), f(q), f_cp(.), f_cn(.))`` (a dropout
    mask's parts, :func:`joint_parts`), or None.
    """
    u, v = plus[..., :pairs], minus[..., :pairs]
    half = jnp.asarray(0.5, u.dtype)
    f, f_cp, f_cn = fns
    p, q = (u + v) * half, (u - v) * half
    parts = (f(p), f(q), f_cp(plus[..., pairs:]), f_cn(minus[..., pairs:]))
    if scale is not None:
        parts = tuple(a * m.astype(a.dtype) for a, m in zip(parts, scale, strict=True))
    f_p, f_q, c_p, c_n = parts
    return jnp.concatenate([f_p + f_q, c_p], axis=-1), jnp.concatenate([f_p - f_q, c_n], axis=-1)


# -- kernels --------------------------------------------------------------------------


def kernels(
    generator: ChiralGenerator, blocks: dict[str, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """The tied kernel in the even/odd basis: ``(A, B)``.

    Shapes: ``A (*lead, n+_in, n+_out)``, ``B (*lead, n-_in, n-_out)``, such that
    ``to_even_odd(x @ W) == (plus @ A, minus @ B)`` for
    ``W = generator.assemble_kernel(blocks)`` (per tap for a convolution's ``lead``).
    """
    generator._check_blocks(blocks, generator.kernel_shapes(), "kernel")
    dtype = jnp.result_type(*blocks.values())
    two = jnp.asarray(2, dtype)
    return _kernels(
        generator,
        blocks.get,
        lambda shape: jnp.zeros(shape, dtype),
        lambda a, b, sign: a + sign * b,
        lambda a: two * a,
        jnp,
    )


def _kernels(generator: ChiralGenerator, get, zeros, add, double, xp):
    """The even/odd kernels from blocks, in any algebra: ``get(name)`` (None if absent),
    ``zeros(shape)``, ``add(a, b, sign) = a + sign * b``, ``double(a) = 2 a``."""
    lo, li = generator.layout_out, generator.layout_in
    lead = generator.lead

    def block(name: str):
        found = get(name)
        if found is not None:
            return found
        # Only ``cp,ln`` can be absent (paper mode): it is zero.
        return zeros((*lead, len(lo.centre), len(lo.positive), len(li.left), len(li.negated)))

    def flat(k):
        # (*lead, Jo, Do, Ji, Di) -> (*lead, Ji*Di, Jo*Do)
        k = xp.moveaxis(k, (-2, -1), (-4, -3))
        return k.reshape(*lead, k.shape[-4] * k.shape[-3], k.shape[-2] * k.shape[-1])

    def stack(rows):
        # rows[i][j]: block from input group j to output group i, (*lead, in, out).
        cols = [xp.concatenate([row[j] for row in rows], axis=-1) for j in range(len(rows[0]))]
        return xp.concatenate(cols, axis=-2)

    out = []
    for sign, centre in ((1, "cp"), (-1, "cn")):
        # pair -> pair: W_ll + sign * S W_lr (S = -1 on negated input dims), per output
        # group (ln, lp), concatenated over the input dims [n, p].
        pair_rows = [
            xp.concatenate(
                [
                    add(block(f"{r},ln"), block(f"{r},rn"), -sign),
                    add(block(f"{r},lp"), block(f"{r},rp"), sign),
                ],
                axis=-1,
            )
            for r in ("ln", "lp")
        ]
        pair_pair = flat(xp.concatenate(pair_rows, axis=-3))
        centre_to_pair = xp.concatenate([block(f"{r},{centre}") for r in ("ln", "lp")], axis=-3)
        pair_to_centre = xp.concatenate([block(f"{centre},ln"), block(f"{centre},lp")], axis=-1)
        out.append(
            stack(
                [
                    [pair_pair, flat(double(centre_to_pair))],
                    [flat(pair_to_centre), flat(block(f"{centre},{centre}"))],
                ]
            )
        )
    return out[0], out[1]


@functools.lru_cache(maxsize=256)
def _pair_index(generator: ChiralGenerator) -> tuple[np.ndarray, ...]:
    """``(A1, A2, B1, B2)``: ``A = t[A1] + t[A2]``, ``B = t[B1] + t[B2]`` for the packed
    free blocks ``v`` and ``t = [v, -v, 0]``.

    Every even/odd kernel entry is a free value, a sum or difference of two, twice one, or
    zero. Found by running :func:`_kernels` on index pairs (NumPy, exact), so that
    function stays the one definition.
    """
    n = sum(math.prod(shape) for shape in generator.kernel_shapes().values())
    zero, base = 2 * n, 2 * n + 1  # t's zero slot; pairs are encoded as i1 * base + i2

    def neg(i):
        return np.where(i == zero, zero, np.where(i < n, i + n, i - n))

    ids = generator.unpack(np.arange(n, dtype=np.int64) * base + zero)
    a, b = _kernels(
        generator,
        ids.get,
        lambda shape: np.full(shape, zero * base + zero, np.int64),
        lambda x, y, sign: x // base * base + (y // base if sign > 0 else neg(y // base)),
        lambda x: x // base * base + x // base,
        np,
    )
    return tuple(
        (part // base if first else part % base).astype(np.int32)
        for part in (a, b)
        for first in (True, False)
    )


def kernels_packed(generator: ChiralGenerator, packed: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`kernels` of a layer's packed free blocks (:meth:`ChiralGenerator.pack`), as
    four gathers from a precomputed index, which XLA fuses with their sums: few ops to
    compile and to differentiate, the same values bit for bit."""
    a1, a2, b1, b2 = _pair_index(generator)
    table = jnp.concatenate([packed, -packed, jnp.zeros((1,), packed.dtype)])
    return gather(table, a1) + gather(table, a2), gather(table, b1) + gather(table, b2)


def bias(generator: ChiralGenerator, blocks: dict[str, jax.Array]) -> jax.Array:
    """The tied bias in the even space, shape ``(n+_out,)``: ``[2 b_l, b_cp]``.

    The odd space has none (``b_r = s b_l`` cancels in ``v``; ``b_cn = 0``).
    """
    generator._check_blocks(blocks, generator.bias_shapes(), "bias")
    return bias_packed(generator, generator.pack(blocks, "bias"))


def bias_packed(generator: ChiralGenerator, packed: jax.Array) -> jax.Array:
    """:func:`bias` of a layer's packed bias ``[b_l, b_cp]`` (:meth:`ChiralGenerator.pack`):
    already in the even space's order, so one multiply by :func:`shift_factor`."""
    return packed * shift_factor(generator.layout_out, packed.dtype)


def shift_factor(layout: ChiralLayout, dtype) -> jax.Array:
    """``[2, ..., 2, 1, ..., 1]`` over the even channels ``[n+]``: a shift ``c`` of both
    joints of a pair shifts their ``u`` by ``2 c``, a centre channel's by ``c``."""
    pairs = len(layout.left) * layout.dims
    return jnp.asarray(np.r_[np.full(pairs, 2.0), np.ones(layout.n_plus - pairs)], dtype)


# -- the cost model -------------------------------------------------------------------

# The even/odd path pays the basis changes (an add/sub per channel, in and out, forward
# and backward) and runs two ops instead of one; it wins when the multiply-adds it saves
# outweigh that. Per layer: the saved multiply-adds per sample must exceed
# ``_BASIS_COST`` per channel of the basis changes plus ``_SPLIT_OVERHEAD`` for the
# second op and the even/odd elementwise maps. Measured on a 2-core CPU (XLA, fp32): the
# lifting model's training step (rf 27, 256 windows, Adam), even/odd form / dense form:
# 1.17 at 119 channels, 0.93 at 255, 0.83 at 510, 0.75 at 1020; the rule puts the
# switch between 119 and 255 (3-tap convs: 20,904 vs 96,600 saved per sample).
_BASIS_COST = 50
_SPLIT_OVERHEAD = 60_000


def multiply_adds(layout_in: ChiralLayout, layout_out: ChiralLayout) -> tuple[int, int]:
    """Multiply-adds per sample and tap: ``(dense path, even/odd path)``."""
    dense = layout_in.size * layout_out.size
    split = layout_in.n_plus * layout_out.n_plus + layout_in.n_minus * layout_out.n_minus
    return dense, split


def prefers_even_odd(layout_in: ChiralLayout, layout_out: ChiralLayout, taps: int = 1) -> bool:
    """Whether the even/odd path is expected to be faster (the ``impl="auto"`` rule).

    It saves ``taps * (n_in * n_out - n+_in * n+_out - n-_in * n-_out)`` multiply-adds per
    sample and costs about ``_BASIS_COST`` multiply-adds' worth of time per channel of
    the basis changes in and out, plus a fixed ``_SPLIT_OVERHEAD`` for running two ops.
    """
    dense, split = multiply_adds(layout_in, layout_out)
    cost = _BASIS_COST * (layout_in.size + layout_out.size) + _SPLIT_OVERHEAD
    return taps * (dense - split) > cost


# -- activations in the even/odd form -------------------------------------------------


def _odd_name(fn) -> str | None:
    return next((name for name, f in ODD_ACTIVATIONS.items() if f is fn), None)


@dataclasses.dataclass(frozen=True)
class EvenOdd:
    """Activations held in the even/odd basis: a pytree of ``plus`` and ``minus``.

    Shapes: ``plus [..., layout.n_plus]``, ``minus [..., layout.n_minus]`` (``layout``
    is static). Every chiral module's :meth:`~chiral_jax.ChiralModule.even_odd` maps
    this form to this form, so a network that keeps it changes basis only at its input
    and output: its layers run two half-size ops, batch norm is a per-channel affine
    map, an odd activation mixes each pair's ``u`` and ``v`` in one elementwise map
    (:meth:`map`), and residual sums and time crops act on both arrays.

    >>> from flax import nnx
    >>> from chiral_jax import ChiralLayout, ChiralLinear
    >>> layout = ChiralLayout.hidden(pairs=2, centre=1, dims=3, negated=1)
    >>> layer = ChiralLinear(layout, layout, rngs=nnx.Rngs(0))
    >>> x = jnp.ones((4, layout.size))
    >>> z = layer.even_odd(EvenOdd.from_joint(x, layout)).map("tanh")
    >>> bool(jnp.allclose(z.to_joint(), jnp.tanh(layer(x)), atol=1e-6))
    True
    """

    plus: jax.Array
    minus: jax.Array
    layout: ChiralLayout = dataclasses.field(metadata=dict(static=True))

    def __post_init__(self):
        lo = self.layout
        # Shapes are checked on arrays only: jax also builds this pytree from placeholders.
        shapes = [getattr(a, "shape", None) for a in (self.plus, self.minus)]
        if all(isinstance(sh, tuple) for sh in shapes) and (
            shapes[0][-1:] != (lo.n_plus,) or shapes[1][-1:] != (lo.n_minus,)
        ):
            raise ValueError(
                f"EvenOdd activations for this layout need plus [..., {lo.n_plus}] and "
                f"minus [..., {lo.n_minus}], got {shapes[0]} and {shapes[1]}"
            )

    @classmethod
    def from_joint(cls, x: jax.Array, layout: ChiralLayout) -> EvenOdd:
        """From joint-basis ``x [..., J*D]`` (the layout's own order)."""
        return cls(*to_even_odd(x, layout), layout)

    def to_joint(self) -> jax.Array:
        """Back to the joint basis: ``[..., J*D]`` in the layout's own order."""
        return from_even_odd(self.plus, self.minus, self.layout)

    def map(
        self, fn: str | Callable[[jax.Array], jax.Array], *, scale: jax.Array | None = None
    ) -> EvenOdd:
        """An odd elementwise function applied in the joint basis (e.g. ``"tanh"``).

        For a pair with ``x_L = p``, ``x_R = s q`` (``p = (u + v) / 2``,
        ``q = (u - v) / 2``), oddness gives ``u' = f(p) + f(q)``, ``v' = f(p) - f(q)``.
        Centre channels are mapped as they are. Raises ``ValueError`` for a function
        that is not odd (it would break equivariance).

        ``scale``: a joint-basis multiplier ``[..., layout.size]`` (layout order) of
        ``f(x)``, such as a dropout mask over the joint-basis channels (it commutes with
        the mirror channel by channel): the result is ``f(x) * scale`` in this form.
        """
        with jax.ensure_compile_time_eval():
            fn = odd_activation(fn)
        pairs = len(self.layout.left) * self.layout.dims
        name = _odd_name(fn)
        if _fused and scale is None and name in _fused.odd_names:
            plus, minus = _fused.odd_map(self.plus, self.minus, pairs, name)
        else:
            parts = None if scale is None else joint_parts(scale, self.layout)
            plus, minus = mix_pairs(self.plus, self.minus, pairs, (fn, fn, fn), parts)
        return EvenOdd(plus, minus, self.layout)

    def map_arrays(self, fn: Callable[[jax.Array], jax.Array]) -> EvenOdd:
        """``fn`` on both arrays: for maps that act on leading axes only (a time crop)."""
        return EvenOdd(fn(self.plus), fn(self.minus), self.layout)

    def __add__(self, other: EvenOdd) -> EvenOdd:
        if not isinstance(other, EvenOdd) or other.layout != self.layout:
            return NotImplemented
        return EvenOdd(self.plus + other.plus, self.minus + other.minus, self.layout)


jax.tree_util.register_dataclass(EvenOdd, data_fields=["plus", "minus"], meta_fields=["layout"])


class ChannelStats(NamedTuple):
    """Mirror-united batch statistics per even/odd channel: the joint-basis mean and
    variance of the channel each even/odd channel belongs to (a pair's left joint, or
    the centre channel itself; the right joint has the mirrored mean and the same
    variance). Shapes ``mean_plus [n+]``, ``var_plus [n+]``, ``var_minus [n-]``; odd
    channels have mean zero."""

    mean_plus: jax.Array
    var_plus: jax.Array
    var_minus: jax.Array


def channel_stats(z: EvenOdd, axis_name: str | None = None) -> ChannelStats:
    """The batch statistics of ``z`` united with its mirror image (over every axis but
    the last, in float32), per even/odd channel.

    Mirroring fixes ``u`` and ``c_p`` and negates ``v`` and ``c_n``, so the united mean
    of a left joint is ``E[u] / 2``, of a centre-positive channel ``E[c_p]``, of a
    centre-negative one zero; ``E[x^2]`` is ``(E[u^2] + E[v^2]) / 4`` for both joints
    of a pair and ``E[c^2]`` for a centre channel. ``axis_name``: a mapped axis to
    average the statistics over.
    """
    plus, minus = z.plus.astype(jnp.float32), z.minus.astype(jnp.float32)
    axes = tuple(range(plus.ndim - 1))
    stats = (
        jnp.mean(plus, axis=axes),
        jnp.mean(jnp.square(plus), axis=axes),
        jnp.mean(jnp.square(minus), axis=axes),
    )
    if axis_name is not None:
        stats = jax.lax.pmean(stats, axis_name)
    m_plus, q_plus, q_minus = stats
    pairs = len(z.layout.left) * z.layout.dims
    mean = m_plus / shift_factor(z.layout, jnp.float32)
    pair_square = (q_plus[:pairs] + q_minus[:pairs]) / 4
    var_plus = jnp.concatenate([pair_square, q_plus[pairs:]]) - jnp.square(mean)
    var_minus = jnp.concatenate([pair_square - jnp.square(mean[:pairs]), q_minus[pairs:]])
    return ChannelStats(mean, jnp.maximum(var_plus, 0.0), jnp.maximum(var_minus, 0.0))


def stats_to_joint(stats: ChannelStats, layout: ChiralLayout) -> tuple[jax.Array, jax.Array]:
    """``(mean, var)``, each ``[layout.size]`` in the layout's order: the joint-basis form
    of :class:`ChannelStats` (one gather each, with a precomputed index)."""
    src_plus, src_var, sign = _joint_index(layout)
    mean = jnp.asarray(sign) * gather(stats.mean_plus, src_plus)
    return mean, gather(jnp.concatenate([stats.var_plus, stats.var_minus]), src_var)


def stats_from_joint(mean: jax.Array, var: jax.Array, layout: ChiralLayout) -> ChannelStats:
    """:class:`ChannelStats` of mirror-symmetric joint-basis ``mean`` and swap-symmetric
    ``var`` (``[layout.size]``, the layout's order): the inverse of :func:`stats_to_joint`."""
    plus_src, minus_src = channel_sources(layout)
    return ChannelStats(gather(mean, plus_src), gather(var, plus_src), gather(var, minus_src))


def mirror_stats(z: EvenOdd, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
    """The batch statistics of ``z`` united with its mirror image, in the joint basis.

    Returns ``(mu, var)``, each ``[layout.size]`` in the layout's order, equal to what
    :class:`~chiral_jax.ChiralBatchNorm` computes from ``z.to_joint()`` (see
    :func:`channel_stats`).
    """
    return stats_to_joint(channel_stats(z, axis_name), z.layout)


@functools.lru_cache(maxsize=256)
def _even_odd_channels(layout: ChiralLayout) -> tuple[np.ndarray, np.ndarray]:
    """``(plus, minus)``: the canonical position each even/odd channel belongs to, a
    pair's left joint or the centre channel itself; shapes ``[n+]``, ``[n-]``."""
    pairs, n_c, dims = len(layout.left) * layout.dims, len(layout.centre), layout.dims
    neg = len(layout.negated)
    centre = 2 * pairs + np.arange(n_c)[:, None] * dims
    plus = np.r_[np.arange(pairs), (centre + np.arange(neg, dims)).reshape(-1)]
    minus = np.r_[np.arange(pairs), (centre + np.arange(neg)).reshape(-1)]
    return plus, minus


@functools.lru_cache(maxsize=256)
def _joint_index(layout: ChiralLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layout channel: the even channel whose mean it takes, its sign (``s`` for a
    right joint, 0 for centre-negative channels), and its variance's position in
    ``[var_plus, var_minus]``: ``(src_plus, src_var, sign)``."""
    plus, minus = _even_odd_channels(layout)
    pairs, n = len(layout.left) * layout.dims, layout.size
    src_plus, src_var, sign = np.zeros(n, np.int32), np.zeros(n, np.int32), np.zeros(n)
    k = np.arange(pairs)
    src_plus[k] = src_plus[k + pairs] = src_var[k] = src_var[k + pairs] = k
    sign[k], sign[k + pairs] = 1.0, _pair_signs(layout)
    cp, cn = plus[pairs:], minus[pairs:]
    src_plus[cp] = src_var[cp] = np.arange(pairs, len(plus))
    sign[cp] = 1.0
    src_var[cn] = len(plus) + np.arange(pairs, len(minus))
    order = np.argsort(_canonical_channels(layout))  # canonical position -> layout order
    return src_plus[order], src_var[order], sign[order].astype(np.float32)


@functools.lru_cache(maxsize=256)
def channel_sources(layout: ChiralLayout) -> tuple[np.ndarray, np.ndarray]:
    """``(plus, minus)``: the layout channel whose per-channel factor (a batch norm's
    scale, say) each even/odd channel takes: a pair's left joint, or the centre channel
    itself. Shapes ``[n+]``, ``[n-]``; ``v[plus]`` is ``v``'s even part for any
    swap-symmetric per-channel ``v``."""
    canonical = _canonical_channels(layout)
    plus, minus = _even_odd_channels(layout)
    return canonical[plus].astype(np.int32), canonical[minus].astype(np.int32)
