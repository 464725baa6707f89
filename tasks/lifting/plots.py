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
    truth: str | None = None,
) -> None:
    """Draw one frame: the 2D input (J_2d, 2) and each named 3D pose (J, 3), into a PNG.

    ``skeleton`` draws the 3D poses and ``skeleton_2d`` the 2D input (None: ``skeleton``).
    Limbs are coloured by side (:data:`SIDE_COLOURS`, with a key). 3D poses are
    camera-frame metres (x right, y down, z forward), drawn root-centred with y up.
    With ``truth`` (the name of one of ``poses_3d``), every other panel's title gives
    its error against it: the frame's MPJPE in mm.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(3.6 * (1 + len(poses_3d)), 4.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1 + len(poses_3d), 1)
    for p, j, colour in bones(skeleton if skeleton_2d is None else skeleton_2d):
        axes.plot(*pose_2d[[p, j]].T, color=colour, lw=2)
    axes.set_title("2D input", fontsize=10)
    axes.set_xlabel("x (normalised)")
    axes.set_ylabel("y (normalised)")
    axes.set_aspect("equal")
    axes.invert_yaxis()
    centred = {name: pose - pose[:1] for name, pose in poses_3d.items()}
    limit = max(np.abs(pose).max() for pose in centred.values())
    for i, (name, pose) in enumerate(centred.items(), start=2):
        ax = figure.add_subplot(1, 1 + len(poses_3d), i, projection="3d")
        for p, j, colour in bones(skeleton):
            ax.plot(pose[[p, j], 0], pose[[p, j], 2], -pose[[p, j], 1], color=colour, lw=2)
        label = name
        if truth is not None and name != truth:
            error = 1000 * np.linalg.norm(poses_3d[name] - poses_3d[truth], axis=-1).mean()
            label = f"{name}\nMPJPE {error:.1f} mm"
        ax.set_title(label, fontsize=10)
        for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            set_lim(-limit, limit)
        ax.set_xlabel("x (m)", fontsize=8)
        ax.set_ylabel("depth (m)", fontsize=8)
        ax.set_zlabel("up (m)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.view_init(elev=10, azim=-80)
    key = [Line2D([], [], color=c, lw=2, label=side) for side, c in SIDE_COLOURS.items()]
    figure.legend(handles=key, loc="lower center", ncol=3, fontsize=9, frameon=False)
    if title:
        figure.suptitle(title)
    save_png(figure, path)
