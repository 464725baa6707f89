"""Pose errors of the lifting task: MPJPE, P-MPJPE, N-MPJPE, MPJVE, and action-wise means.

Every error takes ``predicted`` and ``target`` shaped ``(..., J, D)`` (``D = 3`` for
poses, in metres) and returns one error per pose, shaped ``(...)``: the mean over
joints of the Euclidean distance. Take ``.mean()`` of the result for the usual
scalar and multiply by 1000 to report millimetres. The definitions follow the
VideoPose3D evaluation:

- MPJPE: ``mean_j |p_j - t_j|``.
- P-MPJPE: MPJPE after the similarity transform (scale, rotation, translation)
  that best maps each predicted pose onto its target (orthogonal Procrustes with
  the reflection excluded).
- N-MPJPE: MPJPE after the per-pose scale ``s = <p, t> / <p, p>`` (no centring).
- MPJVE: MPJPE of the first differences along the time axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pair(predicted, target) -> tuple[np.ndarray, np.ndarray]:
    """Both poses as float64 arrays of one shape ``(..., J, D)``, finite."""
    predicted = np.asarray(predicted, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted and target shapes differ: {predicted.shape} vs {target.shape}")
    if predicted.ndim < 2:
        raise ValueError(f"poses must be shaped (..., J, D), got shape {predicted.shape}")
    for name, x in (("predicted", predicted), ("target", target)):
        if not np.isfinite(x).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    return predicted, target


def _joint_error(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.norm(predicted - target, axis=-1).mean(axis=-1)


def mpjpe(predicted, target) -> np.ndarray:
    """Mean per-joint position error, ``(..., J, D) -> (...)``."""
    return _joint_error(*_pair(predicted, target))


def procrustes_align(predicted, target) -> np.ndarray:
    """``predicted`` mapped onto ``target`` by the best per-pose similarity, ``(..., J, D)``.

    Minimises ``sum_j |a R p_j + t - x_j|^2`` over the scale ``a``, the proper
    rotation ``R`` (det +1) and the translation ``t``. A pose collapsed to a point
    (zero spread) gets scale 0, i.e. it maps onto the target's centroid.
    """
    predicted, target = _pair(predicted, target)
    mu_x = target.mean(axis=-2, keepdims=True)
    mu_y = predicted.mean(axis=-2, keepdims=True)
    x0 = target - mu_x
    y0 = predicted - mu_y
    norm_x = np.sqrt((x0**2).sum(axis=(-2, -1), keepdims=True))
    norm_y = np.sqrt((y0**2).sum(axis=(-2, -1), keepdims=True))
    x0 = x0 / np.where(norm_x == 0, 1.0, norm_x)
    y0 = y0 / np.where(norm_y == 0, 1.0, norm_y)

    # Kabsch on the normalised poses: H = X0^T Y0 = U S V^T, R = V U^T.
    u, s, vt = np.linalg.svd(np.swapaxes(x0, -1, -2) @ y0)
    v = np.swapaxes(vt, -1, -2)
    # A reflection (det R = -1) is not a rigid motion: flip the weakest axis instead.
    sign = np.sign(np.linalg.det(v @ np.swapaxes(u, -1, -2)))
    sign = np.where(sign == 0, 1.0, sign)
    v[..., :, -1] *= sign[..., None]
    s[..., -1] *= sign
    rotation = v @ np.swapaxes(u, -1, -2)

    scale = s.sum(axis=-1)[..., None, None] * norm_x / np.where(norm_y == 0, 1.0, norm_y)
    return scale * (predicted - mu_y) @ rotation + mu_x


def p_mpjpe(predicted, target) -> np.ndarray:
    """MPJPE after per-pose similarity Procrustes alignment, ``(..., J, D) -> (...)``."""
    predicted, target = _pair(predicted, target)
    return _joint_error(procrustes_align(predicted, target), target)


def n_mpjpe(predicted, target) -> np.ndarray:
    """MPJPE after the per-pose optimal scale of ``predicted``, ``(..., J, D) -> (...)``.

    A pose of all zeros keeps scale 1 (any scale gives the same error).
    """
    predicted, target = _pair(predicted, target)
    norm_p = (predicted**2).sum(axis=(-2, -1), keepdims=True)
    dot = (predicted * target).sum(axis=(-2, -1), keepdims=True)
    scale = np.where(norm_p == 0, 1.0, dot / np.where(norm_p == 0, 1.0, norm_p))
    return _joint_error(scale * predicted, target)


def mpjve(predicted, target, *, time_axis: int = -3) -> np.ndarray:
    """Mean per-joint velocity error: MPJPE of first differences along ``time_axis``.

    ``(..., T, J, D) -> (..., T - 1)`` with the default ``time_axis=-3``.
    """
    predicted, target = _pair(predicted, target)
    axis = time_axis % predicted.ndim
    if axis >= predicted.ndim - 2:
        raise ValueError(
            f"time_axis={time_axis} points at the joint or coordinate axis of shape "
            f"{predicted.shape}"
        )
    if predicted.shape[axis] < 2:
        raise ValueError(f"velocities need at least 2 frames along axis {axis}")
    return _joint_error(np.diff(predicted, axis=axis), np.diff(target, axis=axis))


def action_group(action: str) -> str:
    """The action class of a sequence name, its first word: "Walking 1" -> "Walking"."""
    return action.split(" ")[0]


def action_wise(
    errors_per_frame: Sequence[np.ndarray], action_names: Sequence[str]
) -> tuple[dict[str, float], float]:
    """Per-action and overall errors, as in the Human3.6M protocol tables.

    Args:
      errors_per_frame: one array of per-frame errors per sequence (any shape; all
        entries are frames, e.g. ``(T,)`` or ``(cameras, T)``).
      action_names: the action of each sequence; sequences are grouped by
        :func:`action_group`, so "Walking" and "Walking 1" pool together.

    Returns:
      ``(per_action, overall)``: ``per_action[group]`` is the mean over all frames of
      the group's sequences (frame-weighted); ``overall`` is the plain mean of the
      per-action values.
    """
    if len(errors_per_frame) != len(action_names):
        raise ValueError(
            f"{len(errors_per_frame)} error arrays for {len(action_names)} action names"
        )
    if not action_names:
        raise ValueError("action_wise needs at least one sequence")
    grouped: dict[str, list[np.ndarray]] = {}
    for errors, action in zip(errors_per_frame, action_names, strict=True):
        errors = np.asarray(errors, dtype=np.float64).ravel()
        if errors.size == 0:
            raise ValueError(f"sequence of action {action!r} has no frames")
        if not np.isfinite(errors).all():
            raise ValueError(f"errors of action {action!r} hold NaN or infinite values")
        grouped.setdefault(action_group(action), []).append(errors)
    per_action = {name: float(np.concatenate(parts).mean()) for name, parts in grouped.items()}
    return per_action, float(np.mean(list(per_action.values())))
