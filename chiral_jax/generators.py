"""Parameter generators: free blocks in, tied equivariant kernels out (pure, no Flax).

A linear map ``y = x @ W`` (``W`` shaped ``[n_in, n_out]``) is chirality
equivariant, ``T_out(x @ W) = (T_in x) @ W``, iff for every entry

    W[sigma_in(i), sigma_out(j)] = s_in(i) * s_out(j) * W[i, j].

Entries therefore come in mirror pairs (one free value) or are fixed points
(centre row and centre column: free when the signs agree, zero otherwise). We
store one representative per pair as named *blocks*, in the paper's notation:
channel groups ``ln, lp, rn, rp, cn, cp`` (left/right/centre joints x
negated/positive dims). The free blocks are

* every block of a left output row: ``ln,ln  ln,lp  ln,rn  ln,rp  ln,cn  ln,cp`` and
  the same six for ``lp`` rows (right rows are their signed mirror);
* centre rows: ``cn,ln  cn,lp  cn,cn`` and ``cp,lp  cp,cp`` (mirrored onto the
  right columns; ``cn,cp`` and ``cp,cn`` are zero);
* ``cp,ln``, only in ``"complete"`` mode. The paper's matrix sets it to zero, but
  the constraint allows ``W[cp, rn] = -W[cp, ln]``: centre-positive (and so every
  mirror-invariant) output may depend on ``x_ln - x_rn``, e.g. the horizontal
  offset between the left and right wrist. With it, the blocks span *every*
  equivariant map: ``n+_out * n+_in + n-_out * n-_in`` parameters.

Each block is shaped ``(*lead, joints_out, dims_out, joints_in, dims_in)`` of its
groups, with optional leading axes (the taps of a convolution). Biases tie as
``b[sigma(j)] = s(j) * b[j]``: free blocks ``l`` (left joints, all dims) and
``cp``; ``b_cn = 0``.

:meth:`ChiralGenerator.assemble_kernel` defines the tying on named blocks
(concatenations and sign flips). Layers store the blocks packed into one vector
(:meth:`~ChiralGenerator.pack`) and assemble with one gather from a precomputed
signed index (:meth:`~ChiralGenerator.assemble_packed`), derived from that
definition and cached per generator; layouts in any joint or dim order cost nothing
extra.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chiral_jax._layout import ChiralLayout

Mode = Literal["complete", "paper"]
MODES = ("complete", "paper")

_ROW_GROUPS = ("ln", "lp", "cn", "cp")
_COL_GROUPS = ("ln", "lp", "rn", "rp", "cn", "cp")


class ChiralParams(NamedTuple):
    """The free parameters of a tied layer: kernel blocks and (optional) bias blocks."""

    kernel: dict[str, jax.Array]
    bias: dict[str, jax.Array] | None


def _joint_group(layout: ChiralLayout, g: str) -> int:
    return {"l": len(layout.left), "r": len(layout.right), "c": len(layout.centre)}[g]


def _dim_group(layout: ChiralLayout, g: str) -> int:
    return {"n": len(layout.negated), "p": len(layout.positive)}[g]


def _canonical_order(layout: ChiralLayout) -> tuple[np.ndarray, np.ndarray]:
    """Layout joint/dim index at each canonical position ([l, r, c] joints, [n, p] dims)."""
    joints = np.asarray(layout.left + layout.right + layout.centre, dtype=np.int32)
    dims = np.asarray(layout.negated + layout.positive, dtype=np.int32)
    return joints, dims


def _xp(*arrays):
    """NumPy for NumPy arrays (the assembly index is computed without JAX), else jnp."""
    return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def _to_layout_order(x, layout: ChiralLayout, joint_axis: int, dim_axis: int):
    """Reorder canonical joint/dim axes into the layout's own order (no-op when canonical)."""
    if layout.is_canonical:
        return x
    xp = _xp(x)
    joints, dims = _canonical_order(layout)
    x = xp.take(x, np.argsort(joints), axis=joint_axis)
    return xp.take(x, np.argsort(dims), axis=dim_axis)


