"""Penn Action label files and the TP-RNN forecasting protocol.

Penn Action ships one MATLAB file per video (``labels/0001.mat`` .. ``2326.mat``)
with the fields

=============  ==========================  ====================================
field          MATLAB type, shape          meaning
=============  ==========================  ====================================
``action``     char                        one of :data:`PENN_ACTIONS`
``pose``       char                        camera view (``front``, ``side``, ...)
``x``, ``y``   double (nframes, 13)        joint pixel coordinates
``visibility`` logical (nframes, 13)       1 where the joint is visible
``train``      double scalar               1 for train, -1 for test
``bbox``       double (nframes, 4)         person box ``x1 y1 x2 y2`` per frame
``dimensions`` double (1, 3)               ``[H, W, nframes]``
``nframes``    double scalar               number of frames
=============  ==========================  ====================================

Joints are ``chiral_jax.skeletons.PENN_ACTION_13``: head, then left/right pairs of
shoulders, elbows, wrists, hips, knees, ankles.

The forecasting protocol is TP-RNN's (followed by Chirality Nets): each video is
normalised by the box of all its joints in all frames, and every frame starts a
sample of ``observed + num_future`` poses drawn ``step = (T - 1) // (observed +
num_future)`` frames apart, clamped to the last frame.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import scipy.io

from chiral_tasks.common.files import atomic_path

PENN_ACTIONS: tuple[str, ...] = (
    "baseball_pitch",
    "baseball_swing",
    "bench_press",
    "bowl",
    "clean_and_jerk",
    "golf_swing",
    "jump_rope",
    "jumping_jacks",
    "pullup",
    "pushup",
    "situp",
    "squat",
    "strum_guitar",
    "tennis_forehand",
    "tennis_serve",
)
NUM_JOINTS = 13
_FIELDS = ("action", "pose", "x", "y", "visibility", "train", "bbox", "dimensions", "nframes")
_VIDEO_FILE = re.compile(r"^\d+\.mat$")


@dataclasses.dataclass(frozen=True)
class PennVideo:
    """One Penn Action video's labels.

    Attributes:
      name: the file stem (``"0001"``).
      joints: (T, 13, 2) float32 pixel coordinates, last axis (x, y).
      visibility: (T, 13) bool.
      action: the action class, one of :data:`PENN_ACTIONS`.
      pose: the camera view.
      train: True for the official train split, False for test.
      bbox: (B, 4) float32 person boxes ``x1 y1 x2 y2`` (not used by the protocol,
        so its row count is not tied to ``T``).
      image_size: (H, W) in pixels.
    """

    name: str
    joints: np.ndarray
    visibility: np.ndarray
    action: str
    pose: str
    train: bool
    bbox: np.ndarray
    image_size: tuple[int, int]

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]

    @property
    def action_index(self) -> int:
        return PENN_ACTIONS.index(self.action)


def _check_joint_arrays(where: str, x, y, visibility) -> tuple[np.ndarray, ...]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    visibility = np.asarray(visibility)
    for name, arr in (("x", x), ("y", y), ("visibility", visibility)):
        if arr.ndim != 2 or arr.shape[1] != NUM_JOINTS:
            raise ValueError(
                f"{where}: field {name!r} must have shape (nframes, {NUM_JOINTS}), got {arr.shape}"
            )
    if not x.shape == y.shape == visibility.shape:
        raise ValueError(
            f"{where}: fields 'x' {x.shape}, 'y' {y.shape} and 'visibility' "
            f"{visibility.shape} must have the same shape"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{where}: the video has no frames")
    for name, arr in (("x", x), ("y", y)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: field {name!r} holds NaN or infinite values")
    if not np.all((visibility == 0) | (visibility == 1)):
        raise ValueError(f"{where}: field 'visibility' must hold only 0 and 1")
    return x, y, visibility.astype(bool)


def _check_bbox(where: str, bbox) -> np.ndarray:
    bbox = np.asarray(bbox, dtype=np.float64)
    if bbox.ndim != 2 or bbox.shape[1] != 4:
        raise ValueError(f"{where}: field 'bbox' must have shape (nframes, 4), got {bbox.shape}")
    if not np.all(np.isfinite(bbox)):
        raise ValueError(f"{where}: field 'bbox' holds NaN or infinite values")
    return bbox


def _check_action(where: str, action: str) -> str:
    if action not in PENN_ACTIONS:
        raise ValueError(f"{where}: unknown action {action!r}; expected one of {PENN_ACTIONS}")
    return action


def write_video_mat(
    path, *, x, y, visibility, action: str, pose: str, train: bool, bbox, dimensions
) -> None:
    """Writes one video's labels as a Penn Action ``.mat`` file.

    Args:
      path: the output file (``NNNN.mat``).
      x, y: (nframes, 13) pixel coordinates.
      visibility: (nframes, 13) of 0/1 or bool; stored as MATLAB logical.
      action: one of :data:`PENN_ACTIONS`.
      pose: the camera view.
      train: True for the train split (stored as 1), False for test (stored as -1).
      bbox: (nframes, 4) boxes ``x1 y1 x2 y2``.
      dimensions: ``(H, W)`` or ``(H, W, nframes)``; stored as ``[H, W, nframes]``.
    """
    where = str(path)
    x, y, visibility = _check_joint_arrays(where, x, y, visibility)
    bbox = _check_bbox(where, bbox)
    _check_action(where, action)
    nframes = x.shape[0]
    dimensions = [float(d) for d in dimensions]
    if len(dimensions) not in (2, 3):
        raise ValueError(f"{where}: dimensions must be (H, W) or (H, W, nframes)")
    if len(dimensions) == 3 and dimensions[2] != nframes:
        raise ValueError(f"{where}: dimensions give {dimensions[2]:g} frames but x has {nframes}")
    fields = {
        "action": action,
        "pose": pose,
        "x": x,
        "y": y,
        "visibility": visibility,
        "train": 1.0 if train else -1.0,
        "bbox": bbox,
        "dimensions": np.array([dimensions[0], dimensions[1], nframes], dtype=np.float64),
        "nframes": float(nframes),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        scipy.io.savemat(f, fields)


def _as_str(where: str, name: str, value) -> str:
    flat = np.asarray(value).ravel()
    if flat.size != 1 or flat.dtype.kind != "U":
        raise ValueError(f"{where}: field {name!r} must be a character string, got {value!r}")
    return str(flat[0])


def _numeric_field(where: str, name: str, value) -> np.ndarray:
    """A field that must hold numbers: MATLAB logical, char and cell arrays are refused."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{where}: field {name!r} must hold numbers, got dtype {arr.dtype}")
    return arr


