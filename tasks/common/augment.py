"""Mirror augmentation on numpy batches: the chirality transform applied per sample.

The mirror of a pose is :meth:`chiral_jax.ChiralLayout.transform` (on numpy arrays it
stays on numpy): swap each left/right joint pair and negate the layout's negated dims.
For a sample that is flipped, every listed array of that sample is mirrored, so
inputs and targets stay consistent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chiral_jax import ChiralLayout


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
        flipped = layout.transform(x, joint_axis=joint_axis, dim_axis=dim_axis)
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