def _to_canonical_order(x, layout: ChiralLayout, joint_axis: int, dim_axis: int):
    if layout.is_canonical:
        return x
    xp = _xp(x)
    joints, dims = _canonical_order(layout)
    x = xp.take(x, joints, axis=joint_axis)
    return xp.take(x, dims, axis=dim_axis)


def _canonical_signs(layout: ChiralLayout, dtype, xp=jnp) -> jax.Array:
    n = len(layout.negated)
    return xp.concatenate([-xp.ones((n,), dtype), xp.ones((layout.dims - n,), dtype)])


@dataclasses.dataclass(frozen=True)
class ChiralGenerator:
    """The tied parameterisation of one equivariant linear map ``layout_in -> layout_out``.

    Args:
      layout_in: layout of the input features (``n_in = layout_in.size``).
      layout_out: layout of the output features (``n_out = layout_out.size``).
      mode: ``"complete"`` (default: every equivariant map, including the
        ``cp,ln`` block the paper omits) or ``"paper"`` (the paper's matrix).
      lead: leading kernel axes, e.g. ``(kernel_size,)`` for a temporal conv.

    Assembled kernels are shaped ``(*lead, n_in, n_out)`` like ``nnx.Linear`` /
    ``nnx.Conv`` kernels; channels are flattened joint-major in each layout's order.

    >>> from chiral_jax import ChiralLayout, ChiralGenerator
    >>> from chiral_jax.skeletons import H36M_17
    >>> gen = ChiralGenerator(H36M_17.layout(2), H36M_17.layout(3), mode="paper")
    >>> gen.count(use_bias=False)
    807
    """

    layout_in: ChiralLayout
    layout_out: ChiralLayout
    mode: Mode = "complete"
    lead: tuple[int, ...] = ()

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.layout_in, ChiralLayout) or not isinstance(
            self.layout_out, ChiralLayout
        ):
            raise TypeError("layout_in and layout_out must be ChiralLayout instances")
        object.__setattr__(self, "lead", tuple(int(a) for a in self.lead))

    # -- shapes -----------------------------------------------------------------------

    @property
    def block_names(self) -> tuple[str, ...]:
        """Names of the free kernel blocks, ``"<out group>,<in group>"``, in storage order."""
        names = []
        for r in _ROW_GROUPS:
            cols = _COL_GROUPS if r[0] == "l" else ("ln", "lp", r)
            for c in cols:
                if (r, c) == ("cp", "ln") and self.mode == "paper":
                    continue
                names.append(f"{r},{c}")
        return tuple(names)

    def kernel_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every free kernel block, keyed ``"<out group>,<in group>"``."""
        lo, li = self.layout_out, self.layout_in
        shapes = {}
        for name in self.block_names:
            r, c = name.split(",")
            shapes[name] = (
                *self.lead,
                _joint_group(lo, r[0]),
                _dim_group(lo, r[1]),
                _joint_group(li, c[0]),
                _dim_group(li, c[1]),
            )
        return shapes

    def bias_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of the free bias blocks: ``l`` (left joints, all dims) and ``cp``."""
        lo = self.layout_out
        return {"l": (len(lo.left), lo.dims), "cp": (len(lo.centre), len(lo.positive))}

    def count(self, use_bias: bool = True) -> int:
        """Number of free parameters (complete mode without bias and lead:
        ``n+_out * n+_in + n-_out * n-_in``)."""
        total = sum(math.prod(s) for s in self.kernel_shapes().values())
        if use_bias:
            total += sum(math.prod(s) for s in self.bias_shapes().values())
        return total

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """Shape of the assembled kernel, ``(*lead, n_in, n_out)``."""
        return (*self.lead, self.layout_in.size, self.layout_out.size)

    # -- assembly ---------------------------------------------------------------------

    def assemble_kernel(self, blocks: dict[str, jax.Array]) -> jax.Array:
        """Tie the free blocks into the full kernel, shape ``(*lead, n_in, n_out)``."""
        self._check_blocks(blocks, self.kernel_shapes(), "kernel")
        lo, li = self.layout_out, self.layout_in
        xp = _xp(*blocks.values())
        dtype = xp.result_type(*blocks.values())
        lead = self.lead

        def zeros(r: str, c: str):
            return xp.zeros(
                (*lead, _joint_group(lo, r[0]), _dim_group(lo, r[1]),
                 _joint_group(li, c[0]), _dim_group(li, c[1])),
                dtype,
            )

        def get(r: str, c: str):
            name = f"{r},{c}"
            return blocks[name] if name in blocks else zeros(r, c)

        def row(r: str, cols: tuple[str, ...]):
            # One output group against canonical input columns [l, r, c] x [n, p].
            per_joint = [
                xp.concatenate([get(r, j + "n"), get(r, j + "p")], axis=-1) for j in cols
            ]
            return xp.concatenate(per_joint, axis=-2) if len(per_joint) > 1 else per_joint[0]

        # Sign of each (out dim, in dim) entry pair, broadcast over (*lead, Jo, Do, Ji, Di).
        signs = (
            _canonical_signs(lo, dtype, xp)[:, None, None]
            * _canonical_signs(li, dtype, xp)[None, None, :]
        )
        signs = signs.reshape((1,) * (len(lead) + 1) + signs.shape)
        n_left_in = len(li.left)

        def mirror_rows(k):
            # Right rows from left rows (centre rows' right columns from their left ones):
            # W[sigma(i), sigma(j)] = s_out(i) s_in(j) W[i, j].
            swapped = xp.concatenate(
                [k[..., n_left_in : 2 * n_left_in, :], k[..., :n_left_in, :],
                 k[..., 2 * n_left_in :, :]],
                axis=-2,
            )
            return signs * swapped

        left_rows = xp.concatenate([row("ln", "lrc"), row("lp", "lrc")], axis=-3)
        centre_left = xp.concatenate([row("cn", "l"), row("cp", "l")], axis=-3)
        centre_centre = xp.concatenate(
            [
                xp.concatenate([get("cn", "cn"), zeros("cn", "cp")], axis=-1),
                xp.concatenate([zeros("cp", "cn"), get("cp", "cp")], axis=-1),
            ],
            axis=-3,
        )
        centre_right = signs * centre_left
        centre_rows = xp.concatenate([centre_left, centre_right, centre_centre], axis=-2)
        kernel = xp.concatenate([left_rows, mirror_rows(left_rows), centre_rows], axis=-4)
        # (*lead, Jo, Do, Ji, Di) -> layout order -> (*lead, Ji*Di, Jo*Do).
        nl = len(lead)
        kernel = _to_layout_order(kernel, lo, nl, nl + 1)
        kernel = _to_layout_order(kernel, li, nl + 2, nl + 3)
        kernel = xp.moveaxis(kernel, (nl + 2, nl + 3), (nl, nl + 1))
        return kernel.reshape(self.kernel_shape)

    def assemble_bias(self, blocks: dict[str, jax.Array]) -> jax.Array:
        """Tie the free bias blocks into the full bias, shape ``(n_out,)``."""
        self._check_blocks(blocks, self.bias_shapes(), "bias")
        lo = self.layout_out
        left = blocks["l"]
        xp = _xp(left, blocks["cp"])
        s_out = _canonical_signs(lo, left.dtype, xp)[None, :]
        centre = xp.concatenate(
            [xp.zeros((len(lo.centre), len(lo.negated)), left.dtype), blocks["cp"]], axis=-1
        )
        bias = xp.concatenate([left, s_out * left, centre], axis=0)
        return _to_layout_order(bias, lo, 0, 1).reshape(lo.size)

    def assemble(self, params: ChiralParams) -> tuple[jax.Array, jax.Array | None]:
        """``(kernel, bias)`` from the free parameters; ``bias`` is None without bias blocks."""
        kernel = self.assemble_kernel(params.kernel)
        bias = None if params.bias is None else self.assemble_bias(params.bias)
        return kernel, bias

    # -- packed storage ---------------------------------------------------------------
    #
    # A layer stores its free blocks packed into one vector (``block_names`` order, each
    # block flattened): one parameter per layer keeps the optimiser and the gradient
    # program small, and the tied kernel is one gather from it with a precomputed index.

    def pack(self, blocks: dict[str, jax.Array], what: str = "kernel") -> jax.Array:
        """The free blocks (``what``: ``"kernel"`` or ``"bias"``) as one flat vector."""
        shapes = self._shapes(what)
        self._check_blocks(blocks, shapes, what)
        xp = _xp(*blocks.values())
        return xp.concatenate([xp.ravel(blocks[name]) for name in shapes])

    def unpack(self, packed: jax.Array, what: str = "kernel") -> dict[str, jax.Array]:
        """The named free blocks (views) of a packed vector: the inverse of :meth:`pack`."""
        shapes = self._shapes(what)
        sizes = [math.prod(s) for s in shapes.values()]
        if packed.shape != (sum(sizes),):
            raise ValueError(
                f"packed {what} has shape {packed.shape}, expected ({sum(sizes)},) for "
                f"{self.layout_in.size} -> {self.layout_out.size} channels"
            )
        ends = np.cumsum(sizes)
        bounds = zip(ends - np.asarray(sizes, int), ends, strict=True)
        return {
            name: packed[start:stop].reshape(shape)
            for (name, shape), (start, stop) in zip(shapes.items(), bounds, strict=True)
        }

    def assemble_packed(
        self, packed: jax.Array, what: str = "kernel", at: np.ndarray | None = None
    ) -> jax.Array:
        """:meth:`assemble_kernel` (or :meth:`assemble_bias`) of a packed vector.

        Every entry of a tied kernel or bias is a free value, its negation or zero, so
        it is one gather, ``[v, -v, 0][index]``, with an index computed once per
        generator (:func:`_signed_index`): one op to compile and one (its scatter) to
        differentiate, however many blocks the tying has (slices and concatenations
        would be one op each, forward and backward). Same values as the block assembly,
        bit for bit. ``at``: only these entries of the flattened result (an int array).
        """
        n = sum(math.prod(s) for s in self._shapes(what).values())
        if packed.shape != (n,):
            raise ValueError(f"packed {what} has shape {packed.shape}, expected ({n},)")
        index = _signed_index(self, what)
        if at is not None:
            index = index.reshape(-1)[at]
        table = jnp.concatenate([packed, -packed, jnp.zeros((1,), packed.dtype)])
        return gather(table, index)

    def _shapes(self, what: str) -> dict[str, tuple[int, ...]]:
        if what == "kernel":
            return self.kernel_shapes()
        if what == "bias":
            return self.bias_shapes()
        raise ValueError(f"what must be 'kernel' or 'bias', got {what!r}")

    # -- reading blocks back ----------------------------------------------------------

    def select_kernel(self, kernel: jax.Array) -> dict[str, jax.Array]:
        """Read the free blocks' entries out of a full kernel (no averaging).

        Exact inverse of :meth:`assemble_kernel` on tied kernels; on an arbitrary
        kernel it keeps one representative per mirror pair. Use :meth:`project`
        for the orthogonal projection.
        """
        k = self._canonical_kernel(kernel)
        lo, li = self.layout_out, self.layout_in
        nl = len(self.lead)
        out = {}
        for name in self.block_names:
            r, c = name.split(",")
            idx = (
                _group_slice(lo, r[0], "joint"),
                _group_slice(lo, r[1], "dim"),
                _group_slice(li, c[0], "joint"),
                _group_slice(li, c[1], "dim"),
            )
            out[name] = k[(slice(None),) * nl + idx]
        return out

    def select_bias(self, bias: jax.Array) -> dict[str, jax.Array]:
        """Read the free bias blocks (``l``, ``cp``) out of a full bias ``[n_out]``."""
        lo = self.layout_out
        bias = bias if isinstance(bias, np.ndarray) else jnp.asarray(bias)
        b = _to_canonical_order(bias.reshape(lo.num_joints, lo.dims), lo, 0, 1)
        return {
            "l": b[_group_slice(lo, "l", "joint")],
            "cp": b[_group_slice(lo, "c", "joint"), _group_slice(lo, "p", "dim")],
        }

    def symmetrize_kernel(self, kernel: jax.Array) -> jax.Array:
        """The group average ``(W + P_in W P_out) / 2``: orthogonal projection of a
        full kernel onto the complete equivariant space."""
        kernel = jnp.asarray(kernel)
        li, lo = self.layout_in, self.layout_out
        if kernel.shape != self.kernel_shape:
            raise ValueError(f"kernel has shape {kernel.shape}, expected {self.kernel_shape}")
        mirrored = jnp.take(kernel, li.permutation, axis=-2)
        mirrored = jnp.take(mirrored, lo.permutation, axis=-1)
        signs = np.outer(li.signs, lo.signs).reshape((1,) * len(self.lead) + kernel.shape[-2:])
        mirrored = mirrored * jnp.asarray(signs, kernel.dtype)
        return (kernel + mirrored) / 2

    def project(self, kernel: jax.Array, bias: jax.Array | None = None) -> ChiralParams:
        """Orthogonal projection of a plain (dense) kernel and bias onto the tied space.

        This "chiralizes" a trained plain layer: ``assemble(project(W))`` is the
        equivariant kernel nearest to ``W`` in Frobenius norm (in paper mode, the
        nearest one with ``cp,ln = 0``), and ``project(assemble(p)) == p``.
        """
        blocks = self.select_kernel(self.symmetrize_kernel(kernel))
        bias_blocks = None
        if bias is not None:
            lo = self.layout_out
            bias = jnp.asarray(bias)
            if bias.shape != (lo.size,):
                raise ValueError(f"bias has shape {bias.shape}, expected ({lo.size},)")
            mirrored = jnp.take(bias, lo.permutation) * jnp.asarray(lo.signs, bias.dtype)
            bias_blocks = self.select_bias((bias + mirrored) / 2)
        return ChiralParams(blocks, bias_blocks)

    # -- initialisation ---------------------------------------------------------------

    def row_fan_in_scale(self) -> dict[str, float]:
        """``sqrt(n_in / nonzero fan-in)`` per output group.

        Centre rows of the tied kernel have structural zeros (``cn,cp``; ``cp,cn``;
        ``cp,ln`` in paper mode), so their true fan-in is smaller than the kernel's.
        """
        li = self.layout_in
        pairs = 2 * len(li.left) * li.dims
        n_c = len(li.centre)
        nonzero = {
            "ln": li.size,
            "lp": li.size,
            "cn": pairs + n_c * len(li.negated),
            "cp": pairs + n_c * len(li.positive)
            if self.mode == "complete"
            else 2 * len(li.left) * len(li.positive) + n_c * len(li.positive),
        }
        return {g: math.sqrt(li.size / v) if v else 1.0 for g, v in nonzero.items()}

    def init(
        self,
        key: jax.Array,
        kernel_init,
        bias_init=None,
        dtype=jnp.float32,
    ) -> ChiralParams:
        """Draw free blocks as a plain layer of the same shape would draw its kernel.

        ``kernel_init(key, (*lead, n_in, n_out), dtype)`` (any Flax initialiser)
        draws a full kernel whose free entries are kept; rows with structural zeros
        are rescaled by :meth:`row_fan_in_scale`, so variance-scaling initialisers
        give unit-variance outputs for unit-variance inputs, as in the plain layer.

        The selection runs in NumPy on the drawn kernel (no compilation: building a
        model is quick); under a trace (a model built inside ``jit`` or ``eval_shape``)
        it runs as JAX ops.
        """
        k_kernel, k_bias = jax.random.split(key)
        kernel = _concrete(kernel_init(k_kernel, self.kernel_shape, dtype))
        scale = self.row_fan_in_scale()
        blocks = {
            name: (b * scale[name.split(",")[0]]).astype(dtype)
            for name, b in self.select_kernel(kernel).items()
        }
        bias = None
        if bias_init is not None:
            bias = self.select_bias(_concrete(bias_init(k_bias, (self.layout_out.size,), dtype)))
        return ChiralParams(blocks, bias)

    # -- helpers ----------------------------------------------------------------------

    def _canonical_kernel(self, kernel: jax.Array) -> jax.Array:
        kernel = kernel if isinstance(kernel, np.ndarray) else jnp.asarray(kernel)
        xp = _xp(kernel)
        if kernel.shape != self.kernel_shape:
            raise ValueError(f"kernel has shape {kernel.shape}, expected {self.kernel_shape}")
        li, lo, nl = self.layout_in, self.layout_out, len(self.lead)
        k = kernel.reshape(*self.lead, li.num_joints, li.dims, lo.num_joints, lo.dims)
        k = xp.moveaxis(k, (nl, nl + 1), (nl + 2, nl + 3))
        k = _to_canonical_order(k, lo, nl, nl + 1)
        return _to_canonical_order(k, li, nl + 2, nl + 3)

    @staticmethod
    def _check_blocks(blocks, shapes, what: str) -> None:
        if set(blocks) != set(shapes):
            missing = sorted(set(shapes) - set(blocks))
            extra = sorted(set(blocks) - set(shapes))
            raise ValueError(f"{what} blocks mismatch: missing {missing}, unexpected {extra}")
        for name, shape in shapes.items():
            if tuple(blocks[name].shape) != shape:
                raise ValueError(
                    f"{what} block {name!r} has shape {tuple(blocks[name].shape)}, "
                    f"expected {shape}"
                )


