"""The skeletons of the datasets the tasks read, with their mirror pairs.

Joint orders follow each dataset's files. ``left[i]`` and ``right[i]`` are mirror
partners (paired by body part, not by list position in the dataset's code: the
MPII ``keypoints_symmetry`` lists of VideoPose3D, for instance, list the right
leg from the ankle up).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

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

    def hidden_layout(self, channels: int, negated_fraction: float) -> ChiralLayout:
        """The chiral layout of ``channels`` hidden features: ``channels // J`` dims per joint.

        It keeps this skeleton's joint structure (``len(left)`` pairs, ``len(centre)``
        centre joints) in the canonical order ``[left, right, centre]`` with the
        ``round(dims * negated_fraction)`` negated dims first: hidden channels have no
        fixed joint order, and this one assembles kernels without a gather (the
        paper: 1020 channels = 17 joints x 60 dims, 20 negated).

        Raises:
          ValueError: unless ``channels`` is a positive multiple of ``J``.

        >>> layout = H36M_17.hidden_layout(1020, 1 / 3)
        >>> layout.size, len(layout.negated)
        (1020, 20)
        """
        joints = self.num_joints
        if channels < joints or channels % joints:
            raise ValueError(
                f"channels={channels} must be a positive multiple of the {joints} joints of "
                f"skeleton {self.name!r}: the chiral hidden layout gives every joint "
                f"channels // J dims (e.g. channels={joints * max(1, round(channels / joints))})"
            )
        return ChiralLayout.hidden(
            pairs=len(self.left),
            centre=len(self.centre),
            dims=channels // joints,
            negated=float(negated_fraction),
        )

    # -- JSON ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """This skeleton as JSON-ready builtins; :meth:`from_dict` inverts it exactly.

        Keys: ``name``, ``joint_names``, ``parents``, ``left``, ``right`` and, for
        readers, the derived ``centre``.

        >>> Skeleton.from_dict(PENN_ACTION_13.to_dict()) == PENN_ACTION_13
        True
        """
        return {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "parents": list(self.parents),
            "left": list(self.left),
            "right": list(self.right),
            "centre": list(self.centre),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Skeleton:
        """The skeleton of a :meth:`to_dict` dict (e.g. read from JSON).

        ``centre`` may be left out; when given it must list exactly the unpaired joints.

        Raises:
          ValueError: naming the field that is missing, unknown, of the wrong type, or
            inconsistent (a parent or pair index out of range, a joint in two pairs).
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a skeleton dict must be a mapping, got {type(d).__name__}")
        required = {"name", "joint_names", "parents", "left", "right"}
        missing = sorted(required - set(d))
        unknown = sorted(set(d) - required - {"centre"})
        if missing:
            raise ValueError(f"skeleton dict lacks the fields {missing}")
        if unknown:
            raise ValueError(f"skeleton dict has unknown fields {unknown}")
        if not isinstance(d["name"], str):
            raise ValueError(f"skeleton field 'name' must be a string, got {d['name']!r}")
        skeleton = cls(
            name=d["name"],
            joint_names=_field(d, "joint_names", str),
            parents=_field(d, "parents", int),
            left=_field(d, "left", int),
            right=_field(d, "right", int),
        )
        if "centre" in d and _field(d, "centre", int) != skeleton.centre:
            raise ValueError(
                f"skeleton field 'centre' is {list(d['centre'])}, but the joints in no pair "
                f"are {list(skeleton.centre)}"
            )
        return skeleton


def _field(d: Mapping, key: str, kind: type) -> tuple:
    """``d[key]`` as a tuple, checked to be a list of ``kind`` (bool is no int here)."""
    values = d[key]
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, kind) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(
            f"skeleton field {key!r} must be a list of {kind.__name__}, got {values!r}"
        )
    return tuple(values)


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
