"""A procedurally generated stand-in for Human3.6M and HumanEva-I, in their file formats.

:func:`generate_dataset` films the procedural humanoid of :mod:`chiral_tasks.common.motion`
with Human3.6M-like cameras and adds detector-like 2D noise; :func:`write_dataset`
writes the result three ways, so that every loader is exercised end to end:

- VideoPose3D's pickled pair ``data_3d_<ds>.npz`` (Human3.6M: 32-joint arrays, our
  17 joints at :data:`videopose3d.H36M_KEPT_JOINTS`, the other 15 plausible filler)
  and ``data_2d_<ds>_<detector>.npz`` (a few more 2D frames than mocap frames, as
  real detections have), plus ``cameras_<ds>.json`` (:mod:`chiral_tasks.lifting.cameras`);
- our pickle-free ``<ds>.npz`` (:func:`npz.save_npz`), the same data;
- with COCO-17 keypoints, ``example_clip.json``: one test clip as a detector's COCO
  results file (:func:`write_example_clip`), to try ``chiral lifting infer`` on.

Human3.6M: subjects S1 S5 S6 S7 S8 S9 S11 (each with its own body and cameras),
50 fps, four cameras, two trials per action ("Walking", "Walking 1"); the 2D views
show the 3D skeleton's joints or, with ``keypoints="coco"``, COCO-17's (as
VideoPose3D's Detectron detections, ``layout_name`` ``"coco"``). HumanEva-I:
``Train/S1..S3`` and ``Validate/S1..S3``, 60 fps, three 640x480 cameras, actions
"Walk", "Jog", "Box" split into chunks ("Walk chunk0"). Every sequence has its own
seed and handedness (a one-sided action is done with the right or the left hand).
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from pathlib import Path

import numpy as np

from chiral_jax.skeletons import COCO_17, H36M_17, HUMANEVA_15
from chiral_tasks.common.camera import Camera, make_cameras, project_to_pixels
from chiral_tasks.common.files import atomic_path, refuse_existing
from chiral_tasks.common.motion import make_subjects, simulate, to_skeleton
from chiral_tasks.lifting.cameras import save_cameras_json
from chiral_tasks.lifting.dataset import LiftingDataset, Recording, SubjectData
from chiral_tasks.lifting.keypoints import write_coco_json
from chiral_tasks.lifting.npz import save_npz
from chiral_tasks.lifting.videopose3d import DATASET_FPS, H36M_KEPT_JOINTS

H36M_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
H36M_ACTIONS = {
    "Walking": "walking",
    "Jogging": "jogging",
    "Turning": "turning",
    "SittingDown": "sitting_down",
    "Squat": "squat",
    "Waving": "waving",
    "Boxing": "boxing",
    "Kicking": "kicking",
}
"""Sequence name -> procedural action: symmetric ones and one-sided ones."""

HUMANEVA_SUBJECTS = ("S1", "S2", "S3")
HUMANEVA_ACTIONS = {"Walk": "walking", "Jog": "jogging", "Box": "boxing"}

DETECTOR = "synth"
EXTRA_2D_FRAMES = 3
"""Detections run this many frames past the mocap (loaders trim them)."""


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Detector-like 2D noise, in pixels.

    Attributes:
      sigma: i.i.d. Gaussian noise per joint and frame.
      drift_sigma, drift_smoothness: slowly varying per-joint jitter (an AR(1) process
        with coefficient ``drift_smoothness`` and stationary std ``drift_sigma``).
      outlier_rate: fraction of (frame, joint) detections replaced by a gross error.
      outlier_scale: std of the gross errors.
    """

    sigma: float = 3.0
    drift_sigma: float = 4.0
    drift_smoothness: float = 0.9
    outlier_rate: float = 0.01
    outlier_scale: float = 40.0


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """What :func:`generate_dataset` makes.

    Attributes:
      dataset: ``"h36m"`` (skeleton H36M_17) or ``"humaneva15"`` (HUMANEVA_15).
      keypoints: the 2D views' skeleton: ``"h36m"``, the 3D skeleton (as the
        dataset's own 2D files), or ``"coco"``, :data:`COCO_17` (Human3.6M only).
      frames: frames per sequence (per trial or chunk).
      trials: sequences per (subject, action): Human3.6M trials or HumanEva chunks.
      seed: everything derives from it.
      right_handed: probability that a one-sided action is done right-handed.
      noise: the 2D detector noise.
    """

    dataset: str = "h36m"
    frames: int = 150
    trials: int = 2
    seed: int = 0
    right_handed: float = 0.75
    noise: NoiseConfig = NoiseConfig()
    keypoints: str = "h36m"

    def __post_init__(self):
        if self.dataset not in (H36M_17.name, HUMANEVA_15.name):
            raise ValueError(
                f"dataset must be {H36M_17.name!r} or {HUMANEVA_15.name!r}, got {self.dataset!r}"
            )
        if self.keypoints not in (H36M_17.name, COCO_17.name):
            raise ValueError(
                f"keypoints must be {H36M_17.name!r} or {COCO_17.name!r}, got {self.keypoints!r}"
            )
        if self.keypoints == COCO_17.name and self.dataset != H36M_17.name:
            raise ValueError(
                f"COCO keypoints are generated for dataset {H36M_17.name!r} only, "
                f"not {self.dataset!r}"
            )
        if self.frames < 2 or self.trials < 1:
            raise ValueError(f"need frames >= 2 and trials >= 1, got {self.frames}, {self.trials}")
        if not 0.0 <= self.right_handed <= 1.0:
            raise ValueError(f"right_handed must lie in [0, 1], got {self.right_handed}")


