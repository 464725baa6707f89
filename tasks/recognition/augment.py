"""ST-GCN's training augmentation for skeleton clips, as a Batcher transform (numpy).

Per clip: a random window of ``window`` frames from the frames that hold a skeleton
(ST-GCN's ``random_choose``; a shorter clip is zero padded), then a rotation, scale
and translation of the x, y channels drawn at ``segments + 1`` nodes spread over
the window and linearly interpolated between them (ST-GCN's ``random_move``, angles
from {-10, -5, 0, 5, 10} degrees, scales {0.9, 1, 1.1}, shifts {-0.2, ..., 0.2}).
Unlike ST-GCN, lost joints (score 0) stay at (0, 0). Every candidate set is
symmetric, so the augmented clips are as likely mirrored as not. Optionally each
clip is mirrored with probability ``flip`` (not part of ST-GCN's recipe).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from chiral_tasks.recognition.kinetics import mirror_clip


def valid_length(data: np.ndarray) -> np.ndarray:
    """(N,) frames up to and including each clip's last frame with a skeleton.

    Args:
      data: clips (N, C=3, T, V, M), channel 2 the score.
    """
    seen = np.any(data[:, 2] > 0, axis=(2, 3))  # (N, T)
    last = data.shape[2] - np.argmax(seen[:, ::-1], axis=1)
    return np.where(seen.any(axis=1), last, 0)


def crop(rng: np.random.Generator, data: np.ndarray, window: int) -> np.ndarray:
    """A random ``window``-frame crop of each clip's valid frames: (N, C, window, V, M)."""
    n, _, t, _, _ = data.shape
    if t < window:
        data = np.pad(data, [(0, 0), (0, 0), (0, window - t), (0, 0), (0, 0)])
    room = np.maximum(valid_length(data) - window, 0)
    begin = rng.integers(0, room + 1)
    frames = begin[:, None] + np.arange(window)[None, :]  # (N, window)
    out = data[np.arange(n)[:, None], :, frames]  # (N, window, C, V, M)
    return np.moveaxis(out, 1, 2)


@dataclasses.dataclass(frozen=True)
class Augment:
    """``Augment(...)(rng, batch)``: crop and move ``batch["data"]`` (N, 3, T, V, M).

    Args:
      window: frames per crop (ST-GCN: 150); ``None`` keeps the whole clip.
      angles, scales, shifts: the candidates of ``random_move`` (degrees, factors,
        normalised frame units).
      segments: how many linear pieces the motion has over the window.
      flip: probability of mirroring a clip.
    """

    window: int | None = 150
    angles: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0)
    scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    shifts: tuple[float, ...] = (-0.2, -0.1, 0.0, 0.1, 0.2)
    segments: int = 1
    flip: float = 0.0

    def __post_init__(self):
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 or None, got {self.window}")
        if self.segments < 1:
            raise ValueError(f"segments must be >= 1, got {self.segments}")
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"flip must be a probability, got {self.flip}")

    def move(self, rng: np.random.Generator, data: np.ndarray) -> np.ndarray:
        """Rotate, scale and shift x, y smoothly over time; lost joints stay at 0."""
        n, _, t, _, _ = data.shape
        nodes = self.segments + 1
        at = np.linspace(0.0, t - 1, nodes)

        def path(candidates):  # (n, t): values drawn at the nodes, linear in between
            drawn = rng.choice(np.asarray(candidates, dtype=np.float64), size=(n, nodes))
            return np.stack([np.interp(np.arange(t), at, d) for d in drawn])

        angle, scale = np.deg2rad(path(self.angles)), path(self.scales)
        dx, dy = path(self.shifts)[..., None, None], path(self.shifts)[..., None, None]
        cos = (scale * np.cos(angle))[..., None, None]  # (n, t, 1, 1) against (n, t, V, M)
        sin = (scale * np.sin(angle))[..., None, None]
        x, y = data[:, 0], data[:, 1]
        moved = np.stack([cos * x - sin * y + dx, sin * x + cos * y + dy], axis=1)
        out = data.copy()
        out[:, :2] = np.where(data[:, 2:3] > 0, moved, 0.0)
        return out

    def __call__(self, rng: np.random.Generator, batch: dict) -> dict:
        data = np.asarray(batch["data"], dtype=np.float32)
        if self.window is not None:
            data = crop(rng, data, self.window)
        data = self.move(rng, data)
        if self.flip:
            flipped = rng.random(len(data)) < self.flip
            data = np.where(flipped[:, None, None, None, None], mirror_clip(data), data)
        return {**batch, "data": data.astype(np.float32)}
