"""Mirror augmentation on numpy batches: the chirality transform applied per sample.

The mirror of a pose ``x[..., J, D]`` is ``x[..., sigma(j), d] * s(d)``: swap each
left/right joint pair and negate the layout's negated dims. For a sample that is
flipped, every listed array of that sample is mirrored, so inputs and targets stay
consistent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chiral_jax import ChiralLayout


def mirror(x: np.ndarray, layout: ChiralLayout, *, joint_axis: int = -2, dim_axis: int = -1):
    """The chirality transform of ``x`` on numpy.

    Args:
      x: array with a joint axis of size ``J`` and a dim axis of size ``D``
        (``[..., J, D]`` by default).
      layout: the joints' pairing and negated dims.
      joint_axis, dim_axis: where the joint and dim axes are (``joint_axis=3,
        dim_axis=1`` for ``[N, C, T, V, M]`` skeleton tensors).

    >>> layout = ChiralLayout(left=(1,), right=(2,), centre=(0,), dims=2, negated=(0,))
    >>> mirror(np.arange(6.0).reshape(3, 2), layout).tolist()
    [[-0.0, 1.0], [-4.0, 5.0], [-2.0, 3.0]]
    """
    x = np.asarray(x)
    try:
        found = (x.shape[joint_axis], x.shape[dim_axis])
    except IndexError:
        found = None
    if found != (layout.num_joints, layout.dims):
        raise ValueError(
            f"mirror expects J={layout.num_joints} joints on axis {joint_axis} and "
            f"D={layout.dims} dims on axis {dim_axis}, got shape {x.shape}"
        )
    signs_shape = [1] * x.ndim
    signs_shape[dim_axis] = layout.dims
    signs = layout.dim_signs.astype(x.dtype).reshape(signs_shape)
    return np.take(x, layout.joint_permutation, axis=joint_axis) * signs


def mirror_where(
    mask: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    layouts: Mapping[str, ChiralLayout],
    *,
    axes: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, np.ndarray]:
    """Mirror the samples where ``mask`` is true, in every array that has a layout.

    Args:
      mask: boolean ``[B]``: which samples to mirror.
      arrays: batch of arrays with leading axis ``B``; keys absent from ``layouts``
        pass through unchanged (labels, indices, ...).
      layouts: the layout of each array to mirror.
      axes: optional ``(joint_axis, dim_axis)`` per key, for arrays not shaped
        ``[B, ..., J, D]``.
    """
    if not layouts:
        raise ValueError("mirroring needs the layout of at least one array")
    missing = sorted(set(layouts) - set(arrays))
    if missing:
        raise KeyError(f"arrays {missing} have a layout but are not in the batch")
    mask = np.asarray(mask)
    for key in layouts:
        if np.ndim(arrays[key]) < 1 or np.shape(arrays[key])[0] != mask.shape[0]:
            raise ValueError(
                f"array {key!r} of shape {np.shape(arrays[key])} does not have the batch "
                f"axis of the mask ({mask.shape[0]} samples)"
            )
    out = dict(arrays)
    for key, layout in layouts.items():
        x = np.asarray(arrays[key])
        joint_axis, dim_axis = (axes or {}).get(key, (-2, -1))
        flipped = mirror(x, layout, joint_axis=joint_axis, dim_axis=dim_axis)
        out[key] = np.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), flipped, x)
    return out


def flip_batch(
    rng: np.random.Generator,
    arrays: Mapping[str, np.ndarray],
    layouts: Mapping[str, ChiralLayout],
    prob: float = 0.5,
    *,
    axes: Mapping[str, tuple[int, int]] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mirror each sample with probability ``prob``, the same decision for all its arrays.

    Args:
      rng: the generator that draws one decision per sample.
      arrays, layouts, axes: as in :func:`mirror_where`.
      prob: flip probability in ``[0, 1]``.

    Returns:
      the new arrays and the boolean flip mask ``[B]``.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"flip probability must lie in [0, 1], got {prob}")
    sizes = [np.shape(arrays[k])[0] for k in layouts if k in arrays and np.ndim(arrays[k])]
    mask = rng.random(sizes[0] if sizes else 0) < prob
    return mirror_where(mask, arrays, layouts, axes=axes), mask
