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

from chiral_tasks.common.camera import Camera


def _record(camera: Camera) -> dict:
    return {k: v.tolist() for k, v in camera.to_dict().items()}


def save_cameras_json(cameras: Mapping[str, Sequence[Camera]], path: str | os.PathLike) -> None:
    """Write ``cameras[subject][k]`` in the schema of the module docstring."""
    data = {subject: [_record(c) for c in cams] for subject, cams in cameras.items()}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def load_cameras_json(path: str | os.PathLike) -> dict[str, tuple[Camera, ...]]:
    """Read ``subject -> (Camera, ...)`` from a JSON file (schema in the module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    subject, camera and field for anything malformed.
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
                cameras.append(Camera.from_dict(record))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}: subject {subject!r}, camera {k}: {err}") from err
        out[subject] = tuple(cameras)
    return out
