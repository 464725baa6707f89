"""The skeletons of the datasets the tasks read, with their mirror pairs.

Joint orders follow each dataset's files. ``left[i]`` and ``right[i]`` are mirror
partners (paired by body part, not by list position in the dataset's code: the
MPII ``keypoints_symmetry`` lists of VideoPose3D, for instance, list the right
leg from the ankle up).
"""

from __future__ import annotations

import dataclasses

from chiral_jax._layout import ChiralLayout


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """Joint names, kinematic parents (-1 for the root) and mirror pairs."""

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]

    def __post_init__(self):
        n = len(self.joint_names)
        if len(self.parents) != n:
            raise ValueError(
                f"skeleton {self.name!r}: {len(self.parents)} parents for {n} joints"
            )
        for j, p in enumerate(self.parents):
            if not -1 <= p < n or p == j:
                raise ValueError(f"skeleton {self.name!r}: joint {j} has invalid parent {p}")
        # Validates the pairing (lengths, overlaps, coverage).
        self.layout(dims=1)

    @property
    def num_joints(self) -> int:
        """Number of joints."""
        return len(self.joint_names)

    @property
    def centre(self) -> tuple[int, ...]:
        """The joints without a mirror partner, in index order."""
        paired = set(self.left) | set(self.right)
        return tuple(j for j in range(self.num_joints) if j not in paired)

    def layout(self, dims: int, negated: tuple[int, ...] = (0,)) -> ChiralLayout:
        """The layout of this skeleton with ``dims`` per joint (x = dim 0 negated by default)."""
        negated = tuple(d for d in negated if d < dims)
        return ChiralLayout(self.left, self.right, self.centre, dims, negated)


H36M_17 = Skeleton(
    name="h36m",
    joint_names=(
        "hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "spine", "thorax", "neck", "head", "left_shoulder", "left_elbow",
        "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
)

HUMANEVA_15 = Skeleton(
    name="humaneva15",
    joint_names=(
        "pelvis", "thorax", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder",
        "right_elbow", "right_wrist", "left_hip", "left_knee", "left_ankle", "right_hip",
        "right_knee", "right_ankle", "head",
    ),
    parents=(-1, 0, 1, 2, 3, 1, 5, 6, 0, 8, 9, 0, 11, 12, 1),
    left=(2, 3, 4, 8, 9, 10),
    right=(5, 6, 7, 11, 12, 13),
)

PENN_ACTION_13 = Skeleton(
    name="penn_action",
    joint_names=(
        "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
        "left_ankle", "right_ankle",
    ),
    parents=(-1, 0, 0, 1, 2, 3, 4, 1, 2, 7, 8, 9, 10),
    left=(1, 3, 5, 7, 9, 11),
    right=(2, 4, 6, 8, 10, 12),
)

OPENPOSE_18 = Skeleton(
    name="openpose18",
    joint_names=(
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
        "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
        "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
    ),
    parents=(1, -1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12, 0, 0, 14, 15),
    left=(5, 6, 7, 11, 12, 13, 15, 17),
    right=(2, 3, 4, 8, 9, 10, 14, 16),
)

COCO_17 = Skeleton(
    name="coco",
    joint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    left=(1, 3, 5, 7, 9, 11, 13, 15),
    right=(2, 4, 6, 8, 10, 12, 14, 16),
)

MPII_16 = Skeleton(
    name="mpii",
    joint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow",
        "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    parents=(1, 2, 6, 6, 3, 4, -1, 6, 7, 8, 11, 12, 7, 7, 13, 14),
    left=(3, 4, 5, 13, 14, 15),
    right=(2, 1, 0, 12, 11, 10),
)

SKELETONS: dict[str, Skeleton] = {
    s.name: s for s in (H36M_17, HUMANEVA_15, PENN_ACTION_13, OPENPOSE_18, COCO_17, MPII_16)
}
