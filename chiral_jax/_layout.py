"""Chiral layouts: which channels swap under mirroring and which change sign.

A feature vector of a pose network is ``J`` joints times ``D`` dims, flattened
joint-major (flat index ``j * D + d``). A :class:`ChiralLayout` names the joint
pairs (``left[i]`` is the mirror partner of ``right[i]``), the ``centre`` joints
that map to themselves, and the ``negated`` dims whose sign flips under the
mirror. The chirality transform is

    (T x)[j, d] = s(d) * x[sigma(j), d],   s(d) = -1 if d in negated else +1,

with ``sigma`` swapping each pair. ``T`` is a signed permutation and an
involution: ``T(T(x)) == x``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction

import jax.numpy as jnp
import numpy as np


def _as_index_tuple(values, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except TypeError as err:
        raise TypeError(f"{name} must be a sequence of integers, got {values!r}") from err
    for v, raw in zip(out, values, strict=True):
        if v != raw:
            raise TypeError(f"{name} must hold integers, got {raw!r}")
    return out


@dataclasses.dataclass(frozen=True)
class ChiralLayout:
    """How the chirality transform acts on ``J`` joints x ``D`` dims.

    Args:
      left: joint indices of the left side; ``left[i]`` pairs with ``right[i]``.
      right: joint indices of the right side, same length as ``left``.
      centre: joint indices mapped to themselves.
      dims: number of dims per joint ``D``.
      negated: the dims negated by the mirror (e.g. ``(0,)`` for x).

    Every joint in ``range(J)`` must appear in exactly one group, in any order
    (real skeletons interleave left, right and centre joints).

    >>> from chiral_jax import ChiralLayout
    >>> layout = ChiralLayout(left=(1,), right=(2,), centre=(0,), dims=2, negated=(0,))
    >>> layout.transform(jnp.arange(6.0).reshape(3, 2)).tolist()
    [[-0.0, 1.0], [-4.0, 5.0], [-2.0, 3.0]]
    """

    left: tuple[int, ...]
    right: tuple[int, ...]
    centre: tuple[int, ...]
    dims: int
    negated: tuple[int, ...] = ()

    def __post_init__(self):
        left = _as_index_tuple(self.left, "left")
        right = _as_index_tuple(self.right, "right")
        centre = _as_index_tuple(self.centre, "centre")
        negated = tuple(sorted(_as_index_tuple(self.negated, "negated")))
        object.__setattr__(self, "left", left)
        object.__setattr__(self, "right", right)
        object.__setattr__(self, "centre", centre)
        object.__setattr__(self, "negated", negated)
        if not isinstance(self.dims, int | np.integer) or self.dims < 1:
            raise ValueError(f"dims must be a positive integer, got {self.dims!r}")
        object.__setattr__(self, "dims", int(self.dims))
        if len(left) != len(right):
            raise ValueError(
                f"left and right must pair up one to one: got {len(left)} left joints "
                f"{left} and {len(right)} right joints {right}"
            )
        joints = left + right + centre
        n = len(joints)
        if n == 0:
            raise ValueError("a layout needs at least one joint")
        seen: dict[int, str] = {}
        for group, idx in (("left", left), ("right", right), ("centre", centre)):
            for j in idx:
                if not 0 <= j < n:
                    raise ValueError(
                        f"joint index {j} in {group} is out of range: the layout has "
                        f"{n} joints, so indices must lie in [0, {n})"
                    )
                if j in seen:
                    raise ValueError(f"joint {j} appears in both {seen[j]} and {group}")
                seen[j] = group
        missing = sorted(set(range(n)) - set(seen))
        if missing:
            raise ValueError(f"joints {missing} are in no group (left, right or centre)")
        if len(set(negated)) != len(negated):
            raise ValueError(f"negated dims repeat: {negated}")
        for d in negated:
            if not 0 <= d < self.dims:
                raise ValueError(
                    f"negated dim {d} is out of range for dims={self.dims} "
                    f"(must lie in [0, {self.dims}))"
                )

    # -- constructors -----------------------------------------------------------------

    @classmethod
    def hidden(
        cls, pairs: int, centre: int, dims: int, negated: int | float | Fraction
    ) -> ChiralLayout:
        """A virtual layout for hidden features, in the paper's order.

        Joints are ordered ``[left (pairs), right (pairs), centre]``; the negated
        dims come first in each joint. ``negated`` is a count (int) or a fraction
        of ``dims`` (float/Fraction, rounded to the nearest count).

        >>> ChiralLayout.hidden(pairs=6, centre=5, dims=60, negated=1 / 3).size
        1020
        """
        if isinstance(negated, bool):
            raise TypeError("negated must be a count or a fraction, not a bool")
        if isinstance(negated, int | np.integer):
            count = int(negated)
        else:
            frac = float(negated)
            if not 0.0 <= frac <= 1.0:
                raise ValueError(f"negated fraction must lie in [0, 1], got {negated}")
            count = int(round(frac * dims))
        if not 0 <= count <= dims:
            raise ValueError(f"negated count {count} must lie in [0, dims={dims}]")
        if pairs < 0 or centre < 0:
            raise ValueError(f"pairs and centre must be >= 0, got {pairs}, {centre}")
        return cls(
            left=tuple(range(pairs)),
            right=tuple(range(pairs, 2 * pairs)),
            centre=tuple(range(2 * pairs, 2 * pairs + centre)),
            dims=dims,
            negated=tuple(range(count)),
        )

    @classmethod
    def invariant(cls, features: int) -> ChiralLayout:
        """The layout of mirror-invariant features: ``features`` centre channels, none negated."""
        return cls(left=(), right=(), centre=tuple(range(features)), dims=1, negated=())

    def with_dims(self, dims: int, negated: int | float | Fraction) -> ChiralLayout:
        """The same joint pairing with another per-joint width (count or fraction negated)."""
        like = ChiralLayout.hidden(0, 1, dims, negated)
        return ChiralLayout(self.left, self.right, self.centre, dims, like.negated)

    def unsigned(self) -> ChiralLayout:
        """The same layout with no negated dims: channels swap but never change sign."""
        return dataclasses.replace(self, negated=())

    # -- sizes and index maps ---------------------------------------------------------

    @property
    def num_joints(self) -> int:
        """``J``, the number of joints (left + right + centre)."""
        return len(self.left) + len(self.right) + len(self.centre)

    @property
    def size(self) -> int:
        """Flattened width ``J * D``."""
        return self.num_joints * self.dims

    @property
    def positive(self) -> tuple[int, ...]:
        """The dims that keep their sign."""
        neg = set(self.negated)
        return tuple(d for d in range(self.dims) if d not in neg)

    @property
    def joint_permutation(self) -> np.ndarray:
        """``sigma`` over joints: ``perm[j]`` is the mirror partner of joint ``j``."""
        perm = np.arange(self.num_joints)
        perm[list(self.left)] = self.right
        perm[list(self.right)] = self.left
        return perm

    @property
    def dim_signs(self) -> np.ndarray:
        """``s(d)``: -1 for negated dims, +1 otherwise, shape ``[D]``."""
        signs = np.ones(self.dims)
        signs[list(self.negated)] = -1.0
        return signs

    @property
    def permutation(self) -> np.ndarray:
        """``sigma`` over flattened channels, shape ``[J * D]``."""
        perm = self.joint_permutation
        return (perm[:, None] * self.dims + np.arange(self.dims)[None, :]).reshape(-1)

    @property
    def signs(self) -> np.ndarray:
        """``s`` over flattened channels, shape ``[J * D]``."""
        return np.tile(self.dim_signs, self.num_joints)

    @property
    def n_plus(self) -> int:
        """Dimension of the +1 eigenspace of ``T``: ``|L| * D + |C| * |Dp|``."""
        return len(self.left) * self.dims + len(self.centre) * len(self.positive)

    @property
    def n_minus(self) -> int:
        """Dimension of the -1 eigenspace of ``T``: ``|L| * D + |C| * |Dn|``."""
        return len(self.left) * self.dims + len(self.centre) * len(self.negated)

    @property
    def is_canonical(self) -> bool:
        """True when joints are ordered [left, right, centre] and negated dims come first."""
        order = self.left + self.right + self.centre
        return order == tuple(range(self.num_joints)) and self.negated == tuple(
            range(len(self.negated))
        )

    def matrix(self) -> np.ndarray:
        """``T`` as a dense ``[J*D, J*D]`` signed permutation matrix (for tests and plots)."""
        n = self.size
        mat = np.zeros((n, n))
        mat[np.arange(n), self.permutation] = self.signs
        return mat

    # -- the transform ----------------------------------------------------------------

    def transform(
        self,
        x,
        *,
        flat: bool | None = None,
        joint_axis: int | None = None,
        dim_axis: int | None = None,
    ):
        """Apply ``T`` to a NumPy or JAX array; returns the same kind, dtype and shape.

        NumPy in, NumPy out (no device round trip); anything else goes through
        ``jnp.asarray`` and comes out a JAX array, so the transform works under
        ``jit``, ``vmap`` and ``grad``.

        Args:
          x: by default ``[..., J, D]`` when the last two axes match, else the
            flattened ``[..., J*D]``.
          flat: force the flattened (``True``) or ``[..., J, D]`` (``False``)
            reading of the trailing axes; needed only when both match (a one-joint
            layout).
          joint_axis, dim_axis: the axes of size ``J`` and ``D`` when they are not
            the trailing two, e.g. ``joint_axis=2, dim_axis=0`` for Kinetics-skeleton
            clips ``(C, T, V, M)``; an axis not given keeps its default (-2 or -1).

        Raises:
          ValueError: naming the axis sizes expected and got, when they do not match.

        >>> layout = ChiralLayout(left=(1,), right=(2,), centre=(0,), dims=2, negated=(0,))
        >>> layout.transform(np.arange(6).reshape(2, 3), joint_axis=1, dim_axis=0).tolist()
        [[0, -2, -1], [3, 5, 4]]
        """
        xp = np if isinstance(x, np.ndarray) else jnp
        x = xp.asarray(x)
        if joint_axis is None and dim_axis is None:
            trailing = x.ndim >= 2 and x.shape[-2:] == (self.num_joints, self.dims)
            if flat or (flat is None and not trailing):
                if x.ndim < 1 or x.shape[-1] != self.size:
                    raise ValueError(
                        f"layout expects a last axis of J*D = {self.num_joints}*{self.dims} = "
                        f"{self.size} (or trailing axes [J, D] = [{self.num_joints}, "
                        f"{self.dims}]), got shape {x.shape}"
                    )
                if self.left + self.right == tuple(range(2 * len(self.left))):
                    # Pairs first ([left, right, ...]): swap two slices, which XLA fuses.
                    pairs = len(self.left) * self.dims
                    x = xp.concatenate(
                        [x[..., pairs : 2 * pairs], x[..., :pairs], x[..., 2 * pairs :]], -1
                    )
                    signs = xp.asarray(self.signs, dtype=x.dtype)
                    return x * signs.reshape((1,) * (x.ndim - 1) + (-1,))
                return _signed_take(xp, x, self.permutation, self.signs, -1, -1)
        elif flat:
            raise ValueError("flat=True reads the last axis as J*D: give no joint_axis/dim_axis")
        joint_axis = -2 if joint_axis is None else joint_axis
        dim_axis = -1 if dim_axis is None else dim_axis
        expected = (
            f"layout expects J={self.num_joints} joints on axis {joint_axis} and "
            f"D={self.dims} dims on axis {dim_axis}"
        )
        if not all(-x.ndim <= a < x.ndim for a in (joint_axis, dim_axis)):
            raise ValueError(f"{expected}, got shape {x.shape} ({x.ndim} axes)")
        if joint_axis % x.ndim == dim_axis % x.ndim:
            raise ValueError(f"{expected}: joint_axis and dim_axis must be different axes")
        found = (x.shape[joint_axis], x.shape[dim_axis])
        if found != (self.num_joints, self.dims):
            raise ValueError(f"{expected}, got sizes {found} in shape {x.shape}")
        return _signed_take(xp, x, self.joint_permutation, self.dim_signs, joint_axis, dim_axis)

    def check_features(self, x, what: str = "input") -> None:
        """Raise a clear error unless ``x``'s last axis is this layout's flat width."""
        if x.shape[-1:] != (self.size,):
            raise ValueError(
                f"{what} has last axis {x.shape[-1] if x.ndim else None} (shape {x.shape}), "
                f"but its layout has J*D = {self.num_joints}*{self.dims} = {self.size} channels"
            )


def _signed_take(xp, x, perm: np.ndarray, signs: np.ndarray, perm_axis: int, sign_axis: int):
    """``x`` gathered by ``perm`` along ``perm_axis``, times ``signs`` along ``sign_axis``."""
    shape = [1] * x.ndim
    shape[sign_axis] = len(signs)
    return xp.take(x, perm, axis=perm_axis) * xp.asarray(signs, dtype=x.dtype).reshape(shape)


def layout_from_pairs(
    num_joints: int, pairs: Sequence[tuple[int, int]], dims: int, negated: Sequence[int]
) -> ChiralLayout:
    """Build a layout from ``(left, right)`` joint pairs; unpaired joints are centre."""
    left = tuple(p[0] for p in pairs)
    right = tuple(p[1] for p in pairs)
    paired = set(left) | set(right)
    centre = tuple(j for j in range(num_joints) if j not in paired)
    return ChiralLayout(left, right, centre, dims, tuple(negated))
