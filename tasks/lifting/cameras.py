"""Camera parameters as JSON: the one file a user supplies next to VideoPose3D's ``.npz`` pair.

VideoPose3D's ``.npz`` files carry no camera parameters (its code hard-codes
Human3.6M's), and this project does not distribute them. Write them once in this
schema and pass the file to ``chiral lifting convert --cameras``::

    {
      "S1": [                                  # subject -> one record per camera,
        {                                      # in the order of the 2D views
          "id": "54138969",
          "res_w": 1000, "res_h": 1002,        # image size, pixels
          "center": [512.54, 515.45],          # principal point, pixels
          "focal_length": [1145.05, 1143.78],  # pixels
          "radial": [-0.207, 0.248, -0.003],   # k1 k2 k3
          "tangential": [-0.0009, -0.0013],    # p1 p2
          "orientation": [0.1407, -0.8123, 0.5568, -0.1127],  # camera -> world, (w, x, y, z)
          "translation": [1.8411, 4.9554, 1.5637]              # camera centre, metres
        },
        ...
      ],
      ...
    }

Human3.6M's published extrinsics give the translation in millimetres: divide by
1000. Every field of :class:`chiral_tasks.common.camera.Camera` is required.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chiral_tasks.common.camera import Camera
from chiral_tasks.common.files import atomic_path


def _record(camera: Camera) -> dict:
    return {k: v.tolist() for k, v in camera.to_dict().items()}


def save_cameras_json(cameras: Mapping[str, Sequence[Camera]], path: str | os.PathLike) -> None:
    """Write ``cameras[subject][k]`` in the schema of the module docstring."""
    data = {subject: [_record(c) for c in cams] for subject, cams in cameras.items()}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def _numbers(name: str, value: Any) -> np.ndarray:
    """A camera field of JSON numbers or a numeric array, finite in float32."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        flat = value if isinstance(value, list) else [value]
        if not all(type(v) in (int, float) for v in flat):  # bool and str are not numbers
            raise ValueError(f"{name} must hold numbers, got {value!r}")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except OverflowError as err:  # an integer beyond float64
            raise ValueError(f"{name}: value out of range ({err})") from err
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(arr.astype(np.float32))
    if not np.all(finite):
        raise ValueError(f"{name} holds NaN, infinite or beyond-float32 values: {arr}")
    return arr


def camera_from_record(record: Mapping[str, Any]) -> Camera:
    """A :class:`Camera` from a file's record of JSON values or arrays (``to_dict``'s keys).

    Stricter than ``Camera.from_dict``, which converts what it is given: ``id``
    must be a string, ``res_w`` and ``res_h`` whole numbers, and the other fields
    numbers (not booleans or strings) that stay finite in float32, the dtype the
    camera's outputs are used in. Raises ``KeyError`` for a missing field and
    ``ValueError`` naming the field otherwise (the caller adds the file).
    """
    checked = dict(record)
    if "id" in record:
        cam_id = record["id"]
        if isinstance(cam_id, np.ndarray) and cam_id.shape == () and cam_id.dtype.kind == "U":
            cam_id = str(cam_id)
        if not isinstance(cam_id, str):
            raise ValueError(f"id must be a string, got {cam_id!r}")
        checked["id"] = cam_id
    for name in ("res_w", "res_h"):
        if name in record:
            value = _numbers(name, record[name])
            if value.shape != () or value != np.floor(value):
                raise ValueError(f"{name} must be a whole number of pixels, got {value}")
            checked[name] = value
    for name in ("center", "focal_length", "radial", "tangential", "orientation", "translation"):
        if name in record:
            checked[name] = _numbers(name, record[name])
    return Camera.from_dict(checked)


def load_cameras_json(path: str | os.PathLike) -> dict[str, tuple[Camera, ...]]:
    """Read ``subject -> (Camera, ...)`` from a JSON file (schema in the module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    subject, camera and field for anything malformed (see :func:`camera_from_record`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such camera file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a JSON object mapping subjects to camera lists")
    out = {}
    for subject, records in data.items():
        if not isinstance(records, list) or not records:
            raise ValueError(f"{path}: subject {subject!r} must map to a non-empty list")
        cameras = []
        for k, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValueError(f"{path}: subject {subject!r}, camera {k}: expected an object")
            try:
                cameras.append(camera_from_record(record))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}: subject {subject!r}, camera {k}: {err}") from err
        out[subject] = tuple(cameras)
    return out
