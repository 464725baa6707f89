"""The in-memory lifting dataset: 3D poses and their 2D views, by subject and action.

Construction checks every array; the file formats (:mod:`chiral_tasks.lifting.videopose3d`,
:mod:`chiral_tasks.lifting.npz`) read into these types and write them out.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.camera import Camera


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """One (subject, action): ``positions_3d`` (T, J, 3) world metres and, per camera,
    ``positions_2d[k]`` (T, J_2d, 2) pixels (``J_2d`` joints of the 2D skeleton);
    stored as float32."""

    positions_3d: np.ndarray
    positions_2d: tuple[np.ndarray, ...]

    def __post_init__(self):
        object.__setattr__(self, "positions_3d", as_float32(self.positions_3d))
        views = tuple(as_float32(p) for p in self.positions_2d)
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
    """A lifting dataset: skeletons, frame rate and recordings by subject.

    ``skeleton`` is the 3D poses' skeleton and ``skeleton_2d`` the 2D views' (e.g.
    COCO-17 detections of Human3.6M-17 poses); ``None`` means the same as ``skeleton``
    and is replaced by it, so ``skeleton_2d`` is always a :class:`Skeleton`.

    Construction checks every array (shapes, finite values, matching frame and
    joint counts, one camera count per subject) and raises ``ValueError`` naming
    the subject, action and camera at fault.
    """

    name: str
    fps: float
    skeleton: Skeleton
    subjects: dict[str, SubjectData]
    skeleton_2d: Skeleton | None = None

    def __post_init__(self):
        if self.skeleton_2d is None:
            object.__setattr__(self, "skeleton_2d", self.skeleton)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"dataset name must be a non-empty string, got {self.name!r}")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ValueError(f"fps must be positive and finite, got {self.fps!r}")
        if not self.subjects:
            raise ValueError("dataset has no subjects")
        for subject, data in self.subjects.items():
            check_subject(subject, data, self.skeleton.num_joints, self.skeleton_2d.num_joints)


def as_float32(x) -> np.ndarray:
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


def check_subject(subject: str, data: SubjectData, joints_3d: int, joints_2d: int) -> None:
    """Check one subject's recordings and cameras: ``positions_3d`` (T, joints_3d, 3) and
    ``positions_2d[k]`` (T, joints_2d, 2); ``ValueError`` names what is wrong."""
    if not data.recordings:
        raise ValueError(f"subject {subject!r} has no actions")
    num_cameras = data.num_cameras
    for action, rec in data.recordings.items():
        where = f"subject {subject!r}, action {action!r}"
        _check_positions(rec.positions_3d, joints_3d, 3, f"{where}, positions_3d")
        if len(rec.positions_2d) != num_cameras:
            raise ValueError(
                f"{where}: {len(rec.positions_2d)} cameras, but the subject's other actions "
                f"have {num_cameras}"
            )
        if num_cameras == 0:
            raise ValueError(f"{where}: no 2D positions (no cameras)")
        for k, view in enumerate(rec.positions_2d):
            _check_positions(view, joints_2d, 2, f"{where}, camera {k}, positions_2d")
            if len(view) != rec.num_frames:
                raise ValueError(
                    f"{where}, camera {k}: {len(view)} frames of 2D positions for "
                    f"{rec.num_frames} frames of 3D positions"
                )
    if data.cameras is not None and len(data.cameras) != num_cameras:
        raise ValueError(
            f"subject {subject!r}: {len(data.cameras)} cameras for {num_cameras} 2D views"
        )
