"""From dataset files to the per-camera sequences a lifting model trains and tests on.

:func:`load_dataset` reads our pickle-free ``.npz`` or, with an explicit trust
flag, VideoPose3D's pickled pair plus a cameras JSON. :func:`default_split` gives
the protocol's subjects (Human3.6M: train S1 S5 S6 S7 S8, test S9 S11; HumanEva:
``Train/*`` and ``Validate/*``). :func:`camera_sequences` applies VideoPose3D's
preprocessing (:func:`to_camera_frames`) and lists one sequence per
(subject, action, camera), optionally keeping only a fraction of each.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.camera import Camera, normalize_screen_coordinates
from chiral_tasks.lifting.archive import LiftingFormatError
from chiral_tasks.lifting.cameras import load_cameras_json
from chiral_tasks.lifting.dataset import LiftingDataset
from chiral_tasks.lifting.npz import load_npz
from chiral_tasks.lifting.videopose3d import (
    from_videopose3d,
    load_videopose3d_2d,
    load_videopose3d_3d,
)

H36M_TRAIN = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST = ("S9", "S11")


def load_dataset(
    path: str | os.PathLike,
    *,
    path_2d: str | os.PathLike | None = None,
    cameras: str | os.PathLike | None = None,
    allow_pickle: bool = False,
) -> LiftingDataset:
    """Read a lifting dataset.

    Args:
      path: our ``.npz`` (:func:`chiral_tasks.lifting.npz.load_npz`), or VideoPose3D's
        ``data_3d_<ds>.npz`` when ``path_2d`` is given.
      path_2d: VideoPose3D's ``data_2d_<ds>_<detector>.npz``.
      cameras: the cameras JSON (:mod:`chiral_tasks.lifting.cameras`), needed with ``path_2d``.
      allow_pickle: trust VideoPose3D's pickled files (loading them runs code stored in
        them); refused otherwise.
    """
    if path_2d is None:
        if cameras is not None:
            raise ValueError("cameras are read from our .npz itself; --cameras goes with --data-2d")
        return load_npz(path)
    if cameras is None:
        raise ValueError(
            "VideoPose3D's files hold no camera parameters: pass the cameras JSON "
            "(schema in tasks/lifting/cameras.py)"
        )
    poses = load_videopose3d_3d(path, trust_pickle=allow_pickle)
    detections = load_videopose3d_2d(path_2d, trust_pickle=allow_pickle)
    camera_params = load_cameras_json(cameras)
    try:
        return from_videopose3d(poses, detections, cameras=camera_params)
    except ValueError as err:  # the files disagree: name all three
        raise LiftingFormatError(f"{path} with {path_2d} and {cameras}: {err}") from err


def default_split(dataset: LiftingDataset) -> tuple[list[str], list[str]]:
    """The protocol's ``(train, test)`` subjects present in ``dataset``.

    HumanEva-style names (``Train/...``, ``Validate/...``) split by prefix; otherwise
    Human3.6M's S1 S5 S6 S7 S8 / S9 S11. Raises when either side would be empty.
    """
    names = list(dataset.subjects)
    if any(n.startswith("Train/") for n in names):
        train = [n for n in names if n.startswith("Train/")]
        test = [n for n in names if n.startswith("Validate/")]
    else:
        train = [n for n in H36M_TRAIN if n in dataset.subjects]
        test = [n for n in H36M_TEST if n in dataset.subjects]
    if not train or not test:
        raise ValueError(
            f"cannot split subjects {names} by the Human3.6M (train {list(H36M_TRAIN)}, test "
            f"{list(H36M_TEST)}) or HumanEva (Train/*, Validate/*) protocol: name the "
            "subjects explicitly"
        )
    return train, test


@dataclasses.dataclass(frozen=True, eq=False)
class CameraView:
    """One recording seen by one camera, ready for a lifting model.

    ``positions_3d`` (T, J, 3) float32: camera frame, metres, relative to the root
    joint (the root itself is 0). ``positions_2d`` (T, J_2d, 2) float32: normalised
    screen coordinates (x in [-1, 1]). ``camera``: the camera, for its intrinsics.
    """

    positions_3d: np.ndarray
    positions_2d: np.ndarray
    camera: Camera


def _root(skeleton: Skeleton) -> int:
    roots = [j for j, p in enumerate(skeleton.parents) if p == -1]
    if len(roots) != 1:
        raise ValueError(f"skeleton {skeleton.name!r} needs exactly one root, has {roots}")
    return roots[0]


def to_camera_frames(dataset: LiftingDataset) -> dict[str, dict[str, list[CameraView]]]:
    """VideoPose3D's preprocessing: ``views[subject][action][k]`` for camera ``k``.

    3D world poses go into each camera's frame and become relative to the root
    joint (joint 0 for Human3.6M and HumanEva); 2D pixels become normalised screen
    coordinates. Raises ``ValueError`` for a subject without camera parameters.
    """
    root = _root(dataset.skeleton)
    views: dict[str, dict[str, list[CameraView]]] = {}
    for subject, data in dataset.subjects.items():
        if data.cameras is None:
            raise ValueError(
                f"subject {subject!r} has no camera parameters: build the dataset with "
                "cameras (e.g. from_videopose3d(..., cameras=...))"
            )
        views[subject] = {}
        for action, rec in data.recordings.items():
            views[subject][action] = []
            for camera, view_2d in zip(data.cameras, rec.positions_2d, strict=True):
                pos = camera.world_to_camera(rec.positions_3d)
                pos = pos - pos[:, root : root + 1]
                screen = normalize_screen_coordinates(view_2d, camera.res_w, camera.res_h)
                views[subject][action].append(
                    CameraView(pos.astype(np.float32), screen.astype(np.float32), camera)
                )
    return views


@dataclasses.dataclass(frozen=True, eq=False)
class Sequences:
    """Per-camera sequences: ``inputs[i]`` (T_i, J_2d, 2) normalised screen coordinates
    (the dataset's ``skeleton_2d``), ``targets[i]`` (T_i, J, 3) root-relative camera-frame
    metres (its ``skeleton``), ``keys[i]`` its ``(subject, action, camera index)``."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    keys: list[tuple[str, str, int]]

    @property
    def num_frames(self) -> int:
        return sum(len(x) for x in self.inputs)


def camera_sequences(
    dataset: LiftingDataset,
    subjects: Sequence[str],
    *,
    fraction: float = 1.0,
    seed: int = 0,
) -> Sequences:
    """One sequence per (subject, action, camera) of ``subjects``.

    ``fraction < 1`` keeps a contiguous run of ``ceil(fraction * T)`` frames of each
    recording (the same frames in every camera), starting at an offset drawn from
    ``default_rng(seed)`` (VideoPose3D's ``--subset``).
    """
    missing = [s for s in subjects if s not in dataset.subjects]
    if missing:
        raise ValueError(
            f"subjects {missing} are not in the dataset (it has {list(dataset.subjects)})"
        )
    if not subjects:
        raise ValueError("no subjects selected")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    chosen = dataclasses.replace(dataset, subjects={s: dataset.subjects[s] for s in subjects})
    rng = np.random.default_rng(seed)
    out = Sequences([], [], [])
    for subject, actions in to_camera_frames(chosen).items():
        for action, views in actions.items():
            frames = len(views[0].positions_2d)
            keep = math.ceil(fraction * frames)
            start = int(rng.integers(frames - keep + 1))
            for k, view in enumerate(views):
                out.inputs.append(view.positions_2d[start : start + keep])
                out.targets.append(view.positions_3d[start : start + keep])
                out.keys.append((subject, action, k))
    return out
