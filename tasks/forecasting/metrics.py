"""PCK for pose forecasting, on (joint, xy) arrays.

Poses are normalised per video by ``(xy - mid) / (L/2)`` (see
:func:`chiral_tasks.forecasting.penn.normalize_video`), so PCK@0.05 -- a joint within
``0.05 * L`` of the truth -- is a distance below 0.1 in normalised units.

The metric takes poses shaped (..., joints, 2) and never a flat vector: TP-RNN's
released code stores poses as ``[x0..x12, y0..y12]`` but scores them as if
interleaved ``[x0, y0, ...]``, pairing the wrong coordinates.
"""

from __future__ import annotations

import numpy as np


def pck(pred, target, visible, threshold: float = 0.1) -> tuple[np.ndarray, float]:
    """Per-step percentage of correct keypoints.

    A visible joint is correct when its Euclidean distance to the target is
    strictly below ``threshold``; invisible joints count in neither numerator nor
    denominator. As in TP-RNN, the joints of all samples are pooled per step.

    Args:
      pred: (N, S, J, 2) predicted poses, last axis (x, y).
      target: (N, S, J, 2) true poses.
      visible: (N, S, J) bool (or 0/1) visibility of the targets.
      threshold: distance threshold in the units of the poses (0.1 = PCK@0.05 of
        the normalising box length).

    Returns:
      ``(per_step, average)``: (S,) float64 PCK per future step, NaN for a step
      with no visible joint (it has no score, not a score of 0), and the mean of
      the per-step values that are defined (NaN if none is).

    Raises:
      ValueError: on mismatched or wrongly ranked shapes, a last axis other than
        2, NaN or infinite coordinates, or a non-positive threshold.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    visible = np.asarray(visible)
    if pred.ndim != 4 or pred.shape[-1] != 2:
        raise ValueError(
            f"pred must have shape (N, S, J, 2) with (x, y) last, got {pred.shape}; "
            "reshape flat pose vectors to (joints, 2) first"
        )
    if target.shape != pred.shape:
        raise ValueError(f"target shape {target.shape} differs from pred shape {pred.shape}")
    if visible.shape != pred.shape[:3]:
        raise ValueError(f"visible must have shape {pred.shape[:3]}, got {visible.shape}")
    if not np.all((visible == 0) | (visible == 1)):
        raise ValueError("visible must hold only booleans or 0/1")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(target))):
        raise ValueError("pred and target must be finite (NaN or infinite coordinates found)")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    visible = visible.astype(bool)
    correct = (np.linalg.norm(pred - target, axis=-1) < threshold) & visible
    counts = visible.sum(axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_step = np.where(counts > 0, correct.sum(axis=(0, 2)) / counts, np.nan)
    defined = per_step[~np.isnan(per_step)]
    average = float(defined.mean()) if defined.size else float("nan")
    return per_step, average