_GATHER_ONE = jax.lax.GatherDimensionNumbers(
    offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,)
)


def gather(table: jax.Array, index: np.ndarray) -> jax.Array:
    """``table[index]`` for a 1-D ``table`` and a constant int32 ``index`` of any shape.

    ``lax.gather``, not ``jnp.take``: every index here is in bounds by construction, so
    no clamping or negative-index ops. Tied kernels, biases and per-channel statistics
    are built this way: one op, however scattered the entries, where slices and
    concatenations would be one op each, forward and backward.
    """
    return jax.lax.gather(
        table,
        np.asarray(index, np.int32)[..., None],
        _GATHER_ONE,
        slice_sizes=(1,),
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


@functools.lru_cache(maxsize=512)
def _signed_index(gen: ChiralGenerator, what: str = "kernel") -> np.ndarray:
    """Where each entry of the assembled kernel (``gen.kernel_shape``) or bias
    (``[n_out]``) comes from.

    With ``n`` packed free values, entry ``i`` is ``table[index[i]]`` for
    ``table = [v (n), -v (n), 0]``. Found by assembling the ids ``1..n`` (int32, in NumPy:
    exact and quick) through the block assembly, which stays the one definition of the
    tying.
    """
    n = sum(math.prod(s) for s in gen._shapes(what).values())
    ids = gen.unpack(np.arange(1, n + 1, dtype=np.int32), what)
    full = gen.assemble_kernel(ids) if what == "kernel" else gen.assemble_bias(ids)
    index = np.where(full > 0, full - 1, np.where(full < 0, n - full - 1, 2 * n))
    return index.astype(np.int32)


def _concrete(x: jax.Array):
    """``x`` as a NumPy array when it holds values (not under a trace)."""
    return x if isinstance(x, jax.core.Tracer) else np.asarray(x)


def _group_slice(layout: ChiralLayout, g: str, kind: str) -> slice:
    if kind == "joint":
        n_l = len(layout.left)
        return {"l": slice(0, n_l), "r": slice(n_l, 2 * n_l), "c": slice(2 * n_l, None)}[g]
    n_n = len(layout.negated)
    return {"n": slice(0, n_n), "p": slice(n_n, None)}[g]
