"""Our pickle-free lifting format (version 2): one ``.npz`` of plain arrays.

Written by :func:`save_npz` and read by :func:`load_npz` with
``np.load(allow_pickle=False)``: the archive holds plain numeric and string arrays
only, so reading it runs no code from the file. Its entries:

``meta_json``
    0-d unicode array: a JSON object with

    - ``"format"``: ``"chiral_jax.lifting"``; ``"version"``: ``2``;
    - ``"dataset"``: the dataset name (e.g. ``"h36m"``); ``"fps"``: frame rate;
    - ``"skeleton"``: the 3D poses' skeleton, ``{"name", "joint_names", "parents",
      "left", "right"}`` with ``parents[j] = -1`` for the root and ``left[i]`` the
      mirror partner of ``right[i]``; any joint set is allowed;
    - ``"skeleton_2d"``: the 2D views' skeleton, in the same form (e.g. COCO-17
      detections of Human3.6M-17 poses); it may equal ``"skeleton"``;
    - ``"subjects"``: ``{subject: {"num_cameras": C, "camera_ids": [id, ...] or
      null, "actions": {action: T}}}``, ``T`` the number of frames. Order is kept.
      ``camera_ids`` is null when the file carries no camera parameters.

``{subject}/{action}/positions_3d``
    ``(T, J, 3)`` float32: world coordinates, metres (as in VideoPose3D; the
    cameras below map them to each camera's frame).
``{subject}/{action}/{k}/positions_2d``
    ``(T, J_2d, 2)`` float32: the 2D joints (of ``skeleton_2d``) seen by camera ``k``
    (0-based), pixels, origin at the top-left image corner.
``{subject}/cameras/{k}/{field}``
    only when ``camera_ids`` is not null, for ``k < C``: the fields of
    :class:`chiral_tasks.common.camera.Camera` (its ``to_dict``): ``id`` (0-d string),
    ``res_w``, ``res_h`` (0-d int, pixels), ``center`` (2) and ``focal_length`` (2)
    in pixels, ``radial`` (3) and ``tangential`` (2) distortion, ``orientation`` (4)
    the camera-to-world quaternion ``(w, x, y, z)``, ``translation`` (3) the camera
    position in metres. Cameras belong to a subject (extrinsics change between
    Human3.6M subjects).

3D joints follow ``skeleton``'s order and 2D joints ``skeleton_2d``'s; all values
are finite. Names may contain ``/`` (HumanEva's ``"Train/S1"``): entries are found
from the metadata, never by splitting keys.

Version 1 files (no ``"skeleton_2d"``: the 2D views use ``"skeleton"``) are still
read; a version this reader does not know, such as a newer one, is refused.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.camera import Camera
from chiral_tasks.common.files import atomic_path
from chiral_tasks.lifting.archive import LiftingFormatError, PathLike, read_npz, require_keys
from chiral_tasks.lifting.cameras import camera_from_record
from chiral_tasks.lifting.dataset import LiftingDataset, Recording, SubjectData, check_subject

FORMAT_NAME = "chiral_jax.lifting"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
"""The versions :func:`load_npz` reads; :func:`save_npz` writes :data:`FORMAT_VERSION`."""


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
        "skeleton_2d": _skeleton_json(dataset.skeleton_2d),
        "subjects": subjects_meta,
    }
    arrays["meta_json"] = np.array(json.dumps(meta))
    # A file object: np.savez would append ".npz" to the name.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _parse_meta(arrays: Mapping[str, np.ndarray], path: PathLike) -> dict[str, Any]:
    """The checked metadata, in the current version's form (a version 1 file's
    ``"skeleton_2d"`` is its ``"skeleton"``)."""
    require_keys(arrays, ["meta_json"], path)
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
    require_keys(meta, ["format", "version"], path)
    if meta["format"] != FORMAT_NAME:
        raise LiftingFormatError(f"{path}: format {meta['format']!r}, expected {FORMAT_NAME!r}")
    version = meta["version"]
    if not (_is_int(version) and version in READ_VERSIONS):
        newer = _is_int(version) and version > FORMAT_VERSION
        raise LiftingFormatError(
            f"{path}: {FORMAT_NAME!r} version {version!r}; this reader knows versions "
            f"{list(READ_VERSIONS)}" + ("; a newer chiral_jax reads newer files" if newer else "")
        )
    if version == 1:  # one skeleton for the 3D poses and the 2D views
        meta = {**meta, "skeleton_2d": meta.get("skeleton")}
    require_keys(meta, ["dataset", "fps", "skeleton", "skeleton_2d", "subjects"], path)
    if not isinstance(meta["dataset"], str):
        raise LiftingFormatError(f"{path}: 'dataset' must be a string, got {meta['dataset']!r}")
    if type(meta["fps"]) not in (int, float):  # bool and str are not frame rates
        raise LiftingFormatError(f"{path}: 'fps' must be a number, got {meta['fps']!r}")
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_skeleton(meta: dict[str, Any], entry: str, path: PathLike) -> Skeleton:
    """The skeleton under ``meta[entry]`` (``"skeleton"`` or ``"skeleton_2d"``), checked."""
    spec = meta[entry]
    fields = ["name", "joint_names", "parents", "left", "right"]
    if not isinstance(spec, dict):
        raise LiftingFormatError(f"{path}: {entry} metadata must be an object, got {spec!r}")
    require_keys(spec, fields, path)
    names = spec["joint_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LiftingFormatError(f"{path}: {entry} joint_names must be a list of strings")
    for key in ("parents", "left", "right"):
        if not isinstance(spec[key], list) or not all(_is_int(j) for j in spec[key]):
            raise LiftingFormatError(
                f"{path}: {entry} {key} must be a list of joint indices, got {spec[key]!r}"
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
        raise LiftingFormatError(f"{path}: bad {entry} metadata ({err})") from err


def _parse_subject(
    subject: str,
    spec: Any,
    arrays: Mapping[str, np.ndarray],
    joints: tuple[int, int],
    path: PathLike,
) -> tuple[SubjectData, list[str]]:
    """One subject's data, checked (``joints``: the 3D and 2D joint counts), and the
    archive keys it used."""
    where = f"{path}: subject {subject!r}"
    if not isinstance(spec, dict):
        raise LiftingFormatError(f"{where}: metadata must be an object, got {spec!r}")
    require_keys(spec, ["num_cameras", "camera_ids", "actions"], path)
    num_cameras, camera_ids, actions = spec["num_cameras"], spec["camera_ids"], spec["actions"]
    if not _is_int(num_cameras) or num_cameras < 1:
        raise LiftingFormatError(f"{where}: num_cameras must be a positive integer")
    if not isinstance(actions, dict) or not all(_is_int(t) for t in actions.values()):
        raise LiftingFormatError(f"{where}: actions must map action names to frame counts")
    used: list[str] = []

    def get(key: str) -> np.ndarray:
        require_keys(arrays, [key], path)
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
        check_subject(subject, data, *joints)
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
    arrays = read_npz(path, allow_pickle=False)
    meta = _parse_meta(arrays, path)
    skeleton = _parse_skeleton(meta, "skeleton", path)
    skeleton_2d = _parse_skeleton(meta, "skeleton_2d", path)
    joints = (skeleton.num_joints, skeleton_2d.num_joints)
    if not isinstance(meta["subjects"], dict):
        raise LiftingFormatError(f"{path}: 'subjects' metadata must be an object")
    subjects = {}
    used = {"meta_json"}
    for subject, spec in meta["subjects"].items():
        subjects[subject], keys = _parse_subject(subject, spec, arrays, joints, path)
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
        return LiftingDataset(
            str(meta["dataset"]), float(meta["fps"]), skeleton, subjects, skeleton_2d
        )
    except (TypeError, ValueError) as err:
        raise LiftingFormatError(f"{path}: {err}") from err
