"""Lifting data files: VideoPose3D's pickled ``.npz`` files and our pickle-free format.

VideoPose3D's files
-------------------
``data_3d_<ds>.npz`` holds ``positions_3d``: a pickled dict subject -> action ->
``(T, J, 3)`` float32 world positions in metres (Human3.6M: 32 mocap joints,
reduced here to the 17 of :data:`chiral_jax.skeletons.H36M_17`; HumanEva: 15).
``data_2d_<ds>_<detector>.npz`` holds ``positions_2d``: subject -> action -> a list
with one ``(T, J, 2)`` float32 pixel array per camera, and ``metadata``: a dict
with ``layout_name``, ``num_joints`` and ``keypoints_symmetry = [left, right]``.
Both store Python pickles, and unpickling runs code chosen by whoever wrote the
file, so :func:`load_videopose3d_3d`, :func:`load_videopose3d_2d` and
:func:`convert_videopose3d` refuse them unless called with ``trust_pickle=True``.
Convert a trusted file once and share the result instead.

Our format (version 1)
----------------------
One ``.npz`` archive, written by :func:`save_npz` and read by :func:`load_npz`
with ``np.load(allow_pickle=False)``: it holds plain numeric and string arrays
only, so reading it runs no code from the file. Its entries:

``meta_json``
    0-d unicode array: a JSON object with

    - ``"format"``: ``"chiral_jax.lifting"``; ``"version"``: ``1``;
    - ``"dataset"``: the dataset name (e.g. ``"h36m"``); ``"fps"``: frame rate;
    - ``"skeleton"``: ``{"name", "joint_names", "parents", "left", "right"}`` with
      ``parents[j] = -1`` for the root and ``left[i]`` the mirror partner of
      ``right[i]``; any joint set is allowed;
    - ``"subjects"``: ``{subject: {"num_cameras": C, "camera_ids": [id, ...] or
      null, "actions": {action: T}}}``, ``T`` the number of frames. Order is kept.
      ``camera_ids`` is null when the file carries no camera parameters.

``{subject}/{action}/positions_3d``
    ``(T, J, 3)`` float32: world coordinates, metres (as in VideoPose3D; the
    cameras below map them to each camera's frame).
``{subject}/{action}/{k}/positions_2d``
    ``(T, J, 2)`` float32: the 2D joints seen by camera ``k`` (0-based), pixels,
    origin at the top-left image corner.
``{subject}/cameras/{k}/{field}``
    only when ``camera_ids`` is not null, for ``k < C``: the fields of
    :class:`chiral_tasks.common.camera.Camera` (its ``to_dict``): ``id`` (0-d string),
    ``res_w``, ``res_h`` (0-d int, pixels), ``center`` (2) and ``focal_length`` (2)
    in pixels, ``radial`` (3) and ``tangential`` (2) distortion, ``orientation`` (4)
    the camera-to-world quaternion ``(w, x, y, z)``, ``translation`` (3) the camera
    position in metres. Cameras belong to a subject (extrinsics change between
    Human3.6M subjects).

Joints follow the skeleton's order in every array; all values are finite. Names
may contain ``/`` (HumanEva's ``"Train/S1"``): entries are found from the
metadata, never by splitting keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chiral_jax.skeletons import H36M_17, HUMANEVA_15, SKELETONS, Skeleton
from chiral_tasks.common.camera import Camera, normalize_screen_coordinates
from chiral_tasks.common.files import atomic_path
from chiral_tasks.lifting.cameras import camera_from_record

FORMAT_NAME = "chiral_jax.lifting"
FORMAT_VERSION = 1

H36M_KEPT_JOINTS = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
"""The 17 of Human3.6M's 32 mocap joints kept by VideoPose3D, in :data:`H36M_17` order."""

DATASET_FPS = {H36M_17.name: 50.0, HUMANEVA_15.name: 60.0}
CORRUPT_SEQUENCES = {H36M_17.name: frozenset({("S11", "Directions")})}
"""(subject, action) pairs dropped on loading: S11 "Directions" has a corrupt video."""

