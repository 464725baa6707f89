"""An animation of a lifted clip: the 2D input beside the 3D poses, frame by frame.

Written with matplotlib's Agg backend: a GIF (Pillow, always installed with the tasks'
extras) or an MP4 where matplotlib finds an ``ffmpeg`` writer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.files import atomic_path
from chiral_tasks.lifting.plots import SIDE_COLOURS, bones

FORMATS = ("gif", "mp4")


def check_writer(fmt: str) -> None:
    """Raise a one-line ``RuntimeError`` unless animations of format ``fmt`` can be written."""
    if fmt not in FORMATS:
        raise ValueError(f"animation format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "mp4":
        from matplotlib.animation import writers

        if not writers.is_available("ffmpeg"):
            raise RuntimeError(
                "an MP4 needs ffmpeg, which matplotlib does not find here; install it "
                "(e.g. apt-get install ffmpeg) or write a GIF"
            )


def animate_lifting(
    path: str | os.PathLike,
    keypoints: np.ndarray,
    skeleton_2d: Skeleton,
    poses_3d: np.ndarray,
    skeleton_3d: Skeleton,
    *,
    title: str,
    fps: float,
    interpolated: Sequence[int] = (),
    progress: bool = False,
) -> None:
    """Write an animation of a lifted clip to ``path`` (``.gif`` or ``.mp4``).

    Args:
      keypoints: ``(T, J_2d, 2)`` the 2D input in pixels (image axes: y down).
      skeleton_2d, skeleton_3d: the skeletons of the input and of the 3D poses.
      poses_3d: ``(T, J_3d, 3)`` camera-frame poses in metres (x right, y down, z
        forward), drawn with y up and the root at the centre.
      title: the first line of every frame's title (e.g. the model).
      fps: frames per second of the animation.
      interpolated: frames without a detected person (their 2D input was
        interpolated); their title says so.
      progress: show a progress bar over the rendered frames (on a terminal).
    """
    from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from chiral_tasks.common.progress import progress_bar

    fmt = os.fspath(path).rpartition(".")[2]
    check_writer(fmt)
    frames = len(poses_3d)
    gaps = set(int(t) for t in interpolated)
    figure = Figure(figsize=(8, 4.4), dpi=72)
    FigureCanvasAgg(figure)
    ax2d = figure.add_subplot(1, 2, 1)
    ax3d = figure.add_subplot(1, 2, 2, projection="3d")
    low, high = keypoints.min(axis=(0, 1)), keypoints.max(axis=(0, 1))
    margin = 0.05 * float((high - low).max())
    centred = poses_3d - poses_3d[:, :1]
    limit = float(np.abs(centred).max()) * 1.05
    lines_2d = [ax2d.plot([], [], color=c, lw=2)[0] for _, _, c in bones(skeleton_2d)]
    lines_3d = [ax3d.plot([], [], [], color=c, lw=2)[0] for _, _, c in bones(skeleton_3d)]
    ax2d.set_xlim(low[0] - margin, high[0] + margin)
    ax2d.set_ylim(high[1] + margin, low[1] - margin)  # image coordinates: y points down
    ax2d.set_aspect("equal")
    ax2d.set_xlabel("x (pixels)")
    ax2d.set_ylabel("y (pixels)")
    ax2d.set_title("2D input")
    for set_lim in (ax3d.set_xlim, ax3d.set_ylim, ax3d.set_zlim):
        set_lim(-limit, limit)
    ax3d.set_xlabel("x (m)")
    ax3d.set_ylabel("depth (m)")
    ax3d.set_zlabel("up (m)")
    ax3d.set_title("3D, camera frame, root-centred")
    ax3d.view_init(elev=15, azim=-70)
    key = [Line2D([], [], color=c, lw=2, label=side) for side, c in SIDE_COLOURS.items()]
    figure.legend(handles=key, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.subplots_adjust(top=0.8, bottom=0.15, wspace=0.3)

    def draw(t: int):
        for line, (p, j, _) in zip(lines_2d, bones(skeleton_2d), strict=True):
            line.set_data(keypoints[t, [p, j], 0], keypoints[t, [p, j], 1])
        for line, (p, j, _) in zip(lines_3d, bones(skeleton_3d), strict=True):
            pose = centred[t, [p, j]]
            line.set_data_3d(pose[:, 0], pose[:, 2], -pose[:, 1])
        note = " (no person detected: interpolated)" if t in gaps else ""
        figure.suptitle(f"{title}\nframe {t + 1}/{frames}{note}", fontsize=9)
        return lines_2d + lines_3d

    animation = FuncAnimation(figure, draw, frames=frames, blit=False)
    writer = PillowWriter(fps=fps) if fmt == "gif" else FFMpegWriter(fps=fps)
    with progress_bar(total=frames, desc="animation", unit="frame", enabled=progress) as bar:
        with atomic_path(path, suffix=f".tmp.{fmt}") as tmp:
            animation.save(
                os.fspath(tmp), writer=writer, progress_callback=lambda i, n: bar.update(1)
            )