def _seed(*parts: int | str) -> int:
    """A stable integer seed from names and numbers (independent of Python's hash salt)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def _humaneva_cameras(seed: int) -> list[Camera]:
    """Three HumanEva-like cameras: Human3.6M-like rigs scaled to 640x480 images."""
    cameras = []
    for index, cam in enumerate(make_cameras(seed)[:3]):
        scale = 640 / cam.res_w
        cameras.append(
            dataclasses.replace(
                cam,
                id=f"C{index + 1}",
                res_w=640,
                res_h=480,
                center=cam.center * scale - [0.0, (cam.res_h * scale - 480) / 2],
                focal_length=cam.focal_length * scale,
            )
        )
    return cameras


def _detections(
    positions_px: np.ndarray, noise: NoiseConfig, rng: np.random.Generator
) -> np.ndarray:
    """Noisy 2D detections (T, J, 2) of exact projections ``positions_px`` (T, J, 2)."""
    T, J, _ = positions_px.shape
    a = noise.drift_smoothness
    drift = np.zeros((T, J, 2))
    drift[0] = rng.normal(0.0, noise.drift_sigma, size=(J, 2))
    steps = rng.normal(0.0, noise.drift_sigma * np.sqrt(1 - a * a), size=(T, J, 2))
    for t in range(1, T):
        drift[t] = a * drift[t - 1] + steps[t]
    white = rng.normal(0.0, noise.sigma, size=(T, J, 2))
    outliers = (rng.random((T, J)) < noise.outlier_rate)[..., None]
    gross = rng.normal(0.0, noise.outlier_scale, size=(T, J, 2))
    return (positions_px + drift + white + outliers * gross).astype(np.float32)


def _sequences(config: SynthConfig):
    """``(subject name, body index, sequence name, procedural action)`` of the dataset."""
    if config.dataset == H36M_17.name:
        for index, subject in enumerate(H36M_SUBJECTS):
            for name, action in H36M_ACTIONS.items():
                for trial in range(config.trials):
                    yield subject, index, name + (f" {trial}" if trial else ""), action
    else:
        for split in ("Train", "Validate"):
            for index, subject in enumerate(HUMANEVA_SUBJECTS):
                for name, action in HUMANEVA_ACTIONS.items():
                    for chunk in range(config.trials):
                        yield f"{split}/{subject}", index, f"{name} chunk{chunk}", action


def generate_dataset(config: SynthConfig = SynthConfig()) -> tuple[LiftingDataset, dict]:
    """The synthetic dataset and its raw detections.

    Returns:
      ``(dataset, detections)``: the :class:`LiftingDataset` (2D trimmed to
      the mocap length) and ``detections[subject][action]``, the list of per-camera
      (T + EXTRA_2D_FRAMES, J_2d, 2) pixel arrays as a detector file holds them.
    """
    skeleton = H36M_17 if config.dataset == H36M_17.name else HUMANEVA_15
    skeleton_2d = COCO_17 if config.keypoints == COCO_17.name else skeleton
    fps = DATASET_FPS[skeleton.name]
    names = H36M_SUBJECTS if config.dataset == H36M_17.name else HUMANEVA_SUBJECTS
    bodies = make_subjects(max(int(s[1:]) for s in names), seed=config.seed)
    recordings: dict[str, dict[str, Recording]] = {}
    detections: dict[str, dict[str, list[np.ndarray]]] = {}
    cameras: dict[str, list[Camera]] = {}
    for subject, _, name, action in _sequences(config):
        if subject not in cameras:
            # HumanEva's Train/S1 and Validate/S1 are one person filmed by one rig.
            person = subject.rpartition("/")[2]
            cam_seed = _seed(config.seed, config.dataset, person, "cameras")
            is_h36m = config.dataset == H36M_17.name
            cameras[subject] = make_cameras(cam_seed) if is_h36m else _humaneva_cameras(cam_seed)
        body = bodies[int(subject.rpartition("S")[2]) - 1]
        rng = np.random.default_rng(_seed(config.seed, config.dataset, subject, name))
        handedness = "right" if rng.random() < config.right_handed else "left"
        frames = config.frames + EXTRA_2D_FRAMES
        motion = simulate(action, body, frames, fps, int(rng.integers(2**31)), handedness)
        world, seen = to_skeleton(motion, skeleton), to_skeleton(motion, skeleton_2d)
        views = [
            _detections(project_to_pixels(cam.world_to_camera(seen), cam), config.noise, rng)
            for cam in cameras[subject]
        ]
        detections.setdefault(subject, {})[name] = views
        rec = Recording(world[: config.frames], tuple(v[: config.frames] for v in views))
        recordings.setdefault(subject, {})[name] = rec
    subjects = {s: SubjectData(recs, tuple(cameras[s])) for s, recs in recordings.items()}
    return LiftingDataset(skeleton.name, fps, skeleton, subjects, skeleton_2d), detections


# -- Human3.6M's 32 mocap joints ---------------------------------------------------------

# Filler joints of the 32-joint arrays: (index, source joint in H36M_17, kind).
# "toe": 12 cm ahead of the ankle; "hand": 8 cm past the wrist along the forearm;
# "copy": Human3.6M's duplicate sites sit on an existing joint.
_H36M_FILLER = (
    (4, 3, "toe"), (5, 3, "toe"), (9, 6, "toe"), (10, 6, "toe"),
    (11, 0, "copy"), (16, 8, "copy"), (24, 8, "copy"),
    (20, 13, "copy"), (21, 13, "hand"), (22, 13, "hand"), (23, 13, "hand"),
    (28, 16, "copy"), (29, 16, "hand"), (30, 16, "hand"), (31, 16, "hand"),
)  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def to_h36m_32(positions: np.ndarray) -> np.ndarray:
    """Our 17 Human3.6M joints (T, 17, 3) -> the 32-joint mocap layout (T, 32, 3).

    The 17 joints go to :data:`videopose3d.H36M_KEPT_JOINTS`; the others (toes, hand
    sites, duplicate joints) are placed plausibly near them.
    """
    T = positions.shape[0]
    out = np.zeros((T, 32, 3), dtype=positions.dtype)
    out[:, list(H36M_KEPT_JOINTS)] = positions
    right = positions[:, 1] - positions[:, 4]
    forward = _unit(np.cross([0.0, 0.0, 1.0], right))
    for index, source, kind in _H36M_FILLER:
        p = positions[:, source]
        if kind == "toe":
            p = p + 0.12 * forward
        elif kind == "hand":
            p = p + 0.08 * _unit(p - positions[:, source - 1])
        out[:, index] = p
    return out


def _object_array(value) -> np.ndarray:
    """A 0-d object array holding ``value``, as VideoPose3D's ``np.savez`` writes dicts."""
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def output_paths(config: SynthConfig, folder: str | os.PathLike) -> dict[str, Path]:
    """The files :func:`write_dataset` writes for ``config`` into ``folder``, by role.

    Keys: ``"ours"`` (``<ds>.npz``), ``"data_3d"``, ``"data_2d"``, ``"cameras"``, and
    with COCO keypoints ``"example"`` (:func:`write_example_clip`).
    """
    folder = Path(folder)
    dataset = config.dataset
    paths = {
        "ours": folder / f"{dataset}.npz",
        "data_3d": folder / f"data_3d_{dataset}.npz",
        "data_2d": folder / f"data_2d_{dataset}_{DETECTOR}.npz",
        "cameras": folder / f"cameras_{dataset}.json",
    }
    if config.keypoints == COCO_17.name:
        paths["example"] = folder / EXAMPLE_CLIP
    return paths