PathLike = str | os.PathLike


class LiftingFormatError(ValueError):
    """A lifting data file is malformed; the message names the file and the problem."""


class UntrustedPickleError(ValueError):
    """Refusal to unpickle a file without ``trust_pickle=True``."""


# -- the in-memory dataset ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """One (subject, action): ``positions_3d`` (T, J, 3) world metres and, per camera,
    ``positions_2d[k]`` (T, J, 2) pixels; stored as float32."""

    positions_3d: np.ndarray
    positions_2d: tuple[np.ndarray, ...]

    def __post_init__(self):
        object.__setattr__(self, "positions_3d", _as_float32(self.positions_3d))
        views = tuple(_as_float32(p) for p in self.positions_2d)
        object.__setattr__(self, "positions_2d", views)

    @property
    def num_frames(self) -> int:
        return self.positions_3d.shape[0]


@dataclasses.dataclass(frozen=True, eq=False)
class SubjectData:
    """The recordings of one subject by action, and its cameras (None if uncalibrated).

    ``cameras[k]`` filmed ``positions_2d[k]`` of every recording.
    """

    recordings: dict[str, Recording]
    cameras: tuple[Camera, ...] | None = None

    @property
    def num_cameras(self) -> int:
        return len(next(iter(self.recordings.values())).positions_2d)


@dataclasses.dataclass(frozen=True, eq=False)
class LiftingDataset:
    """A lifting dataset: skeleton, frame rate and recordings by subject.

    Construction checks every array (shapes, finite values, matching frame and
    joint counts, one camera count per subject) and raises ``ValueError`` naming
    the subject, action and camera at fault.
    """

    name: str
    fps: float
    skeleton: Skeleton
    subjects: dict[str, SubjectData]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"dataset name must be a non-empty string, got {self.name!r}")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ValueError(f"fps must be positive and finite, got {self.fps!r}")
        if not self.subjects:
            raise ValueError("dataset has no subjects")
        for subject, data in self.subjects.items():
            _check_subject(subject, data, self.skeleton.num_joints)


def _as_float32(x) -> np.ndarray:
    """Numbers as float32; anything else is left for the checks to reject."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        return x
    with np.errstate(over="ignore"):  # values past float32's range become inf: checked after
        return x.astype(np.float32, copy=False)


def _check_positions(x: np.ndarray, num_joints: int, dims: int, where: str) -> None:
    if x.dtype != np.float32:
        raise ValueError(f"{where}: expected numbers, got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[1:] != (num_joints, dims) or x.shape[0] == 0:
        raise ValueError(f"{where}: expected shape (T>0, {num_joints}, {dims}), got {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        frame = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{where}: {int(bad.sum())} NaN/inf values (first in frame {frame})")


def _check_subject(subject: str, data: SubjectData, num_joints: int) -> None:
    if not data.recordings:
        raise ValueError(f"subject {subject!r} has no actions")
    num_cameras = data.num_cameras
    for action, rec in data.recordings.items():
        where = f"subject {subject!r}, action {action!r}"
        _check_positions(rec.positions_3d, num_joints, 3, f"{where}, positions_3d")
        if len(rec.positions_2d) != num_cameras:
            raise ValueError(
                f"{where}: {len(rec.positions_2d)} cameras, but the subject's other actions "
                f"have {num_cameras}"
            )
        if num_cameras == 0:
            raise ValueError(f"{where}: no 2D positions (no cameras)")
        for k, view in enumerate(rec.positions_2d):
            _check_positions(view, num_joints, 2, f"{where}, camera {k}, positions_2d")
            if len(view) != rec.num_frames:
                raise ValueError(
                    f"{where}, camera {k}: {len(view)} frames of 2D positions for "
                    f"{rec.num_frames} frames of 3D positions"
                )
    if data.cameras is not None and len(data.cameras) != num_cameras:
        raise ValueError(
            f"subject {subject!r}: {len(data.cameras)} cameras for {num_cameras} 2D views"
        )


# -- reading archives --------------------------------------------------------------------


def _read_npz(path: PathLike, *, allow_pickle: bool) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read eagerly; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise LiftingFormatError(
            f"{path}: not an .npz archive (no zip directory; truncated or another format?)"
        )
    try:
        with np.load(path, allow_pickle=allow_pickle) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, pickle.UnpicklingError) as err:
        raise LiftingFormatError(f"{path}: corrupt .npz archive ({err})") from err
    except ValueError as err:
        raise LiftingFormatError(f"{path}: unreadable array in the archive ({err})") from err


