"""VideoPose3D's pickled ``.npz`` files: reading them, and converting them to ours.

``data_3d_<ds>.npz`` holds ``positions_3d``: a pickled dict subject -> action ->
``(T, J, 3)`` float32 world positions in metres (Human3.6M: 32 mocap joints,
reduced here to the 17 of :data:`chiral_jax.skeletons.H36M_17`; HumanEva: 15).
``data_2d_<ds>_<detector>.npz`` holds ``positions_2d``: subject -> action -> a list
with one ``(T, J_2d, 2)`` float32 pixel array per camera, and ``metadata``: a dict
with ``layout_name``, ``num_joints`` and ``keypoints_symmetry = [left, right]``
describing the 2D layout, which may differ from the 3D skeleton (Detectron's COCO
keypoints for Human3.6M).
Both store Python pickles, and unpickling runs code chosen by whoever wrote the
file, so :func:`load_videopose3d_3d`, :func:`load_videopose3d_2d` and
:func:`convert_videopose3d` refuse them unless called with ``trust_pickle=True``.
Convert a trusted file once and share the result instead.

Human3.6M's kept joints are :data:`H36M_KEPT_JOINTS`; the frame rates, which the
files do not store, are :data:`DATASET_FPS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chiral_jax.skeletons import H36M_17, HUMANEVA_15, SKELETONS, Skeleton
from chiral_tasks.common.camera import Camera
from chiral_tasks.lifting.archive import LiftingFormatError, PathLike, read_npz, require_keys
from chiral_tasks.lifting.dataset import LiftingDataset, Recording, SubjectData, as_float32
from chiral_tasks.lifting.npz import save_npz

H36M_KEPT_JOINTS = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
"""The 17 of Human3.6M's 32 mocap joints kept by VideoPose3D, in :data:`H36M_17` order."""

DATASET_FPS = {H36M_17.name: 50.0, HUMANEVA_15.name: 60.0}
CORRUPT_SEQUENCES = {H36M_17.name: frozenset({("S11", "Directions")})}
"""(subject, action) pairs dropped on loading: S11 "Directions" has a corrupt video."""


class UntrustedPickleError(ValueError):
    """Refusal to unpickle a file without ``trust_pickle=True``."""


