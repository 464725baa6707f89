"""The even/odd basis: an equivariant layer as two half-size matmuls.

For a pair channel (left joint ``i``, dim ``d``, sign ``s = -1`` for negated dims)

    u = x_L + s * x_R   (T u = u),        v = x_L - s * x_R   (T v = -v),

and centre channels are already eigenvectors: centre-positive ones in the ``+1``
space, centre-negative ones in the ``-1`` space. With

    plus  = [u (|L| * D), c_p (|C| * |Dp|)]      (n+ channels)
    minus = [v (|L| * D), c_n (|C| * |Dn|)]      (n- channels)

an equivariant ``y = x @ W + b`` becomes ``plus_y = plus @ A + a``,
``minus_y = minus @ B``: ``n+_in * n+_out + n-_in * n-_out`` multiply-adds
instead of ``n_in * n_out`` (half when the spaces are balanced). In the free
blocks' notation (rows out, columns in; ``S = diag(s_in)``)

    u_y  = u (W_ll + S W_lr) + 2 c_p W_lc[cp]      v_y  = v (W_ll - S W_lr) + 2 c_n W_lc[cn]
    y_cp = u W_cp,l + c_p W_cp,cp                  y_cn = v W_cn,l + c_n W_cn,cn

(``W_cp,l`` holds ``cp,ln`` in complete mode, zero in paper mode), and the bias
is ``a = [2 b_l, b_cp]`` (the ``-1`` space has none). ``A`` and ``B`` are sums,
differences and concatenations of the free blocks: ``O(params)``, no gathers.

The basis change is an add/sub per channel: on canonical layouts (joints
``[left, right, centre]``, negated dims first: every ``ChiralLayout.hidden``) one pass
of :func:`chiral_jax.native.split` / :func:`~chiral_jax.native.merge` (a fused CPU
kernel, XLA ops elsewhere); any other order costs one static channel permutation
before it, meant for the network's narrow skeleton inputs and outputs.

The implementation of an equivariant dense layer is just::

    plus, minus = to_eigen(x, layout_in)
    A, B = eigen_kernels(generator, blocks)
    y = from_eigen(plus @ A + eigen_bias(generator, bias), minus @ B, layout_out)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from chiral_jax import native
from chiral_jax._layout import ChiralLayout
from chiral_jax.activations import odd_activation
from chiral_jax.generators import ChiralGenerator

# Time of the two basis changes, in multiply-adds per channel (in + out): the eigen
# path pays off when it saves more. Measured on a 2-core CPU (XLA, fp32, forward +
# backward): break-even between 34 and 67 saved multiply-adds per channel.
_BASIS_COST = 50


def _canonical_channels(layout: ChiralLayout) -> np.ndarray:
    """Flat layout channel at each canonical position (joints [l, r, c], dims [n, p])."""
    joints = np.asarray(layout.left + layout.right + layout.centre, dtype=np.int64)
    dims = np.asarray(layout.negated + layout.positive, dtype=np.int64)
    return (joints[:, None] * layout.dims + dims[None, :]).reshape(-1)


def to_eigen(x: jax.Array, layout: ChiralLayout) -> tuple[jax.Array, jax.Array]:
    """Joint basis to the even/odd basis.

    Shapes: ``x [..., J*D]`` (the layout's own order) ->
    ``plus [..., n+]``, ``minus [..., n-]`` (``layout.n_plus``, ``layout.n_minus``).
    """
    layout.check_features(x, "to_eigen input")
    if not layout.is_canonical:
        x = jnp.take(x, _canonical_channels(layout), axis=-1)
    return native.split(x, **basis_params(layout), scale=1.0)


def from_eigen(plus: jax.Array, minus: jax.Array, layout: ChiralLayout) -> jax.Array:
    """The even/odd basis back to the joint basis (inverse of :func:`to_eigen`).

    Shapes: ``plus [..., n+]``, ``minus [..., n-]`` -> ``x [..., J*D]`` (layout order).
    """
    if plus.shape[-1:] != (layout.n_plus,) or minus.shape[-1:] != (layout.n_minus,):
        raise ValueError(
            f"from_eigen expects plus [..., {layout.n_plus}] and minus [..., {layout.n_minus}] "
            f"for this layout, got {plus.shape} and {minus.shape}"
        )
    x = native.merge(plus, minus, **basis_params(layout), scale=0.5)
    if not layout.is_canonical:
        x = jnp.take(x, np.argsort(_canonical_channels(layout)), axis=-1)
    return x


def _pair_params(layout: ChiralLayout) -> dict[str, int]:
    return dict(left=len(layout.left), joint_dims=layout.dims, negated=len(layout.negated))


def basis_params(layout: ChiralLayout) -> dict[str, int]:
    """The layout as :func:`chiral_jax.native.split` / ``merge`` take it (canonical order)."""
    return dict(_pair_params(layout), centre=len(layout.centre))


def eigen_kernels(
    generator: ChiralGenerator, blocks: dict[str, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """The tied kernel in the even/odd basis: ``(A, B)``.

    Shapes: ``A (*lead, n+_in, n+_out)``, ``B (*lead, n-_in, n-_out)``, such that
    ``to_eigen(x @ W) == (plus @ A, minus @ B)`` for ``W = generator.assemble_kernel(blocks)``
    (per tap for a convolution's ``lead = (K,)``).
    """
    generator._check_blocks(blocks, generator.kernel_shapes(), "kernel")
    lo, li = generator.layout_out, generator.layout_in
    lead = generator.lead
    dtype = jnp.result_type(*blocks.values())

    def get(name: str) -> jax.Array:
        if name in blocks:
            return blocks[name]
        # Only ``cp,ln`` can be absent (paper mode): it is zero.
        return jnp.zeros(
            (*lead, len(lo.centre), len(lo.positive), len(li.left), len(li.negated)), dtype
        )

    def flat(block: jax.Array) -> jax.Array:
        # (*lead, Jo, Do, Ji, Di) -> (*lead, Ji*Di, Jo*Do)
        k = jnp.moveaxis(block, (-2, -1), (-4, -3))
        return k.reshape(*lead, k.shape[-4] * k.shape[-3], k.shape[-2] * k.shape[-1])

    def stack(rows: list[list[jax.Array]]) -> jax.Array:
        # rows[i][j]: block from input group j to output group i, (*lead, in, out).
        cols = [jnp.concatenate([row[j] for row in rows], axis=-1) for j in range(len(rows[0]))]
        return jnp.concatenate(cols, axis=-2)

    two = jnp.asarray(2, dtype)
    kernels = []
    for sign, centre in ((1, "cp"), (-1, "cn")):
        # pair -> pair: W_ll + sign * S W_lr (S = -1 on negated input dims), per output
        # group (ln, lp), concatenated over the input dims [n, p].
        pair_rows = [
            jnp.concatenate(
                [get(f"{r},ln") - sign * get(f"{r},rn"), get(f"{r},lp") + sign * get(f"{r},rp")],
                axis=-1,
            )
            for r in ("ln", "lp")
        ]
        pair_pair = flat(jnp.concatenate(pair_rows, axis=-3))
        centre_to_pair = jnp.concatenate([get(f"{r},{centre}") for r in ("ln", "lp")], axis=-3)
        pair_to_centre = jnp.concatenate([get(f"{centre},ln"), get(f"{centre},lp")], axis=-1)
        kernels.append(
            stack(
                [
                    [pair_pair, flat(two * centre_to_pair)],
                    [flat(pair_to_centre), flat(get(f"{centre},{centre}"))],
                ]
            )
        )
    return kernels[0], kernels[1]


def eigen_bias(generator: ChiralGenerator, blocks: dict[str, jax.Array]) -> jax.Array:
    """The tied bias in the ``+1`` space, shape ``(n+_out,)``: ``[2 b_l, b_cp]``.

    The ``-1`` space has no bias (``b_r = s b_l`` cancels in ``v``; ``b_cn = 0``).
    """
    generator._check_blocks(blocks, generator.bias_shapes(), "bias")
    left = blocks["l"]
    return jnp.concatenate(
        [jnp.asarray(2, left.dtype) * left.reshape(-1), blocks["cp"].reshape(-1)]
    )


def multiply_adds(layout_in: ChiralLayout, layout_out: ChiralLayout) -> tuple[int, int]:
    """Multiply-adds per sample and tap: ``(kernel path, eigen path)``."""
    dense = layout_in.size * layout_out.size
    split = layout_in.n_plus * layout_out.n_plus + layout_in.n_minus * layout_out.n_minus
    return dense, split


def prefers_eigen(layout_in: ChiralLayout, layout_out: ChiralLayout, taps: int = 1) -> bool:
    """Whether the even/odd path is expected to be faster (the ``impl="auto"`` rule).

    The eigen path saves ``taps * (n_in * n_out - n+_in * n+_out - n-_in * n-_out)``
    multiply-adds per sample and costs about ``_BASIS_COST`` multiply-adds' worth of
    time per channel of the basis changes in and out.
    """
    dense, split = multiply_adds(layout_in, layout_out)
    return taps * (dense - split) > _BASIS_COST * (layout_in.size + layout_out.size)


@dataclasses.dataclass(frozen=True)
class EigenActivations:
    """Activations held in the even/odd basis: a pytree of ``plus`` and ``minus``.

    Shapes: ``plus [..., layout.n_plus]``, ``minus [..., layout.n_minus]`` (``layout``
    is static). A network that keeps its activations in this form changes basis only
    where it must: an odd activation mixes each pair's ``u`` and ``v`` in one
    elementwise map (:meth:`map`), batch norm is a per-channel affine map in this
    basis, with batch statistics computed in it too (:meth:`norm`), residual sums and
    time crops act on both arrays, and the layers'
    :meth:`~chiral_jax._tied.TiedKernel.eigen_call` runs their two half-size ops
    directly. The layers' default contract (flat joint-basis arrays) is unchanged; this
    is an opt-in form for speed.

    >>> from flax import nnx
    >>> from chiral_jax import ChiralLayout, ChiralLinear
    >>> layout = ChiralLayout.hidden(pairs=2, centre=1, dims=3, negated=1)
    >>> layer = ChiralLinear(layout, layout, rngs=nnx.Rngs(0))
    >>> x = jnp.ones((4, layout.size))
    >>> z = layer.eigen_call(EigenActivations.from_joint(x, layout)).map("tanh")
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
                f"EigenActivations for this layout need plus [..., {lo.n_plus}] and "
                f"minus [..., {lo.n_minus}], got {shapes[0]} and {shapes[1]}"
            )

    @classmethod
    def from_joint(cls, x: jax.Array, layout: ChiralLayout) -> EigenActivations:
        """From joint-basis ``x [..., J*D]`` (the layout's own order)."""
        return cls(*to_eigen(x, layout), layout)

    def to_joint(self) -> jax.Array:
        """Back to the joint basis: ``[..., J*D]`` in the layout's own order."""
        return from_eigen(self.plus, self.minus, self.layout)

    def map(
        self,
        fn: str | Callable[[jax.Array], jax.Array],
        then: Callable[[jax.Array], jax.Array] | None = None,
        impl: str = "auto",
    ) -> EigenActivations:
        """An odd elementwise function applied in the joint basis (e.g. ``"tanh"``).

        For a pair with ``x_L = p``, ``x_R = s q`` (``p = (u + v) / 2``,
        ``q = (u - v) / 2``), oddness gives ``u' = f(p) + f(q)``, ``v' = f(p) - f(q)``:
        the signs drop out. Centre channels are mapped as they are. Raises
        ``ValueError`` for a function that is not odd (it would break equivariance).

        ``then`` runs after ``fn`` on the joint-basis values, once per array
        (``f(p)``, ``f(q)``, centre-positive, centre-negative): a map that commutes with
        negation channel by channel, such as dropout (an ``nnx.Dropout`` module draws an
        independent mask per call, as it would over the joint-basis channels).

        ``impl``: ``"auto"`` binds the fused map of :mod:`chiral_jax.native` for tanh,
        softsign and hardtanh without ``then`` (its C++ kernel on CPU for float32, XLA ops
        elsewhere) and XLA ops for anything else; ``"xla"`` always uses XLA ops;
        ``"native"`` insists on the CPU kernel and raises where it cannot run. All give
        the same values and derivatives (to float32 rounding).
        """
        with jax.ensure_compile_time_eval():
            fn = odd_activation(fn)
        if impl not in ("auto", "xla", "native"):
            raise ValueError(f"impl must be 'auto', 'xla' or 'native', got {impl!r}")
        pairs = len(self.layout.left) * self.layout.dims
        kind = native.kind_of(fn)
        if impl == "native":
            _check_native(kind, then, self.plus, self.minus)
        if impl != "xla" and kind is not None and then is None:
            plus, minus = native.odd_pair_map(self.plus, self.minus, pairs, kind)
        else:
            post = fn if then is None else (lambda a: then(fn(a)))
            plus, minus = native.mix_pairs(self.plus, self.minus, pairs, post)
        return EigenActivations(plus, minus, self.layout)

    def map_arrays(self, fn: Callable[[jax.Array], jax.Array]) -> EigenActivations:
        """``fn`` on both arrays: for maps that act on leading axes only (a time crop)."""
        return EigenActivations(fn(self.plus), fn(self.minus), self.layout)

    def joint_map(
        self, fn: Callable[[jax.Array], jax.Array], layout_out: ChiralLayout | None = None
    ) -> EigenActivations:
        """Any equivariant ``fn`` on joint-basis arrays, through two basis changes."""
        return EigenActivations.from_joint(fn(self.to_joint()), layout_out or self.layout)

    def norm(self, bn, *, use_running_average: bool | None = None) -> EigenActivations:
        """A :class:`~chiral_jax.ChiralBatchNorm` in this basis, with no basis change.

        Batch norm is ``x * m + c`` per channel with ``m`` swap symmetric and ``c``
        mirror symmetric, which this basis keeps diagonal: one fused multiply-add per
        array. In training the united batch statistics come from this basis too
        (:func:`mirror_stats`), and ``bn``'s running averages are updated exactly as
        ``bn(x)`` would update them.
        """
        if bn.layout != self.layout:
            raise ValueError(f"batch norm layout {bn.layout} != activations' {self.layout}")
        use_ra = bn.use_running_average if use_running_average is None else use_running_average
        if use_ra:
            mean, var = bn.mean[...], bn.var[...]
        else:
            mean, var = mirror_stats(self, bn.axis_name)
            bn.mean[...] = bn.momentum * bn.mean[...] + (1 - bn.momentum) * mean
            bn.var[...] = bn.momentum * bn.var[...] + (1 - bn.momentum) * var
        mul = jax.lax.rsqrt(var + bn.epsilon)
        scale, offset = bn.scale(), bn.offset()
        if scale is not None:
            mul = mul * scale
        shift = -mean * mul
        if offset is not None:
            shift = shift + offset
        mul_plus, mul_minus = _left_copies(mul, self.layout)
        shift_plus, shift_minus = to_eigen(shift, self.layout)
        # The dtype ``bn(x)`` computes in: its own, else that of x, statistics and affine.
        affine_terms = [t for t in (mean, scale, offset) if t is not None]
        dtype = bn.dtype or jnp.result_type(self.plus, *affine_terms)

        def affine(a, m, c):
            return a.astype(dtype) * _row(m, a.ndim, dtype) + _row(c, a.ndim, dtype)

        return EigenActivations(
            affine(self.plus, mul_plus, shift_plus),
            affine(self.minus, mul_minus, shift_minus),
            self.layout,
        )

    def __add__(self, other: EigenActivations) -> EigenActivations:
        if not isinstance(other, EigenActivations) or other.layout != self.layout:
            return NotImplemented
        return EigenActivations(self.plus + other.plus, self.minus + other.minus, self.layout)


jax.tree_util.register_dataclass(
    EigenActivations, data_fields=["plus", "minus"], meta_fields=["layout"]
)


def mirror_stats(z: EigenActivations, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
    """The batch statistics of ``z`` united with its mirror image, in the joint basis.

    Returns ``(mu, var)``, each ``[layout.size]`` in the layout's order, equal to what
    :class:`~chiral_jax.ChiralBatchNorm` computes from ``z.to_joint()``: the mean and
    variance over every axis but the last of the batch and its mirror (in float32).
    In this basis ``mu_L = s mu_R = E[u] / 2``, ``mu_cp = E[c_p]``, ``mu_cn = 0``, and
    ``E[x^2]`` is ``(E[u^2] + E[v^2]) / 4`` for both joints of a pair, ``E[c^2]`` for a
    centre channel. ``axis_name``: a mapped axis to average the statistics over.
    """
    layout = z.layout
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
    pairs = len(layout.left) * layout.dims
    mu = from_eigen(m_plus, jnp.zeros((layout.n_minus,), jnp.float32), layout)
    # Both joints of a pair get w = (E[u^2] + E[v^2]) / 4: u = (1 + s) w, v = (1 - s) w.
    w = (q_plus[:pairs] + q_minus[:pairs]) / 4
    s = native.pair_signs(**_pair_params(layout), like=w)
    q = from_eigen(
        jnp.concatenate([(1 + s) * w, q_plus[pairs:]]),
        jnp.concatenate([(1 - s) * w, q_minus[pairs:]]),
        layout,
    )
    return mu, jnp.maximum(q - jnp.square(mu), 0.0)


def _check_native(kind: str | None, then, plus: jax.Array, minus: jax.Array) -> None:
    """Why ``map(..., impl="native")`` cannot run here, as a clear error."""
    if kind is None:
        raise ValueError(f"impl='native' supports the activations {sorted(native.KINDS)}")
    if then is not None:
        raise ValueError("impl='native' runs no `then` map; use impl='xla' or 'auto'")
    if plus.dtype != jnp.float32 or minus.dtype != jnp.float32:
        raise ValueError(f"impl='native' needs float32 arrays, got {plus.dtype}, {minus.dtype}")
    if jax.default_backend() != "cpu":
        raise ValueError(f"impl='native' is a CPU kernel; the backend is {jax.default_backend()}")
    if not native.available():
        raise RuntimeError(
            f"impl='native': the fused kernels are unavailable ({native.unavailable_reason()})"
        )


def _row(v: jax.Array, ndim: int, dtype) -> jax.Array:
    return v.astype(dtype).reshape((1,) * (ndim - 1) + (-1,))


def _left_copies(v: jax.Array, layout: ChiralLayout) -> tuple[jax.Array, jax.Array]:
    """A swap-symmetric per-channel factor (``v_R = v_L``) in the even/odd basis.

    Both ``u`` and ``v`` of a pair scale by ``v_L``: ``to_eigen`` of ``v`` with its right
    joints zeroed gives exactly ``([v_L, v_cp], [v_L, v_cn])``.
    """
    right = np.zeros((layout.num_joints, layout.dims))
    right[list(layout.right)] = 1.0
    return to_eigen(v * jnp.asarray(1.0 - right.reshape(-1), v.dtype), layout)
