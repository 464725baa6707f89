"""Figures of the lifting task: a test pose in 2D and 3D, drawn with matplotlib's Agg backend."""

from __future__ import annotations

import os

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.results import save_png

SIDE_COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "0.3"}
"""The colour of a limb by the side of its child joint, in every lifting figure."""


def _side(skeleton: Skeleton, joint: int) -> str:
    if joint in skeleton.left:
        return "left"
    return "right" if joint in skeleton.right else "centre"


def bones(skeleton: Skeleton):
    """``(parent, child, colour)`` of every bone, coloured by the child's side."""
    return [
        (p, j, SIDE_COLOURS[_side(skeleton, j)]) for j, p in enumerate(skeleton.parents) if p >= 0
    ]


def plot_pose(
    path: str | os.PathLike,
    skeleton: Skeleton,
    pose_2d: np.ndarray,
    poses_3d: dict[str, np.ndarray],
    title: str = "",
    *,
    skeleton_2d: Skeleton | None = None,
) -> None:
    """Draw one frame: the 2D input (J_2d, 2) and each named 3D pose (J, 3), into a PNG.

    ``skeleton`` draws the 3D poses and ``skeleton_2d`` the 2D input (None: ``skeleton``).
    Left limbs are blue, right limbs red. 3D poses are camera-frame (x right, y
    down, z forward) and drawn with y up.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * (1 + len(poses_3d)), 4.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1 + len(poses_3d), 1)
    for p, j, colour in bones(skeleton if skeleton_2d is None else skeleton_2d):
        axes.plot(*pose_2d[[p, j]].T, color=colour, lw=2)
    axes.set_title("2D input")
    axes.set_aspect("equal")
    axes.invert_yaxis()
    limit = max(np.abs(pose).max() for pose in poses_3d.values())
    for i, (name, pose) in enumerate(poses_3d.items(), start=2):
        ax = figure.add_subplot(1, 1 + len(poses_3d), i, projection="3d")
        for p, j, colour in bones(skeleton):
            ax.plot(pose[[p, j], 0], pose[[p, j], 2], -pose[[p, j], 1], color=colour, lw=2)
        ax.set_title(name)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_zlim(-limit, limit)
        ax.view_init(elev=10, azim=-80)
    if title:
        figure.suptitle(title)
    save_png(figure, path)