EXAMPLE_CLIP = "example_clip.json"
EXAMPLE_SOURCE = ("S9", "Walking", 0)
"""The example clip's subject (a test subject), sequence and camera (1000 x 1002 pixels)."""
EXAMPLE_EMPTY_FRAMES = (40, 41, 42, 90)


def write_example_clip(detections: dict, path: str | os.PathLike) -> Path:
    """Write one clip as a detector's COCO results JSON, for ``chiral lifting infer``.

    The clip is the generated COCO-17 detections of :data:`EXAMPLE_SOURCE`, image ids
    are frame numbers, every joint scores 0.9; a bystander walks beside the subject
    (scored 0.6, so the subject is kept), and in :data:`EXAMPLE_EMPTY_FRAMES` the
    detector found nobody (no entry), as a detector's file has gaps.
    """
    subject, sequence, camera = EXAMPLE_SOURCE
    xy = detections[subject][sequence][camera].astype(np.float64)
    empty = [t for t in EXAMPLE_EMPTY_FRAMES if t < len(xy)]
    xy[empty] = np.nan
    bystander = xy + np.array([260.0, 30.0])
    score = np.full(xy.shape[:2], 0.9)
    return write_coco_json(path, xy, score, extra_people=[(bystander, np.full_like(score, 0.6))])