def _read_pickled(path: PathLike, keys: Sequence[str], trust_pickle: bool) -> dict[str, Any]:
    """The pickled objects under ``keys`` of a VideoPose3D file, once the caller trusts it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path}: a VideoPose3D file whose {', '.join(keys)} entries are Python pickles; "
            "loading them runs any code the file's author put in it. Only for files from a "
            "source you trust: pass --allow-pickle (trust_pickle=True), ideally once, to "
            "`chiral lifting convert` (convert_videopose3d), and use the pickle-free .npz it "
            "writes."
        )
    arrays = read_npz(path, allow_pickle=True)
    require_keys(arrays, keys, path)
    out = {}
    for key in keys:
        value = arrays[key]
        if value.dtype != object or value.shape != ():
            raise LiftingFormatError(
                f"{path}: {key!r} should hold one pickled dict, got an array of dtype "
                f"{value.dtype} and shape {value.shape}"
            )
        out[key] = value.item()
        if not isinstance(out[key], dict):
            raise LiftingFormatError(
                f"{path}: {key!r} should be a dict, got {type(out[key]).__name__}"
            )
    return out


def _nested_items(tree: Any, path: PathLike, key: str):
    """``(subject, action, value)`` of a subject -> action -> value dict, checked."""
    for subject, actions in tree.items():
        if not isinstance(subject, str) or not isinstance(actions, dict):
            raise LiftingFormatError(
                f"{path}: {key} must map subject names to dicts of actions; got "
                f"{subject!r} -> {type(actions).__name__}"
            )
        for action, value in actions.items():
            if not isinstance(action, str):
                raise LiftingFormatError(
                    f"{path}: {key}[{subject!r}] has a non-string action {action!r}"
                )
            yield subject, action, value


def _positions(value, dims: int, path: PathLike, where: str) -> np.ndarray:
    """A (T, J, dims) finite float32 array from a file, or an error naming it."""
    x = as_float32(value)
    if x.dtype != np.float32:
        raise LiftingFormatError(f"{path}: {where}: expected numbers, got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[2] != dims or x.shape[0] == 0:
        raise LiftingFormatError(f"{path}: {where}: expected shape (T>0, J, {dims}), got {x.shape}")
    if not np.isfinite(x).all():
        raise LiftingFormatError(f"{path}: {where}: holds NaN or infinite values")
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class VideoPose3DPoses:
    """The content of ``data_3d_<ds>.npz``: ``positions[subject][action]`` (T, J, 3) metres."""

    skeleton: Skeleton
    positions: dict[str, dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True, eq=False)
class VideoPose3DDetections:
    """The content of ``data_2d_<ds>_<det>.npz``: ``positions[subject][action][k]`` (T, J, 2) px."""

    skeleton: Skeleton
    positions: dict[str, dict[str, list[np.ndarray]]]


def _infer_3d_skeleton(num_joints: int, path: PathLike) -> Skeleton:
    if num_joints == 32:
        return H36M_17
    if num_joints == HUMANEVA_15.num_joints:
        return HUMANEVA_15
    raise LiftingFormatError(
        f"{path}: cannot tell the skeleton of {num_joints}-joint poses (32 is Human3.6M, "
        "15 HumanEva); pass skeleton=..."
    )


def load_videopose3d_3d(
    path: PathLike, *, trust_pickle: bool, skeleton: Skeleton | None = None
) -> VideoPose3DPoses:
    """Load VideoPose3D's ``data_3d_<ds>.npz`` (needs ``trust_pickle=True``: see module doc).

    The skeleton is Human3.6M for 32 joints (reduced to its 17 joints with
    :data:`H36M_KEPT_JOINTS`) and HumanEva for 15, unless ``skeleton`` is given.
    Corrupt sequences (:data:`CORRUPT_SEQUENCES`) are dropped.
    """
    tree = _read_pickled(path, ["positions_3d"], trust_pickle)["positions_3d"]
    positions: dict[str, dict[str, np.ndarray]] = {}
    for subject, action, value in _nested_items(tree, path, "positions_3d"):
        x = _positions(value, 3, path, f"subject {subject!r}, action {action!r}")
        if skeleton is None:
            skeleton = _infer_3d_skeleton(x.shape[1], path)
        if skeleton.name == H36M_17.name and x.shape[1] == 32:
            x = x[:, list(H36M_KEPT_JOINTS)]
        if x.shape[1] != skeleton.num_joints:
            raise LiftingFormatError(
                f"{path}: subject {subject!r}, action {action!r}: {x.shape[1]} joints, "
                f"but skeleton {skeleton.name!r} has {skeleton.num_joints}"
            )
        if (subject, action) not in CORRUPT_SEQUENCES.get(skeleton.name, ()):
            positions.setdefault(subject, {})[action] = x
    if skeleton is None:
        raise LiftingFormatError(f"{path}: positions_3d holds no sequences")
    return VideoPose3DPoses(skeleton, positions)


def _check_metadata(metadata: dict, skeleton: Skeleton | None, path: PathLike) -> Skeleton:
    """The skeleton of a 2D file, checked against its ``metadata``."""
    require_keys(metadata, ["layout_name", "num_joints", "keypoints_symmetry"], path)
    layout = metadata["layout_name"]
    if skeleton is None:
        if layout not in SKELETONS:
            raise LiftingFormatError(
                f"{path}: unknown keypoint layout {layout!r} (known: {sorted(SKELETONS)}); "
                "pass skeleton=..."
            )
        skeleton = SKELETONS[layout]
    if metadata["num_joints"] != skeleton.num_joints:
        raise LiftingFormatError(
            f"{path}: metadata says {metadata['num_joints']} joints, skeleton "
            f"{skeleton.name!r} has {skeleton.num_joints}"
        )
    symmetry = metadata["keypoints_symmetry"]
    try:
        left, right = ({int(j) for j in side} for side in symmetry)
    except (TypeError, ValueError) as err:
        raise LiftingFormatError(
            f"{path}: keypoints_symmetry must be [left_joints, right_joints], got {symmetry!r}"
        ) from err
    # Compared as sets: VideoPose3D's lists need not pair up position by position
    # (its MPII right list runs ankle to hip); the pairs come from the skeleton.
    if left != set(skeleton.left) or right != set(skeleton.right):
        raise LiftingFormatError(
            f"{path}: keypoints_symmetry {symmetry!r} does not match skeleton "
            f"{skeleton.name!r} (left {sorted(skeleton.left)}, right {sorted(skeleton.right)})"
        )
    return skeleton


def load_videopose3d_2d(
    path: PathLike, *, trust_pickle: bool, skeleton: Skeleton | None = None
) -> VideoPose3DDetections:
    """Load VideoPose3D's ``data_2d_<ds>_<det>.npz`` (needs ``trust_pickle=True``).

    The skeleton is the one named by ``metadata["layout_name"]`` in
    :data:`chiral_jax.skeletons.SKELETONS` unless ``skeleton`` is given; the
    metadata's joint count and left/right sets must match it.
    """
    content = _read_pickled(path, ["positions_2d", "metadata"], trust_pickle)
    skeleton = _check_metadata(content["metadata"], skeleton, path)
    positions: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, action, views in _nested_items(content["positions_2d"], path, "positions_2d"):
        where = f"subject {subject!r}, action {action!r}"
        if not isinstance(views, list | tuple) or not views:
            raise LiftingFormatError(f"{path}: {where}: expected a list of per-camera arrays")
        arrays = []
        for k, view in enumerate(views):
            if view is None:
                raise LiftingFormatError(f"{path}: {where}, camera {k}: no detections")
            x = _positions(view, 2, path, f"{where}, camera {k}")
            if x.shape[1] != skeleton.num_joints:
                raise LiftingFormatError(
                    f"{path}: {where}, camera {k}: {x.shape[1]} joints, but layout "
                    f"{skeleton.name!r} has {skeleton.num_joints}"
                )
            arrays.append(x)
        if (subject, action) not in CORRUPT_SEQUENCES.get(skeleton.name, ()):
            positions.setdefault(subject, {})[action] = arrays
    return VideoPose3DDetections(skeleton, positions)


def from_videopose3d(
    poses: VideoPose3DPoses,
    detections: VideoPose3DDetections,
    *,
    cameras: Mapping[str, Sequence[Camera]] | None = None,
    fps: float | None = None,
) -> LiftingDataset:
    """Pair 3D poses with 2D detections into a :class:`LiftingDataset`.

    The detections' layout becomes the dataset's ``skeleton_2d``; it may differ from
    the 3D skeleton (VideoPose3D's Detectron detections of Human3.6M are COCO-17
    keypoints). Every (subject, action) of ``poses`` needs detections; detections
    longer than the mocap are cut to its length (as VideoPose3D does), shorter ones
    are an error. Detections without 3D poses (e.g. HumanEva's "Unlabeled/..."
    subjects) are left out. ``cameras[subject][k]`` is the camera of view ``k``;
    Human3.6M's official parameters are not distributed with this project, so pass
    them here to get a dataset that :func:`chiral_tasks.lifting.data.to_camera_frames`
    can use. ``fps`` defaults to the dataset's (:data:`DATASET_FPS`).
    """
    skeleton = poses.skeleton
    if fps is None:
        if skeleton.name not in DATASET_FPS:
            raise ValueError(f"no known frame rate for skeleton {skeleton.name!r}: pass fps=")
        fps = DATASET_FPS[skeleton.name]
    if cameras is not None:
        missing = [s for s in poses.positions if s not in cameras]
        if missing:
            raise ValueError(f"no cameras given for subjects {missing}")

    subjects = {}
    for subject, actions in poses.positions.items():
        recordings = {}
        for action, positions_3d in actions.items():
            views = detections.positions.get(subject, {}).get(action)
            if views is None:
                raise ValueError(f"no 2D detections for subject {subject!r}, action {action!r}")
            trimmed = []
            for k, view in enumerate(views):
                if len(view) < len(positions_3d):
                    raise ValueError(
                        f"subject {subject!r}, action {action!r}, camera {k}: {len(view)} "
                        f"frames of 2D detections for {len(positions_3d)} frames of mocap"
                    )
                trimmed.append(view[: len(positions_3d)])
            recordings[action] = Recording(positions_3d, tuple(trimmed))
        subject_cameras = None if cameras is None else tuple(cameras[subject])
        subjects[subject] = SubjectData(recordings, subject_cameras)
    return LiftingDataset(skeleton.name, float(fps), skeleton, subjects, detections.skeleton)


def convert_videopose3d(
    path_3d: PathLike,
    path_2d: PathLike,
    out_path: PathLike,
    *,
    trust_pickle: bool,
    cameras: Mapping[str, Sequence[Camera]] | None = None,
    fps: float | None = None,
) -> LiftingDataset:
    """Convert a VideoPose3D 3D file and 2D file into our pickle-free ``out_path``.

    Needs ``trust_pickle=True`` (the inputs are pickles); see :func:`from_videopose3d`
    for ``cameras`` and ``fps``. Returns the dataset written.
    """
    poses = load_videopose3d_3d(path_3d, trust_pickle=trust_pickle)
    detections = load_videopose3d_2d(path_2d, trust_pickle=trust_pickle)
    try:
        dataset = from_videopose3d(poses, detections, cameras=cameras, fps=fps)
    except ValueError as err:
        raise LiftingFormatError(f"{path_3d} with {path_2d}: {err}") from err
    save_npz(dataset, out_path)
    return dataset
