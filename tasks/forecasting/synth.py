"""A procedural stand-in for Penn Action: label files written from simulated motion.

Each video is one performer (a :func:`chiral_tasks.common.motion.make_subjects` subject
with its own handedness and motion seed) doing the :mod:`chiral_tasks.common.motion`
action behind one of the 15 Penn classes (:data:`PENN_TO_MOTION`), filmed at
30 fps by a pinhole camera at a random azimuth, elevation, distance and framing
in an image of a random size. The files are written with
:func:`chiral_tasks.forecasting.penn.write_video_mat`, so everything downstream reads
them exactly like the real ``labels/NNNN.mat``.

Visibility is 0 for a joint that projects outside the image or that lies behind
a nearer body part: a limb or torso segment (a capsule of fixed radius) that
covers the joint's image point and is closer to the camera. Side views thus hide
the far limbs, as in the real annotations. The ``pose`` field names the view
(``front``, ``back``, ``left``, ``right``: which side of the performer faces the
camera). ``bbox`` is the box of the visible joints, padded. Roughly half of
every class goes to the train split (``train = 1``), the rest to test (``-1``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from chiral_jax.skeletons import PENN_ACTION_13
from chiral_tasks.common.camera import look_at, project_to_2d, world_to_camera
from chiral_tasks.common.files import refuse_existing
from chiral_tasks.common.motion import make_subjects, simulate, to_skeleton
from chiral_tasks.forecasting.penn import PENN_ACTIONS, write_video_mat

PENN_TO_MOTION: dict[str, str] = {
    "baseball_pitch": "baseball_pitch",
    "baseball_swing": "baseball_swing",
    "bench_press": "bench_press",
    "bowl": "bowling",
    "clean_and_jerk": "clean_and_jerk",
    "golf_swing": "golf_swing",
    "jump_rope": "jump_rope",
    "jumping_jacks": "jumping_jacks",
    "pullup": "pullup",
    "pushup": "pushup",
    "situp": "situp",
    "squat": "squat",
    "strum_guitar": "strum_guitar",
    "tennis_forehand": "tennis_forehand",
    "tennis_serve": "tennis_serve",
}
"""The procedural action played for each Penn Action class."""

IMAGE_SIZES: tuple[tuple[int, int], ...] = ((480, 640), (360, 480), (270, 480), (480, 854))
"""(H, W) image sizes drawn from, as in Penn Action's YouTube videos."""

FPS = 30.0

# Capsules that can hide a joint: bones of the Penn skeleton plus the torso's
# outline and diagonals (joint pairs), with radii in metres.
_HEAD, _LSH, _RSH, _LHIP, _RHIP = 0, 1, 2, 7, 8
_LIMBS = tuple((p, j) for j, p in enumerate(PENN_ACTION_13.parents) if p > 0)
_TORSO = ((_LSH, _RSH), (_LHIP, _RHIP), (_LSH, _LHIP), (_RSH, _RHIP), (_LSH, _RHIP), (_RSH, _LHIP))
_CAPSULES = np.array(_LIMBS + _TORSO + ((_HEAD, _HEAD),))
_RADII = np.array([0.05] * len(_LIMBS) + [0.12] * len(_TORSO) + [0.11])


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Settings of a generated dataset.

    Args:
      num_videos: videos to write (files ``0001.mat`` ...).
      min_frames, max_frames: video length range (uniform, inclusive).
      num_subjects: distinct performers.
      left_handed: fraction of left-handed performers (lead limb on the left).
      test_fraction: fraction of each class in the test split.
      noise_px: standard deviation of the annotation noise, pixels.
      seed: everything is a deterministic function of it.
    """

    num_videos: int = 400
    min_frames: int = 40
    max_frames: int = 150
    num_subjects: int = 40
    left_handed: float = 0.25
    test_fraction: float = 0.5
    noise_px: float = 1.0
    seed: int = 0

    def __post_init__(self):
        problems = []
        if self.num_videos < 1:
            problems.append(f"num_videos must be >= 1, got {self.num_videos}")
        if not 2 <= self.min_frames <= self.max_frames:
            problems.append(
                f"need 2 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
            )
        if self.num_subjects < 1:
            problems.append(f"num_subjects must be >= 1, got {self.num_subjects}")
        for name in ("left_handed", "test_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.noise_px < 0:
            problems.append(f"noise_px must be >= 0, got {self.noise_px}")
        if problems:
            raise ValueError("invalid SynthConfig: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class _View:
    """A pinhole camera: orientation quaternion, centre (world), focal length, image size."""

    orientation: np.ndarray
    position: np.ndarray
    focal: float
    height: int
    width: int
    name: str


def _view_name(azimuth: float) -> str:
    """Which side of the performer faces a camera at ``azimuth`` (0 = in front)."""
    sector = int(np.round(np.degrees(azimuth) / 90.0)) % 4
    return ("front", "left", "back", "right")[sector]


def _heading(world: np.ndarray) -> float:
    """The performer's mean heading (0 faces +y, turning toward -x), from hips and shoulders."""
    right = world[:, [_RSH, _RHIP]] - world[:, [_LSH, _LHIP]]
    right = right.reshape(-1, 3).mean(axis=0)
    facing = np.cross([0.0, 0.0, 1.0], right)  # body frame: forward = up x right
    return float(np.arctan2(-facing[0], facing[1]))


