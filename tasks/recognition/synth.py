"""A procedural Kinetics-skeleton dataset: OpenPose-18 detections of synthetic actions.

Each clip films one or two procedural performers (:mod:`chiral_tasks.common.motion`) doing
the clip's action with a pinhole camera at a random azimuth, height and zoom, and
writes what a pose detector would report: OpenPose-18 joints in a 340x256 frame,
normalised to [0, 1], with a confidence per joint. Detections are imperfect:
coordinate noise that grows as confidence drops, joints lost at random, face joints
lost when they turn away from the camera, joints outside the frame lost, and now and
then a person missed for a whole frame. Lost joints have pose (0, 0) and score 0, as
in OpenPose's output. Clips last ``min_frames .. max_frames`` frames at 30 fps, so
some are shorter and some longer than the loader's 300 frames.

**Classes are mirror closed.** A classifier that is invariant to mirroring cannot
tell "waving with the left hand" from "waving with the right hand", so a class is an
action done with either hand: every performer's handedness is drawn at random (even
odds), and a class's clips are as likely to be mirrored as not. The classes differ by
more than handedness (by the movement itself), so an invariant classifier can
separate them; the mirror of a clip belongs to the clip's own class.

The generator writes both of ST-GCN's input formats under one folder::

    kinetics_train/<video_id>.json   kinetics_train_label.json   (per-clip JSON + index)
    kinetics_val/<video_id>.json     kinetics_val_label.json
    train_data.npy  train_label.json  val_data.npy  val_label.json  (preprocessed split)
    label_name.txt                                               (class names, one a line)

Each split also holds one clip with no detected person, marked ``has_skeleton:
false`` in its label index (the released index has such clips); the loader skips
it and the preprocessed split leaves it out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from chiral_jax.skeletons import OPENPOSE_18
from chiral_tasks.common.actions import ACTIONS
from chiral_tasks.common.camera import look_at, project_to_2d, world_to_camera
from chiral_tasks.common.files import atomic_path, refuse_existing
from chiral_tasks.common.motion import make_subjects, simulate, to_skeleton
from chiral_tasks.recognition.kinetics import (
    load_kinetics_dir,
    save_npy_split,
    write_clip_json,
    write_label_index,
)

FRAME_WIDTH = 340
FRAME_HEIGHT = 256
FPS = 30.0
SPLITS = ("train", "val")

DEFAULT_CLASSES = (
    "walking",
    "jogging",
    "squat",
    "jumping_jacks",
    "clapping",
    "waving",
    "boxing",
    "kicking",
    "golf_swing",
    "tennis_serve",
)
"""Ten actions that differ in movement, not only in the hand that leads."""

_FACE = (0, 14, 15, 16, 17)  # nose, eyes, ears: lost when behind the head
_NECK = 1


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Args:
      classes: action names from :data:`chiral_tasks.common.actions.ACTIONS`, one per class.
      clips_per_class: clips per class over both splits.
      val_fraction: the share of each class's clips in the validation split.
      min_frames, max_frames: clip length range (frames at 30 fps).
      second_person: probability that a clip has a second performer.
      missing: probability that a detected person loses a joint in a frame.
      missed_person: probability that a person goes undetected in a frame.
      subjects: performers; the validation split uses others than training (a quarter).
      seed: everything is a pure function of it.
    """

    classes: tuple[str, ...] = DEFAULT_CLASSES
    clips_per_class: int = 40
    val_fraction: float = 0.25
    min_frames: int = 90
    max_frames: int = 360
    second_person: float = 0.3
    missing: float = 0.05
    missed_person: float = 0.02
    subjects: int = 12
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        unknown = [c for c in self.classes if c not in ACTIONS]
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known actions: {ACTIONS}")
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"need at least two distinct classes, got {self.classes}")
        val = round(self.clips_per_class * self.val_fraction)
        if not 1 <= val < self.clips_per_class:
            raise ValueError(
                f"clips_per_class={self.clips_per_class} with val_fraction={self.val_fraction} "
                "must leave at least one clip per class in each split"
            )
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
            )
        for name in ("second_person", "missing", "missed_person"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if self.subjects < 4:
            raise ValueError(f"need at least 4 subjects (3 train, 1 val), got {self.subjects}")

    @property
    def val_clips(self) -> int:
        """Validation clips per class."""
        return round(self.clips_per_class * self.val_fraction)


# -- one clip --------------------------------------------------------------------------


def _camera(rng: np.random.Generator, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A camera looking at ``centre`` (3,): (orientation, position, focal length px)."""
    focal = rng.uniform(250.0, 350.0)
    fill = rng.uniform(0.45, 0.8)  # share of the frame height a 1.75 m person fills
    distance = max(focal * 1.75 / (fill * FRAME_HEIGHT), 3.0)
    azimuth = rng.uniform(0.0, 2 * np.pi)
    position = centre + np.array(
        [distance * np.cos(azimuth), distance * np.sin(azimuth), rng.uniform(-0.4, 0.6)]
    )
    return look_at(position, centre), position, focal


def _detect(
    rng: np.random.Generator, points: np.ndarray, camera, config: SynthConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One person's detections: pose (T, 18, 2) in [0, 1] and score (T, 18); lost = 0."""
    orientation, position, focal = camera
    cam = world_to_camera(points, orientation, position)
    intrinsics = [focal, focal, FRAME_WIDTH / 2, FRAME_HEIGHT / 2, 0, 0, 0, 0, 0]
    pixels = project_to_2d(cam, intrinsics)
    base = rng.uniform(0.35, 0.9)
    score = np.clip(base + rng.normal(0.0, 0.12, size=cam.shape[:2]), 0.05, 1.0)
    pixels = pixels + rng.normal(size=pixels.shape) * (2.5 * (1.2 - score))[..., None]
    pose = pixels / np.array([FRAME_WIDTH, FRAME_HEIGHT])
    lost = rng.random(score.shape) < config.missing
    lost |= np.any((pose < 0.0) | (pose > 1.0), axis=-1)
    behind = cam[:, _FACE, 2] > cam[:, [_NECK], 2] + 0.05
    lost[:, _FACE] |= behind
    score = np.where(lost, 0.0, np.round(score, 3))
    pose = np.where(lost[..., None], 0.0, np.round(pose, 3))
    return pose, score


def make_clip(
    action: str, subjects, rng: np.random.Generator, config: SynthConfig
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """The detections of one clip: per frame, a list of ``(pose (18, 2), score (18,))``.

    One or two performers of ``subjects`` do ``action``, each with a random
    handedness and placement; all numbers come from ``rng``.
    """
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    people = 2 if rng.random() < config.second_person else 1
    bodies = []
    for k in range(people):
        subject = subjects[rng.integers(len(subjects))]
        handedness = "left" if rng.random() < 0.5 else "right"
        seed = int(rng.integers(2**31))
        body = simulate(action, subject, num_frames, FPS, seed=seed, handedness=handedness)
        offset = np.zeros(3)
        if k:
            angle = rng.uniform(0.0, 2 * np.pi)
            offset[:2] = rng.uniform(1.0, 1.6) * np.array([np.cos(angle), np.sin(angle)])
        bodies.append(to_skeleton(body, OPENPOSE_18).astype(np.float64) + offset)
    centre = np.mean([b[:, _NECK].mean(axis=0) for b in bodies], axis=0)
    centre[2] = np.mean([b[..., 2].mean() for b in bodies])
    camera = _camera(rng, centre)
    detections = [_detect(rng, b, camera, config) for b in bodies]
    seen = [rng.random(num_frames) >= config.missed_person for _ in bodies]
    frames = []
    for t in range(num_frames):
        frames.append(
            [
                (pose[t], score[t])
                for (pose, score), visible in zip(detections, seen, strict=True)
                if visible[t] and score[t].any()
            ]
        )
    return frames


# -- the dataset -----------------------------------------------------------------------


def _split_subjects(config: SynthConfig) -> dict[str, list]:
    subjects = make_subjects(config.subjects, seed=config.seed)
    val = max(1, config.subjects // 4)
    return {"train": subjects[val:], "val": subjects[:val]}


def _num_clips(config: SynthConfig, split: str) -> int:
    """Clips of ``split`` with a person (all classes); the empty clip comes on top."""
    per_class = config.val_clips if split == "val" else config.clips_per_class - config.val_clips
    return per_class * len(config.classes)


def output_paths(out_dir, config: SynthConfig) -> list[Path]:
    """Every file :func:`generate` writes into ``out_dir``, in the order it writes them."""
    out = Path(out_dir)
    paths = [out / "label_name.txt"]
    for split in SPLITS:
        ids = [f"{split}_{i:05d}" for i in range(_num_clips(config, split))] + [f"{split}_empty"]
        paths += [out / f"kinetics_{split}" / f"{video_id}.json" for video_id in ids]
        paths += [out / f"kinetics_{split}_label.json", out / f"{split}_data.npy"]
        paths += [out / f"{split}_label.json"]
    return paths


def generate(
    out_dir, config: SynthConfig = SynthConfig(), *, overwrite: bool = False
) -> dict[str, int]:
    """Writes the dataset (both formats, both splits) into ``out_dir``.

    Deterministic in ``config`` (clip ``i`` of a split draws from
    ``default_rng((seed, split, i))``). Each file is written atomically; other
    files in ``out_dir`` are never touched (but the read-back that makes the
    ``.npy`` split takes every ``*.json`` of ``kinetics_<split>/``, so extra clips
    there must be in the label index).

    Returns:
      the number of usable clips per split.

    Raises:
      FileExistsError: if a file of :func:`output_paths` exists and ``overwrite``
        is False; checked before anything is generated or written.
    """
    out = Path(out_dir)
    if not overwrite:
        refuse_existing(out, output_paths(out, config))
    with atomic_path(out / "label_name.txt") as tmp:
        tmp.write_text("".join(f"{c}\n" for c in config.classes))
    subjects = _split_subjects(config)
    counts = {}
    for s, split in enumerate(SPLITS):
        clips_dir = out / f"kinetics_{split}"
        index = {}
        for i in range(_num_clips(config, split)):
            label = i % len(config.classes)
            rng = np.random.default_rng((config.seed, s, i))
            frames = make_clip(config.classes[label], subjects[split], rng, config)
            video_id = f"{split}_{i:05d}"
            write_clip_json(clips_dir / f"{video_id}.json", frames, config.classes[label], label)
            index[video_id] = {
                "has_skeleton": True,
                "label": config.classes[label],
                "label_index": label,
            }
        empty_id = f"{split}_empty"
        write_clip_json(clips_dir / f"{empty_id}.json", [[]] * 30, config.classes[0], 0)
        index[empty_id] = {"has_skeleton": False, "label": config.classes[0], "label_index": 0}
        write_label_index(out / f"kinetics_{split}_label.json", index)
        data, labels, ids = load_kinetics_dir(clips_dir, out / f"kinetics_{split}_label.json")
        save_npy_split(out / f"{split}_data.npy", out / f"{split}_label.json", data, labels, ids)
        counts[split] = len(ids)
    return counts