def write_videopose3d(
    dataset: LiftingDataset, detections: dict, folder: str | os.PathLike
) -> tuple[Path, Path, Path]:
    """Write VideoPose3D's pickled 3D and 2D files and the cameras JSON into ``folder``.

    The 2D file's metadata describes ``dataset.skeleton_2d`` (``layout_name``, joint
    count, left/right joints). Replaces existing files of those names (each
    atomically). Returns the paths ``(data_3d, data_2d, cameras_json)``.
    """
    h36m = dataset.skeleton.name == H36M_17.name
    positions_3d = {
        subject: {
            action: to_h36m_32(rec.positions_3d) if h36m else rec.positions_3d
            for action, rec in data.recordings.items()
        }
        for subject, data in dataset.subjects.items()
    }
    keypoints = dataset.skeleton_2d
    metadata = {
        "layout_name": keypoints.name,
        "num_joints": keypoints.num_joints,
        "keypoints_symmetry": [list(keypoints.left), list(keypoints.right)],
    }
    paths = output_paths(SynthConfig(dataset.name), folder)
    # Open files, not names: np.savez would append ".npz" to the temporary name.
    with atomic_path(paths["data_3d"]) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, positions_3d=_object_array(positions_3d))
    with atomic_path(paths["data_2d"]) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f, positions_2d=_object_array(detections), metadata=_object_array(metadata)
        )
    save_cameras_json({s: d.cameras for s, d in dataset.subjects.items()}, paths["cameras"])
    return paths["data_3d"], paths["data_2d"], paths["cameras"]


def write_dataset(
    config: SynthConfig, folder: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, Path]:
    """Generate and write the dataset in both formats; return the paths by role.

    Keys as in :func:`output_paths`. Every file is written atomically.

    Raises:
      FileExistsError: if one of those files exists and ``overwrite`` is False;
        checked before anything is generated or written. Other files in ``folder``
        never matter and are never touched.
    """
    paths = output_paths(config, folder)
    if not overwrite:
        refuse_existing(folder, paths.values())
    dataset, detections = generate_dataset(config)
    write_videopose3d(dataset, detections, folder)
    save_npz(dataset, paths["ours"])
    if "example" in paths:
        if overwrite:
            paths["example"].unlink(missing_ok=True)
        write_example_clip(detections, paths["example"])
    return paths