def _draw_view(rng: np.random.Generator, world: np.ndarray) -> _View:
    """A random camera framing the performer ``world`` (T, 13, 3) in metres, z up."""
    height, width = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    centre = world.reshape(-1, 3).mean(axis=0)
    extent = float(np.max(world.reshape(-1, 3).max(0) - world.reshape(-1, 3).min(0)))
    focal = width * rng.uniform(0.9, 1.6)
    fill = rng.uniform(0.45, 1.05)  # fraction of the short image side the motion spans
    distance = max(focal * extent / (fill * min(height, width)), 1.5 * extent + 0.5)
    azimuth = rng.uniform(0.0, 2.0 * np.pi)
    elevation = np.radians(rng.uniform(-10.0, 35.0))
    # azimuth 0 puts the camera in front of the performer; positive azimuth
    # turns toward the performer's left, so 90 degrees films the left side.
    angle = _heading(world) + azimuth
    direction = np.array(
        [
            -np.sin(angle) * np.cos(elevation),
            np.cos(angle) * np.cos(elevation),
            np.sin(elevation),
        ]
    )
    target = centre + rng.normal(0.0, 0.08 * extent, size=3)
    position = centre + distance * direction
    return _View(look_at(position, target), position, focal, height, width, _view_name(azimuth))