def _as_float32(where: str, name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` (finite) as float32, refusing values that overflow to inf in the cast."""
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{where}: field {name!r} holds values beyond the float32 range")
    return out


def _as_number(where: str, name: str, value) -> float:
    flat = np.asarray(value).ravel()
    if flat.size != 1 or flat.dtype.kind not in "iuf":
        raise ValueError(f"{where}: field {name!r} must be a number, got {value!r}")
    number = float(flat[0])
    if not np.isfinite(number):
        raise ValueError(f"{where}: field {name!r} is {number}")
    return number


def load_video_mat(path) -> PennVideo:
    """Reads and validates one Penn Action label file.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: naming the file and field on a missing field, a wrong shape,
        a frame count that disagrees with ``nframes``/``dimensions``, an image
        size that is not two positive integers, a non-numeric (e.g. logical)
        coordinate or box field, NaN or values beyond float32, all joints on one
        point, an unknown action or a ``train`` flag other than 1/-1.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"Penn Action label file not found: {where}")
    try:
        # mat_dtype: each array in its MATLAB class (logical as bool, not uint8).
        mat = scipy.io.loadmat(path, mat_dtype=True)
    except Exception as err:  # scipy raises many types on a corrupt file
        raise ValueError(f"{where}: not a readable MATLAB file ({err})") from err
    missing = [f for f in _FIELDS if f not in mat]
    if missing:
        raise ValueError(f"{where}: missing fields {missing}")
    x, y, visibility = _check_joint_arrays(
        where,
        _numeric_field(where, "x", mat["x"]),
        _numeric_field(where, "y", mat["y"]),
        mat["visibility"],
    )
    nframes = x.shape[0]
    stored_nframes = _as_number(where, "nframes", mat["nframes"])
    if stored_nframes != nframes:
        raise ValueError(
            f"{where}: field 'nframes' is {stored_nframes:g} but 'x' has {nframes} frames"
        )
    dimensions = _numeric_field(where, "dimensions", mat["dimensions"]).astype(np.float64)
    dimensions = dimensions.ravel()
    if dimensions.shape != (3,) or dimensions[2] != nframes:
        raise ValueError(
            f"{where}: field 'dimensions' must be [H, W, nframes={nframes}], got {dimensions}"
        )
    height, width = dimensions[:2]
    if not all(np.isfinite(d) and d > 0 and d == int(d) for d in (height, width)):
        raise ValueError(
            f"{where}: field 'dimensions' must start with positive integers H, W, got {dimensions}"
        )
    train = _as_number(where, "train", mat["train"])
    if train not in (1.0, -1.0):
        raise ValueError(f"{where}: field 'train' must be 1 or -1, got {train:g}")
    bbox = _check_bbox(where, _numeric_field(where, "bbox", mat["bbox"]))
    joints = np.stack([_as_float32(where, "x", x), _as_float32(where, "y", y)], axis=-1)
    if np.all(joints == joints[0, 0]):  # normalize_video could not scale it
        raise ValueError(f"{where}: every joint of every frame lies on one point {joints[0, 0]}")
    return PennVideo(
        name=path.stem,
        joints=joints,
        visibility=visibility,
        action=_check_action(where, _as_str(where, "action", mat["action"])),
        pose=_as_str(where, "pose", mat["pose"]),
        train=train == 1.0,
        bbox=_as_float32(where, "bbox", bbox),
        image_size=(int(height), int(width)),
    )


def load_penn_action(labels_dir) -> tuple[list[PennVideo], list[PennVideo]]:
    """Reads every ``NNNN.mat`` in ``labels_dir``, in numeric order.

    Returns:
      ``(train, test)`` lists of :class:`PennVideo`, split by the ``train`` field.
    """
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise FileNotFoundError(f"Penn Action labels directory not found: {labels_dir}")
    files = sorted(
        (p for p in labels_dir.iterdir() if _VIDEO_FILE.match(p.name)),
        key=lambda p: (int(p.stem), p.name),
    )
    if not files:
        raise ValueError(f"no Penn Action label files (NNNN.mat) in {labels_dir}")
    for before, after in zip(files, files[1:], strict=False):
        if int(before.stem) == int(after.stem):
            raise ValueError(f"{after}: same video number as {before.name} (a video twice?)")
    videos = [load_video_mat(p) for p in files]
    return [v for v in videos if v.train], [v for v in videos if not v.train]


def normalize_video(video: PennVideo) -> tuple[np.ndarray, float]:
    """Normalises a video by the box of all its joints in all frames (TP-RNN).

    The box spans every annotated coordinate, visible or not, as TP-RNN does:
    ``mid`` is its centre and ``L = max(w, h)``; the output is ``(xy - mid) / (L/2)``,
    so the longer side of the box maps to [-1, 1].

    Returns:
      ``(poses, L)``: (T, 13, 2) float32 normalised poses and the box length ``L``
      in pixels (PCK@0.05 of ``L`` is a distance of 0.1 in normalised units).

    Raises:
      ValueError: if every joint of the video lies on one point (``L = 0``).
    """
    joints = video.joints.astype(np.float64)
    low = joints.min(axis=(0, 1))
    high = joints.max(axis=(0, 1))
    length = float(np.max(high - low))
    if length <= 0:
        raise ValueError(f"video {video.name}: all joints lie on one point; cannot normalise")
    mid = (low + high) / 2
    return ((joints - mid) / (length / 2)).astype(np.float32), length


@dataclasses.dataclass(frozen=True)
class ForecastSamples:
    """Forecasting samples, one per start frame of each video.

    Attributes:
      observed: (N, observed, 13, 2) float32 normalised input poses.
      future: (N, num_future, 13, 2) float32 normalised target poses.
      future_visible: (N, num_future, 13) bool visibility of the targets.
      video_index: (N,) int64 index into the ``videos`` passed to :func:`make_samples`.
      action: (N,) int64 index into :data:`PENN_ACTIONS`.
      box_length: (N,) float32 normalising box length ``L`` of the sample's video.
    """

    observed: np.ndarray
    future: np.ndarray
    future_visible: np.ndarray
    video_index: np.ndarray
    action: np.ndarray
    box_length: np.ndarray

    def __len__(self) -> int:
        return self.observed.shape[0]


def sample_indices(num_frames: int, length: int) -> np.ndarray:
    """Frame indices of every sample of a video (TP-RNN's even sampling).

    Sample ``s`` (starting at frame ``s``) takes frames
    ``min(s + step * t, T - 1)`` for ``t < length``, ``step = (T - 1) // length``.
    With ``length = 17`` this is TP-RNN's ``step = (T - 1) // 17``; its
    initial-velocity variant draws ``length = 18`` frames and divides by 18.

    Returns:
      (T, length) int64 frame indices.
    """
    step = (num_frames - 1) // length
    starts = np.arange(num_frames)[:, None]
    return np.minimum(starts + step * np.arange(length)[None, :], num_frames - 1)


def make_samples(
    videos: list[PennVideo],
    *,
    num_future: int = 16,
    observed: int = 1,
    drop_short: bool = False,
) -> ForecastSamples:
    """Builds the TP-RNN forecasting samples of ``videos``.

    Every frame of every video starts one sample of ``observed + num_future``
    poses (see :func:`sample_indices`): ``observed=1`` is the standard protocol
    (17 frames), ``observed=2`` the "initial velocity" variant (18 frames).

    A video shorter than ``observed + num_future + 1`` frames has ``step = 0``:
    TP-RNN keeps it, so each of its samples repeats the start frame. That is the
    default here; ``drop_short=True`` leaves such videos out instead.

    Raises:
      ValueError: if ``observed`` or ``num_future`` is not positive, or no sample
        remains.
    """
    if observed < 1 or num_future < 1:
        raise ValueError(
            f"observed and num_future must be positive, got {observed} and {num_future}"
        )
    length = observed + num_future
    parts = {name: [] for name in ("poses", "visible", "video", "action", "box")}
    for i, video in enumerate(videos):
        if drop_short and video.num_frames <= length:
            continue
        poses, box_length = normalize_video(video)
        idx = sample_indices(video.num_frames, length)
        parts["poses"].append(poses[idx])
        parts["visible"].append(video.visibility[idx[:, observed:]])
        parts["video"].append(np.full(len(idx), i, dtype=np.int64))
        parts["action"].append(np.full(len(idx), video.action_index, dtype=np.int64))
        parts["box"].append(np.full(len(idx), box_length, dtype=np.float32))
    if not parts["poses"]:
        raise ValueError(f"no forecasting samples: {len(videos)} videos, drop_short={drop_short}")
    poses = np.concatenate(parts["poses"])
    return ForecastSamples(
        observed=np.ascontiguousarray(poses[:, :observed]),
        future=np.ascontiguousarray(poses[:, observed:]),
        future_visible=np.concatenate(parts["visible"]),
        video_index=np.concatenate(parts["video"]),
        action=np.concatenate(parts["action"]),
        box_length=np.concatenate(parts["box"]),
    )
