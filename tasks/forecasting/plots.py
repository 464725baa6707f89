"""Figures: PCK per future step, and an animated forecast against the truth."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from chiral_jax.skeletons import PENN_ACTION_13
from chiral_tasks.common.files import atomic_path
from chiral_tasks.common.results import MODEL_COLOURS, model_colour

_BONES = [(p, j) for j, p in enumerate(PENN_ACTION_13.parents) if p >= 0]


def animate_forecast(
    path,
    observed: np.ndarray,
    truth: np.ndarray,
    forecasts: Mapping[str, np.ndarray],
    visible: np.ndarray,
    *,
    title: str = "",
    fps: int = 4,
) -> None:
    """An animated GIF of forecasts against the true future poses.

    Args:
      path: the GIF to write.
      observed: ``[obs, 13, 2]`` observed poses (normalised coordinates, y down).
      truth: ``[S, 13, 2]`` true future poses.
      forecasts: name -> ``[S, 13, 2]`` forecast poses.
      visible: ``[S, 13]`` visibility of the true joints (hidden ones drawn hollow).
    """
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    frames = [(p, None) for p in observed] + list(zip(truth, visible, strict=True))
    names = list(forecasts)
    colours = [model_colour(name) or "tab:green" for name in names]
    figure = Figure(figsize=(4, 4), dpi=72)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    everything = np.concatenate([observed, truth, *forecasts.values()])
    low, high = everything.min(axis=(0, 1)) - 0.1, everything.max(axis=(0, 1)) + 0.1
    axes.set_xlim(low[0], high[0])
    axes.set_ylim(high[1], low[1])  # image coordinates: y points down
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])

    def skeleton(pose, **style):
        return [axes.plot(*pose[[a, b]].T, **style)[0] for a, b in _BONES]

    def draw(t):
        for artist in list(axes.lines) + list(axes.collections):
            artist.remove()
        pose, vis = frames[t]
        skeleton(pose, color=MODEL_COLOURS["truth"], lw=3, alpha=0.6)
        if vis is not None:
            axes.scatter(*pose[~vis].T, facecolors="none", edgecolors="0.3", s=30)
            step = t - len(observed)
            for name, colour in zip(names, colours, strict=True):
                skeleton(forecasts[name][step], color=colour, lw=1.5)
        label = "observed" if vis is None else f"future step {t - len(observed) + 1}"
        axes.set_title(f"{title}\n{label}" if title else label, fontsize=9)
        return axes.lines

    handles = [Line2D([], [], color=c, label=n) for n, c in zip(names, colours, strict=True)]
    handles.append(Line2D([], [], color=MODEL_COLOURS["truth"], lw=3, alpha=0.6, label="truth"))
    # The key sits below the axes, where it covers no pose.
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7,
                  frameon=False)  # fmt: skip
    figure.subplots_adjust(bottom=0.12)
    animation = FuncAnimation(figure, draw, frames=len(frames), blit=False)
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    with atomic_path(path, suffix=".tmp.gif") as tmp:
        animation.save(os.fspath(tmp), writer=PillowWriter(fps=fps))