def _project(view: _View, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (T, 13, 2) and camera depths (T, 13) of world points (T, 13, 3)."""
    cam = world_to_camera(world, view.orientation, view.position)
    if np.any(cam[..., 2] <= 0.05):
        raise ValueError("a joint lies at or behind the camera; the framing is invalid")
    intrinsics = [view.focal, view.focal, view.width / 2, view.height / 2, 0, 0, 0, 0, 0]
    return project_to_2d(cam, intrinsics), cam[..., 2]


def occluded(pixels: np.ndarray, depth: np.ndarray, focal: float) -> np.ndarray:
    """Which joints lie behind a nearer body capsule, (T, 13) bool.

    Args:
      pixels: (T, 13, 2) image points.
      depth: (T, 13) camera depths, metres.
      focal: focal length, pixels (to size the capsules in the image).

    A joint is hidden when a capsule not containing it covers its image point
    (within the capsule's projected radius) and lies in front of it by more than
    that radius.
    """
    a, b = pixels[:, _CAPSULES[:, 0]], pixels[:, _CAPSULES[:, 1]]  # (T, C, 2)
    za, zb = depth[:, _CAPSULES[:, 0]], depth[:, _CAPSULES[:, 1]]  # (T, C)
    p = pixels[:, :, None, :]  # (T, 13, 1, 2)
    ab = (b - a)[:, None]
    length2 = np.maximum(np.sum(ab**2, axis=-1), 1e-9)
    s = np.clip(np.sum((p - a[:, None]) * ab, axis=-1) / length2, 0.0, 1.0)  # (T, 13, C)
    distance = np.linalg.norm(p - (a[:, None] + s[..., None] * ab), axis=-1)
    capsule_depth = za[:, None] + s * (zb - za)[:, None]
    radius_px = focal * _RADII / capsule_depth
    in_front = capsule_depth + _RADII < depth[:, :, None]
    joints = np.arange(pixels.shape[1])[:, None]
    own = (_CAPSULES[None, :, 0] == joints) | (_CAPSULES[None, :, 1] == joints)  # (13, C)
    return np.any((distance < radius_px) & in_front & ~own, axis=-1)


def _bbox(pixels: np.ndarray, visible: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-frame person boxes (T, 4) ``x1 y1 x2 y2``: the visible joints, padded, clipped."""
    any_visible = visible.any(axis=1, keepdims=True)
    use = np.where(any_visible, visible, True)[..., None]
    low = np.where(use, pixels, np.inf).min(axis=1)
    high = np.where(use, pixels, -np.inf).max(axis=1)
    pad = 0.15 * np.max(high - low, axis=1, keepdims=True) + 5.0
    limit = np.array([width - 1.0, height - 1.0])
    return np.concatenate([np.clip(low - pad, 0, limit), np.clip(high + pad, 0, limit)], axis=1)


def assignments(config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Each video's class index into :data:`PENN_ACTIONS` and split (True = train).

    Classes are balanced (shuffled). The split is stratified: videos are listed
    class by class (shuffled within each class) and every ``1 / test_fraction``-th
    one goes to test, so each class and the whole set get their share.
    """
    rng = np.random.default_rng((config.seed, 0))
    actions = rng.permutation(np.resize(np.arange(len(PENN_ACTIONS)), config.num_videos))
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(actions == a)) for a in range(len(PENN_ACTIONS))]
    )
    k = np.arange(config.num_videos + 1)
    is_test = np.diff(np.floor(k * config.test_fraction)) > 0
    train = np.ones(config.num_videos, dtype=bool)
    train[order[is_test]] = False
    return actions, train


def synth_video(index: int, action: str, train: bool, config: SynthConfig) -> dict:
    """The label fields of video ``index`` (0-based), as :func:`write_video_mat` takes them."""
    rng = np.random.default_rng((config.seed, 1, index))
    subjects = make_subjects(config.num_subjects, seed=config.seed)
    subject = subjects[rng.integers(len(subjects))]
    handedness = "left" if rng.random() < config.left_handed else "right"
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    body = simulate(
        PENN_TO_MOTION[action],
        subject,
        num_frames,
        fps=FPS,
        seed=int(rng.integers(2**31)),
        handedness=handedness,
    )
    world = to_skeleton(body, PENN_ACTION_13).astype(np.float64)
    view = _draw_view(rng, world)
    pixels, depth = _project(view, world)
    pixels = pixels + rng.normal(0.0, config.noise_px, size=pixels.shape)
    inside = (
        (pixels[..., 0] >= 0)
        & (pixels[..., 0] <= view.width - 1)
        & (pixels[..., 1] >= 0)
        & (pixels[..., 1] <= view.height - 1)
    )
    visible = inside & ~occluded(pixels, depth, view.focal)
    return dict(
        x=pixels[..., 0],
        y=pixels[..., 1],
        visibility=visible,
        action=action,
        pose=view.name,
        train=bool(train),
        bbox=_bbox(pixels, visible, view.height, view.width),
        dimensions=(view.height, view.width, num_frames),
    )


def output_paths(out_dir, config: SynthConfig) -> list[Path]:
    """The label files :func:`generate` writes: ``0001.mat`` ... in ``out_dir``, in order."""
    return [Path(out_dir) / f"{i + 1:04d}.mat" for i in range(config.num_videos)]


def generate(
    out_dir,
    config: SynthConfig = SynthConfig(),
    *,
    progress: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Writes ``config.num_videos`` label files ``0001.mat`` ... into ``out_dir``.

    Each file is written atomically. Other files in ``out_dir`` are never touched
    (with ``overwrite``, label files beyond ``num_videos`` from an earlier, larger
    run stay too).

    Returns:
      the written paths, in order.

    Raises:
      FileExistsError: if one of those files exists and ``overwrite`` is False;
        checked before anything is generated or written.
    """
    from chiral_tasks.common.progress import progress_bar

    paths = output_paths(out_dir, config)
    if not overwrite:
        refuse_existing(out_dir, paths)
    actions, train = assignments(config)
    for i in progress_bar(range(config.num_videos), desc="videos", enabled=progress):
        write_video_mat(paths[i], **synth_video(i, PENN_ACTIONS[actions[i]], train[i], config))
    return paths