def _require_keys(arrays: Mapping[str, Any], keys: Sequence[str], path: PathLike) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise LiftingFormatError(f"{path}: missing keys {missing} (found {sorted(arrays)})")


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
    arrays = _read_npz(path, allow_pickle=True)
    _require_keys(arrays, keys, path)
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
    x = _as_float32(value)
    if x.dtype != np.float32:
        raise LiftingFormatError(f"{path}: {where}: expected numbers, got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[2] != dims or x.shape[0] == 0:
        raise LiftingFormatError(f"{path}: {where}: expected shape (T>0, J, {dims}), got {x.shape}")
    if not np.isfinite(x).all():
        raise LiftingFormatError(f"{path}: {where}: holds NaN or infinite values")
    return x


# -- VideoPose3D files -------------------------------------------------------------------


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
    _require_keys(metadata, ["layout_name", "num_joints", "keypoints_symmetry"], path)
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

    Every (subject, action) of ``poses`` needs detections; detections longer than
    the mocap are cut to its length (as VideoPose3D does), shorter ones are an
    error. Detections without 3D poses (e.g. HumanEva's "Unlabeled/..." subjects)
    are left out. ``cameras[subject][k]`` is the camera of view ``k``; Human3.6M's
    official parameters are not distributed with this project, so pass them here
    to get a dataset that :func:`to_camera_frames` can use. ``fps`` defaults to
    the dataset's (:data:`DATASET_FPS`).
    """
    skeleton = poses.skeleton
    if detections.skeleton.num_joints != skeleton.num_joints:
        raise ValueError(
            f"2D detections have {detections.skeleton.num_joints} joints (layout "
            f"{detections.skeleton.name!r}), 3D poses {skeleton.num_joints} ({skeleton.name!r})"
        )
    if detections.skeleton != skeleton:
        raise ValueError(
            f"2D layout {detections.skeleton.name!r} differs from the 3D skeleton "
            f"{skeleton.name!r}: this format stores one skeleton for both"
        )
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
    return LiftingDataset(skeleton.name, float(fps), skeleton, subjects)


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


# -- our format --------------------------------------------------------------------------


def _key_3d(subject: str, action: str) -> str:
    return f"{subject}/{action}/positions_3d"


def _key_2d(subject: str, action: str, k: int) -> str:
    return f"{subject}/{action}/{k}/positions_2d"


_CAMERA_FIELDS = tuple(f.name for f in dataclasses.fields(Camera))


def _camera_prefix(subject: str, k: int) -> str:
    return f"{subject}/cameras/{k}/"


def _skeleton_json(skeleton: Skeleton) -> dict[str, Any]:
    return {
        "name": skeleton.name,
        "joint_names": list(skeleton.joint_names),
        "parents": list(skeleton.parents),
        "left": list(skeleton.left),
        "right": list(skeleton.right),
    }


def save_npz(dataset: LiftingDataset, path: PathLike) -> None:
    """Write ``dataset`` to ``path`` in our pickle-free format (see module doc)."""
    arrays: dict[str, np.ndarray] = {}

    def put(key: str, value: np.ndarray) -> None:
        # Names with "/" could spell the same key twice ("A/B" + "C" vs "A" + "B/C").
        if key in arrays:
            raise ValueError(f"subject/action names make the archive key {key!r} ambiguous")
        arrays[key] = value

    subjects_meta = {}
    for subject, data in dataset.subjects.items():
        for action, rec in data.recordings.items():
            put(_key_3d(subject, action), rec.positions_3d)
            for k, view in enumerate(rec.positions_2d):
                put(_key_2d(subject, action, k), view)
        if data.cameras is not None:
            for k, camera in enumerate(data.cameras):
                for field, value in camera.to_dict().items():
                    put(_camera_prefix(subject, k) + field, value)
        subjects_meta[subject] = {
            "num_cameras": data.num_cameras,
            "camera_ids": None if data.cameras is None else [c.id for c in data.cameras],
            "actions": {a: rec.num_frames for a, rec in data.recordings.items()},
        }
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "dataset": dataset.name,
        "fps": dataset.fps,
        "skeleton": _skeleton_json(dataset.skeleton),
        "subjects": subjects_meta,
    }
    arrays["meta_json"] = np.array(json.dumps(meta))
    # A file object: np.savez would append ".npz" to the name.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _parse_meta(arrays: Mapping[str, np.ndarray], path: PathLike) -> dict[str, Any]:
    _require_keys(arrays, ["meta_json"], path)
    raw = arrays["meta_json"]
    if raw.shape != () or raw.dtype.kind not in "US":
        raise LiftingFormatError(
            f"{path}: meta_json must be a 0-d string array, got dtype {raw.dtype}, "
            f"shape {raw.shape}"
        )
    text = raw.item()
    try:
        meta = json.loads(text.decode() if isinstance(text, bytes) else text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LiftingFormatError(f"{path}: meta_json is not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise LiftingFormatError(f"{path}: meta_json must be a JSON object")
    _require_keys(meta, ["format", "version", "dataset", "fps", "skeleton", "subjects"], path)
    if meta["format"] != FORMAT_NAME or meta["version"] != FORMAT_VERSION:
        raise LiftingFormatError(
            f"{path}: format {meta['format']!r} version {meta['version']!r}; this reader "
            f"knows {FORMAT_NAME!r} version {FORMAT_VERSION}"
        )
    if not isinstance(meta["dataset"], str):
        raise LiftingFormatError(f"{path}: 'dataset' must be a string, got {meta['dataset']!r}")
    if type(meta["fps"]) not in (int, float):  # bool and str are not frame rates
        raise LiftingFormatError(f"{path}: 'fps' must be a number, got {meta['fps']!r}")
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_skeleton(spec: Any, path: PathLike) -> Skeleton:
    fields = ["name", "joint_names", "parents", "left", "right"]
    if not isinstance(spec, dict):
        raise LiftingFormatError(f"{path}: skeleton metadata must be an object, got {spec!r}")
    _require_keys(spec, fields, path)
    names = spec["joint_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LiftingFormatError(f"{path}: skeleton joint_names must be a list of strings")
    for key in ("parents", "left", "right"):
        if not isinstance(spec[key], list) or not all(_is_int(j) for j in spec[key]):
            raise LiftingFormatError(
                f"{path}: skeleton {key} must be a list of joint indices, got {spec[key]!r}"
            )
    try:
        return Skeleton(
            name=str(spec["name"]),
            joint_names=tuple(str(n) for n in spec["joint_names"]),
            parents=tuple(spec["parents"]),
            left=tuple(spec["left"]),
            right=tuple(spec["right"]),
        )
    except (TypeError, ValueError) as err:
        raise LiftingFormatError(f"{path}: bad skeleton metadata ({err})") from err


def _parse_subject(
    subject: str, spec: Any, arrays: Mapping[str, np.ndarray], skeleton: Skeleton, path: PathLike
) -> tuple[SubjectData, list[str]]:
    """One subject's data, checked, and the archive keys it used."""
    where = f"{path}: subject {subject!r}"
    if not isinstance(spec, dict):
        raise LiftingFormatError(f"{where}: metadata must be an object, got {spec!r}")
    _require_keys(spec, ["num_cameras", "camera_ids", "actions"], path)
    num_cameras, camera_ids, actions = spec["num_cameras"], spec["camera_ids"], spec["actions"]
    if not _is_int(num_cameras) or num_cameras < 1:
        raise LiftingFormatError(f"{where}: num_cameras must be a positive integer")
    if not isinstance(actions, dict) or not all(_is_int(t) for t in actions.values()):
        raise LiftingFormatError(f"{where}: actions must map action names to frame counts")
    used: list[str] = []

    def get(key: str) -> np.ndarray:
        _require_keys(arrays, [key], path)
        used.append(key)
        return arrays[key]

    cameras = None
    if camera_ids is not None:
        if not isinstance(camera_ids, list) or len(camera_ids) != num_cameras:
            raise LiftingFormatError(
                f"{where}: camera_ids must list {num_cameras} ids, got {camera_ids!r}"
            )
        cameras = []
        for k, cam_id in enumerate(camera_ids):
            prefix = _camera_prefix(subject, k)
            record = {f: get(prefix + f) for f in _CAMERA_FIELDS if prefix + f in arrays}
            try:
                camera = camera_from_record(record)
            except (KeyError, ValueError) as err:
                raise LiftingFormatError(f"{where}, camera {k}: {err}") from err
            if camera.id != cam_id:
                raise LiftingFormatError(
                    f"{where}, camera {k}: id {camera.id!r}, metadata says {cam_id!r}"
                )
            cameras.append(camera)
        cameras = tuple(cameras)
    try:
        recordings = {
            action: Recording(
                get(_key_3d(subject, action)),
                tuple(get(_key_2d(subject, action, k)) for k in range(num_cameras)),
            )
            for action in actions
        }
        data = SubjectData(recordings, cameras)
        _check_subject(subject, data, skeleton.num_joints)
    except ValueError as err:
        raise LiftingFormatError(f"{path}: {err}") from err
    for action, frames in actions.items():
        if recordings[action].num_frames != frames:
            raise LiftingFormatError(
                f"{where}, action {action!r}: metadata says {frames} frames, the arrays "
                f"have {recordings[action].num_frames}"
            )
    return data, used


def load_npz(path: PathLike) -> LiftingDataset:
    """Read our pickle-free format (see module doc); never unpickles anything."""
    arrays = _read_npz(path, allow_pickle=False)
    meta = _parse_meta(arrays, path)
    skeleton = _parse_skeleton(meta["skeleton"], path)
    if not isinstance(meta["subjects"], dict):
        raise LiftingFormatError(f"{path}: 'subjects' metadata must be an object")
    subjects = {}
    used = {"meta_json"}
    for subject, spec in meta["subjects"].items():
        subjects[subject], keys = _parse_subject(subject, spec, arrays, skeleton, path)
        # "A/B" + "C" and "A" + "B/C" name the same arrays: one recording read twice.
        twice = sorted(used.intersection(keys))
        if twice:
            raise LiftingFormatError(
                f"{path}: subject {subject!r} reads arrays another subject read too: {twice}"
            )
        used.update(keys)
    unexpected = sorted(set(arrays) - used)
    if unexpected:
        raise LiftingFormatError(f"{path}: arrays not described by meta_json: {unexpected}")
    try:
        return LiftingDataset(str(meta["dataset"]), float(meta["fps"]), skeleton, subjects)
    except (TypeError, ValueError) as err:
        raise LiftingFormatError(f"{path}: {err}") from err


# -- preprocessing -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class CameraView:
    """One recording seen by one camera, ready for a lifting model.

    ``positions_3d`` (T, J, 3) float32: camera frame, metres, relative to the root
    joint (the root itself is 0). ``positions_2d`` (T, J, 2) float32: normalised
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
