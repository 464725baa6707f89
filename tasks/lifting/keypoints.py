"""One person's 2D keypoints per frame, read from the files pose detectors write.

The input of 2D->3D lifting is a clip of 2D poses in pixels. This module reads them
from the formats detector users have:

- COCO keypoint JSON (:func:`read_coco_json`): the *results* list that Detectron2,
  MMPose, ViTPose, AlphaPose and OpenPose's COCO mode write, or a full COCO annotation
  file (``{"images": [...], "annotations": [...]}``), which also gives the image size;
- VideoPose3D's ``data_2d_custom_<name>.npz`` (:func:`read_videopose3d_custom`);
- a plain ``.npy`` array or ``.csv`` table (:func:`read_array`).

:func:`read_keypoints` picks the reader by the file's suffix. Every reader returns a
:class:`Keypoints`; :func:`fill_gaps` then fills undetected joints and frames,
:func:`convert_keypoints` maps COCO's 17 joints onto Human3.6M's, and :func:`normalise`
gives VideoPose3D's normalised screen coordinates.

Scores are clipped to ``[0, 1]``: a COCO annotation file's visibility flags
``0, 1, 2`` become 0 (not labelled) and 1 (labelled), and detectors that write
heatmap logits (Detectron2) keep their order only below 1. Joints with non-finite
coordinates get score 0, and a frame none of whose joints has finite coordinates is
*missing* (no person found).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from chiral_jax.skeletons import COCO_17, H36M_17, Skeleton
from chiral_tasks.common.camera import normalize_screen_coordinates
from chiral_tasks.common.files import atomic_path, refuse_existing
from chiral_tasks.lifting.archive import LiftingFormatError, PathLike, read_npz

SUFFIXES = (".json", ".npz", ".npy", ".csv")
"""The suffixes :func:`read_keypoints` reads."""


class KeypointsError(ValueError):
    """A keypoint file or argument is unusable; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class Keypoints:
    """One person's 2D keypoints in each frame of a clip.

    Attributes:
      xy: (T, J, 2) float32 pixel coordinates; NaN where the joint was not found.
      score: (T, J) float32 confidences in ``[0, 1]``: 1 where the file has none, 0
        where ``xy`` is not finite.
      skeleton: the joints' skeleton, with ``J`` joints (e.g. ``COCO_17``).
      width, height: the image size in pixels, or None when the file does not give it.
      frame_ids: the file's identifier of each frame (e.g. COCO ``image_id``), T of them.
      missing: the indices of the frames where no person was found, ascending.
    """

    xy: np.ndarray
    score: np.ndarray
    skeleton: Skeleton
    width: int | None
    height: int | None
    frame_ids: tuple[Hashable, ...]
    missing: tuple[int, ...]

    def __post_init__(self):
        frames, joints = len(self.frame_ids), self.skeleton.num_joints
        if self.xy.shape != (frames, joints, 2) or self.score.shape != (frames, joints):
            raise KeypointsError(
                f"Keypoints of {frames} frames of skeleton {self.skeleton.name!r} need xy "
                f"{(frames, joints, 2)} and score {(frames, joints)}, got {self.xy.shape} "
                f"and {self.score.shape}"
            )


def _keypoints(
    xy, score, skeleton: Skeleton, frame_ids: Iterable[Hashable], width=None, height=None
) -> Keypoints:
    """Keypoints of ``xy`` (T, J, 2) and ``score`` (T, J), with the conventions above."""
    xy = np.asarray(xy, dtype=np.float32)
    found = np.isfinite(xy).all(axis=-1)
    score = np.clip(np.nan_to_num(np.asarray(score, dtype=np.float32)), 0.0, 1.0)
    score = np.where(found, score, np.float32(0))
    missing = tuple(int(t) for t in np.flatnonzero(~found.any(axis=-1)))
    return Keypoints(xy, score, skeleton, width, height, tuple(frame_ids), missing)


def _existing(path: PathLike) -> Path:
    """``path`` as a Path, or FileNotFoundError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


# -- COCO keypoint JSON ---------------------------------------------------------------


class _Person(NamedTuple):
    """One detected person: its frame, track id, keypoints (J, 2), scores (J,), score."""

    image_id: Hashable
    track: Any
    xy: np.ndarray
    score: np.ndarray
    overall: float


def _load_json(path: Path) -> Any:
    """The JSON document in ``path``, or a one-line error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise KeypointsError(f"{path}: not valid JSON ({err})") from err


def _coco_parts(data: Any, path: Path) -> tuple[list, list]:
    """``(images, annotations)`` of a results list or a full annotation dict."""
    if isinstance(data, list):
        return [], data
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        images = data.get("images", [])
        if not isinstance(images, list) or not all(
            isinstance(image, dict) and _is_id(image.get("id")) for image in images
        ):
            raise KeypointsError(f"{path}: 'images' must be a list of objects with an 'id'")
        return images, data["annotations"]
    raise KeypointsError(
        f"{path}: expected a COCO results list or an annotation object with an "
        f"'annotations' list, got {type(data).__name__}"
    )


def _is_id(value: Any) -> bool:
    """Whether ``value`` can be an image id (an int or a string, not a bool)."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    """Whether ``value`` is an int above 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _person(entry: Any, index: int, path: Path, joints: int) -> _Person:
    """The person of the ``index``-th entry: ``keypoints`` is ``[x, y, v/score] * joints``."""
    if not isinstance(entry, dict) or not _is_id(entry.get("image_id")):
        raise KeypointsError(f"{path}: entry {index} is not an object with an 'image_id'")
    try:
        values = np.asarray(entry.get("keypoints"), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise KeypointsError(f"{path}: entry {index}: 'keypoints' are not numbers") from err
    if values.shape != (3 * joints,):
        raise KeypointsError(
            f"{path}: entry {index}: 'keypoints' must hold {3 * joints} numbers "
            f"(x, y, score for {joints} joints), got shape {values.shape}"
        )
    values = values.reshape(joints, 3)
    score = np.clip(np.nan_to_num(values[:, 2]), 0.0, 1.0)
    overall = entry.get("score", float(score.mean()))
    if not isinstance(overall, int | float):
        raise KeypointsError(f"{path}: entry {index}: 'score' {overall!r} is not a number")
    track = entry.get("track_id", entry.get("idx"))
    return _Person(entry["image_id"], track, values[:, :2], score, float(overall))


def _natural_key(frame_id: Hashable) -> tuple:
    """Sort key ordering digit runs by value: ``"2.jpg" < "000012.jpg"``, ``2 < "10"``."""
    text = str(frame_id)
    chunks = [int(c) if i % 2 else c for i, c in enumerate(re.split(r"(\d+)", text))]
    return chunks, type(frame_id).__name__, text


def _with_track(people: list[_Person], person: Hashable, path: Path) -> list[_Person]:
    """The entries of the person whose ``track_id``/``idx`` is ``person`` (compared as text)."""
    ids = sorted({str(p.track) for p in people if p.track is not None}, key=_natural_key)
    if not ids:
        raise KeypointsError(
            f"{path}: no entry has a person id ('track_id' or 'idx'); run a tracker, or "
            "leave the person unset to take the best-scoring person of each frame"
        )
    if str(person) not in ids:
        raise KeypointsError(f"{path}: no person with id {person!r} (ids in the file: {ids})")
    return [p for p in people if p.track is not None and str(p.track) == str(person)]


def _image_size(images: list[dict], path: Path) -> tuple[int | None, int | None]:
    """The one ``(width, height)`` of the listed images, or ``(None, None)`` if not given."""
    sizes = {(image.get("width"), image.get("height")) for image in images}
    if not sizes or sizes == {(None, None)}:
        return None, None
    if len(sizes) > 1:
        raise KeypointsError(
            f"{path}: the images have {len(sizes)} different sizes; a clip must come from one video"
        )
    ((width, height),) = sizes
    if not (_positive_int(width) and _positive_int(height)):
        raise KeypointsError(f"{path}: image size {width!r} x {height!r} is not positive ints")
    return width, height


def read_coco_json(path: PathLike, *, person: Hashable | None = None) -> Keypoints:
    """Read COCO keypoint JSON: a results list, or a full annotation file.

    A results list holds one object per detected person: ``{"image_id", "category_id",
    "keypoints": [x, y, score] * 17, "score"}``, with ``"track_id"`` (or AlphaPose's
    ``"idx"``) when a tracker ran. A full annotation file adds ``"images"`` (``{"id",
    "width", "height", "file_name"}``), whose size becomes the clip's image size (all
    images must share it); its keypoint flags ``v`` count as scores (see the module doc).

    The frames are the distinct image ids of all entries, in natural order (digit runs
    compared by value, so ``"2.jpg"`` comes before ``"000012.jpg"``); every image an
    annotation file lists is a frame too, even when nobody was detected in it. A results
    list has no entry for a frame without detections, so when its ids are integers
    (frame numbers) every id between the first and the last is a frame. Where a
    frame holds several people, the one with the highest ``"score"`` is kept (the mean
    keypoint score where the file gives none; the first in the file on ties), or with
    ``person`` the one whose ``track_id``/``idx`` equals it (compared as text, so ``3``
    matches ``"3"``). Frames without a (selected) person are NaN with score 0 and listed
    in ``missing``.

    Returns:
      :class:`Keypoints` of skeleton ``COCO_17``: xy (T, 17, 2), score (T, 17).

    Raises:
      KeypointsError: naming the file and the problem (invalid JSON, an entry without
        ``image_id`` or 51 keypoint numbers, ``person`` given but absent or the file
        without ids, images of different sizes, no frame at all).
    """
    path = _existing(path)
    images, annotations = _coco_parts(_load_json(path), path)
    people = [_person(entry, i, path, COCO_17.num_joints) for i, entry in enumerate(annotations)]
    frame_ids = sorted(
        {image["id"] for image in images} | {p.image_id for p in people}, key=_natural_key
    )
    if not frame_ids:
        raise KeypointsError(f"{path}: no detections and no images: not one frame to read")
    if not images and all(type(f) is int for f in frame_ids):
        frame_ids = list(range(frame_ids[0], frame_ids[-1] + 1))
    if person is not None:
        people = _with_track(people, person, path)
    best: dict[Hashable, _Person] = {}
    for p in people:
        if p.image_id not in best or p.overall > best[p.image_id].overall:
            best[p.image_id] = p
    xy = np.full((len(frame_ids), COCO_17.num_joints, 2), np.nan)
    score = np.zeros(xy.shape[:2])
    for t, frame_id in enumerate(frame_ids):
        if frame_id in best:
            xy[t], score[t] = best[frame_id].xy, best[frame_id].score
    return _keypoints(xy, score, COCO_17, frame_ids, *_image_size(images, path))


def _coco_entry(image_id: Hashable, xy: np.ndarray, score: np.ndarray, track: int) -> dict:
    """The results-list entry of one person: NaN joints become ``0, 0`` with score 0."""
    found = np.isfinite(xy).all(axis=-1)
    score = np.where(found, score, 0.0)
    values = np.concatenate([np.where(found[:, None], xy, 0.0), score[:, None]], axis=-1)
    return {
        "image_id": image_id,
        "category_id": 1,
        "keypoints": [float(v) for v in values.ravel()],
        "score": float(score.mean()),
        "track_id": track,
    }


def write_coco_json(
    path: PathLike,
    xy,
    score,
    *,
    image_ids: Sequence[Hashable] | None = None,
    extra_people: Sequence[tuple[Any, Any]] = (),
) -> Path:
    """Write people's keypoints as a COCO results list; refuses to replace a file.

    Each person gets one entry per frame where any of its joints is finite, with
    ``"score"`` the mean keypoint score and ``"track_id"`` its index: 0 for ``xy``, 1, 2,
    ... for ``extra_people``.

    Args:
      path: the ``.json`` file to create; it must not exist yet.
      xy: (T, J, 2) pixels of the main person; NaN joints are written as ``0, 0`` with
        score 0, and a frame of NaN joints has no entry.
      score: (T, J) keypoint scores.
      image_ids: the T frames' ``image_id``; ``0 .. T-1`` by default.
      extra_people: ``(xy, score)`` pairs of the same shapes, for further people.

    Returns:
      ``path``, as a Path.

    Raises:
      FileExistsError: if ``path`` exists.
    """
    path = Path(path)
    refuse_existing(path.parent, [path])
    people = [(xy, score), *extra_people]
    ids = list(range(len(np.asarray(xy)))) if image_ids is None else list(image_ids)
    entries = [
        _coco_entry(image_id, frame_xy, frame_score, track)
        for track, (person_xy, person_score) in enumerate(people)
        for image_id, frame_xy, frame_score in zip(
            ids, np.asarray(person_xy, float), np.asarray(person_score, float), strict=True
        )
        if np.isfinite(frame_xy).all(axis=-1).any()
    ]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entries, allow_nan=False), encoding="utf-8")
    return path


# -- arrays: VideoPose3D's custom .npz, .npy, .csv ------------------------------------


def _from_array(values, skeleton: Skeleton, path: Path, frame_ids=None, width=None, height=None):
    """Keypoints of a (T, J, 2) or (T, J, 3) ``(x, y, score)`` number array from ``path``."""
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise KeypointsError(f"{path}: expected numbers, got an array of dtype {values.dtype}")
    if values.ndim != 3 or values.shape[2] not in (2, 3) or values.shape[0] == 0:
        raise KeypointsError(
            f"{path}: expected shape (T>0, J, 2) or (T>0, J, 3), got {values.shape}"
        )
    if values.shape[1] != skeleton.num_joints:
        raise KeypointsError(
            f"{path}: {values.shape[1]} joints per frame, but skeleton {skeleton.name!r} has "
            f"{skeleton.num_joints}; pass the skeleton the file uses"
        )
    score = values[..., 2] if values.shape[2] == 3 else np.ones(values.shape[:2])
    frame_ids = range(len(values)) if frame_ids is None else frame_ids
    return _keypoints(values[..., :2], score, skeleton, frame_ids, width, height)


def _pickled_dict(arrays: dict[str, np.ndarray], key: str, path: Path) -> dict:
    """The dict pickled under ``key`` of an ``.npz`` read with pickles allowed."""
    if key not in arrays:
        raise KeypointsError(f"{path}: missing key {key!r} (found {sorted(arrays)})")
    value = arrays[key]
    if value.dtype != object or value.shape != () or not isinstance(value.item(), dict):
        raise KeypointsError(f"{path}: {key!r} should hold one pickled dict")
    return value.item()


def _check_coco_metadata(metadata: dict, path: Path) -> None:
    """VideoPose3D's metadata must describe COCO's 17 joints with COCO's mirror pairs."""
    layout, joints = metadata.get("layout_name"), metadata.get("num_joints")
    if layout != "coco" or joints != COCO_17.num_joints:
        raise KeypointsError(
            f"{path}: metadata says layout {layout!r} with {joints} joints; only VideoPose3D's "
            "'coco' layout of 17 joints is read"
        )
    symmetry = metadata.get("keypoints_symmetry")
    expected = [list(COCO_17.left), list(COCO_17.right)]
    if symmetry is not None and [list(side) for side in symmetry] != expected:
        raise KeypointsError(
            f"{path}: keypoints_symmetry {symmetry!r} is not COCO's left/right {expected}"
        )


def read_videopose3d_custom(
    path: PathLike, *, allow_pickle: bool, video: str | None = None
) -> Keypoints:
    """Read VideoPose3D's ``data_2d_custom_<name>.npz`` (from ``prepare_data_2d_custom.py``).

    The file holds two pickled dicts: ``positions_2d = {video: {"custom": [(T, 17, 2)]}}``
    in pixels, and ``metadata = {"layout_name": "coco", "num_joints": 17,
    "keypoints_symmetry": [left, right], "video_metadata": {video: {"w": W, "h": H}}}``.
    Unpickling runs any code the file's author put in it, so this refuses unless
    ``allow_pickle=True``: pass it only for files you trust. The file has no scores (all
    1); frames are numbered ``0 .. T-1``.

    Args:
      path: the ``.npz`` file.
      allow_pickle: whether to unpickle the file (it cannot be read otherwise).
      video: the video to read; needed when the file holds several.

    Returns:
      :class:`Keypoints` of skeleton ``COCO_17``: xy (T, 17, 2), with the video's size.

    Raises:
      KeypointsError: naming the file and the problem (pickles not allowed, a corrupt
        archive, a missing key, a layout other than COCO's, a video not named or absent).
    """
    path = _existing(path)
    if not allow_pickle:
        raise KeypointsError(
            f"{path}: VideoPose3D's custom 2D file stores Python pickles, and unpickling runs "
            "code; pass --allow-pickle (allow_pickle=True) only for files you trust"
        )
    try:
        arrays = read_npz(path, allow_pickle=True)
    except LiftingFormatError as err:
        raise KeypointsError(str(err)) from err
    positions = _pickled_dict(arrays, "positions_2d", path)
    metadata = _pickled_dict(arrays, "metadata", path)
    _check_coco_metadata(metadata, path)
    videos = sorted(positions, key=_natural_key)
    if video is None and len(videos) != 1:
        raise KeypointsError(f"{path}: holds {len(videos)} videos; name one with video=: {videos}")
    name = videos[0] if video is None else video
    if name not in positions:
        raise KeypointsError(f"{path}: no video {name!r} (videos in the file: {videos})")
    try:
        (values,) = positions[name]["custom"]
    except (TypeError, KeyError, ValueError) as err:
        raise KeypointsError(
            f"{path}: positions_2d[{name!r}] should be {{'custom': [one (T, 17, 2) array]}}"
        ) from err
    size = metadata.get("video_metadata", {}).get(name, {})
    return _from_array(values, COCO_17, path, None, size.get("w"), size.get("h"))


def _number(text: str) -> float | None:
    """A CSV cell's number (NaN when empty, as pandas writes NaN), or None if not one."""
    try:
        return float(text) if text.strip() else float("nan")
    except ValueError:
        return None


def _read_csv(path: Path) -> np.ndarray:
    """The (T, L) numbers of a CSV with one row per frame; a non-numeric first row is a header."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            rows = [
                (n, row)
                for n, row in enumerate(csv.reader(file), start=1)
                if any(cell.strip() for cell in row)
            ]
    except (UnicodeDecodeError, csv.Error) as err:
        raise KeypointsError(f"{path}: not a readable CSV text file ({err})") from err
    if rows and None in map(_number, rows[0][1]):
        rows = rows[1:]
    table = []
    for n, row in rows:
        values = [_number(cell) for cell in row]
        if None in values:
            cell = row[values.index(None)]
            raise KeypointsError(f"{path}: row {n}: {cell!r} is not a number")
        table.append(values)
    if not table:
        raise KeypointsError(f"{path}: no rows of numbers")
    lengths = sorted({len(values) for values in table})
    if len(lengths) > 1:
        raise KeypointsError(f"{path}: rows hold different numbers of values: {lengths}")
    return np.asarray(table)


def read_array(path: PathLike, *, skeleton: Skeleton = COCO_17) -> Keypoints:
    """Read a plain ``.npy`` array or ``.csv`` table of one person's keypoints.

    An ``.npy`` holds a number array (T, J, 2) of ``x, y`` or (T, J, 3) of ``x, y,
    score`` (read without pickles). A ``.csv`` holds one row per frame of ``J * 2``
    numbers (``x, y`` per joint) or ``J * 3`` (``x, y, score`` per joint), comma
    separated, with an optional header row; an empty cell is NaN. Without scores every
    score is 1; frames are numbered ``0 .. T-1``; the image size is unknown.

    Args:
      path: the ``.npy`` or ``.csv`` file.
      skeleton: the joints' skeleton; ``J`` must be its joint count.

    Returns:
      :class:`Keypoints`: xy (T, J, 2), score (T, J).

    Raises:
      KeypointsError: naming the file and the problem (an unreadable file, not numbers,
        a wrong shape, a joint count other than the skeleton's).
    """
    path = _existing(path)
    if path.suffix.lower() == ".csv":
        table, joints = _read_csv(path), skeleton.num_joints
        if table.shape[1] not in (2 * joints, 3 * joints):
            raise KeypointsError(
                f"{path}: rows of {table.shape[1]} numbers; the {joints} joints of skeleton "
                f"{skeleton.name!r} need {2 * joints} (x, y) or {3 * joints} (x, y, score)"
            )
        return _from_array(table.reshape(len(table), joints, -1), skeleton, path)
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise KeypointsError(f"{path}: not a readable .npy array ({err})") from err
    return _from_array(values, skeleton, path)


def read_keypoints(
    path: PathLike,
    *,
    allow_pickle: bool = False,
    person: Hashable | None = None,
    video: str | None = None,
    skeleton: Skeleton = COCO_17,
) -> Keypoints:
    """Read one person's keypoints from a file, choosing the reader by its suffix.

    ``.json``: :func:`read_coco_json` (with ``person``); ``.npz``:
    :func:`read_videopose3d_custom` (with ``allow_pickle`` and ``video``); ``.npy`` and
    ``.csv``: :func:`read_array` (with ``skeleton``).

    Raises:
      KeypointsError: for another suffix, or as the reader does.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_coco_json(path, person=person)
    if suffix == ".npz":
        return read_videopose3d_custom(path, allow_pickle=allow_pickle, video=video)
    if suffix in (".npy", ".csv"):
        return read_array(path, skeleton=skeleton)
    raise KeypointsError(
        f"{path}: unknown keypoint file type {suffix or '(no suffix)'!r}; expected one of "
        f"{', '.join(SUFFIXES)}"
    )


# -- filling gaps ---------------------------------------------------------------------


def _interpolate(valid: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """One joint's track (T, 2), linear between the ``valid`` (T,) frames, constant beyond."""
    t = np.arange(len(xy))
    return np.stack([np.interp(t, t[valid], xy[valid, c]) for c in range(2)], axis=-1)


def fill_gaps(kp: Keypoints, *, threshold: float) -> tuple[Keypoints, dict]:
    """Fill undetected joints by linear interpolation over time, joint by joint.

    A joint is a gap in a frame when its score is below ``threshold`` or its coordinates
    are not finite (every joint of a missing frame). Gaps between detections are
    interpolated linearly; gaps before the first or after the last detection take the
    nearest detected value. Scores and ``missing`` are kept: they still describe what
    was detected.

    Args:
      kp: keypoints, xy (T, J, 2).
      threshold: the lowest score of a detected joint, in ``[0, 1]``.

    Returns:
      ``(filled, report)``: the keypoints with finite xy (T, J, 2), and
      ``{"filled_joints": the number of (frame, joint) gaps filled, "missing_frames":
      the list of missing frame indices}``.

    Raises:
      KeypointsError: if ``threshold`` is outside ``[0, 1]``, no frame has a joint at or
        above it, or some joint never has (naming the joints).
    """
    if not 0.0 <= threshold <= 1.0:
        raise KeypointsError(f"threshold must be in [0, 1], got {threshold}")
    valid = (kp.score >= threshold) & np.isfinite(kp.xy).all(axis=-1)
    frames = len(kp.frame_ids)
    if not valid.any():
        raise KeypointsError(
            f"no frame of {frames} has a joint with score >= {threshold} "
            f"({len(kp.missing)} have no person): nothing to fill from"
        )
    never = [kp.skeleton.joint_names[j] for j in np.flatnonzero(~valid.any(axis=0))]
    if never:
        raise KeypointsError(
            f"joints {never} never have a score >= {threshold} in the {frames} frames, so "
            "they cannot be filled; lower the threshold"
        )
    xy = np.stack(
        [_interpolate(valid[:, j], kp.xy[:, j]) for j in range(kp.skeleton.num_joints)], axis=1
    )
    filled = dataclasses.replace(kp, xy=xy.astype(np.float32))
    return filled, {"filled_joints": int((~valid).sum()), "missing_frames": list(kp.missing)}


# -- skeletons ------------------------------------------------------------------------

H36M_FROM_COCO: dict[str, dict[str, float]] = {
    "hip": {"left_hip": 0.5, "right_hip": 0.5},
    "right_hip": {"right_hip": 1.0},
    "right_knee": {"right_knee": 1.0},
    "right_ankle": {"right_ankle": 1.0},
    "left_hip": {"left_hip": 1.0},
    "left_knee": {"left_knee": 1.0},
    "left_ankle": {"left_ankle": 1.0},
    "spine": {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25},
    "thorax": {"left_shoulder": 0.5, "right_shoulder": 0.5},
    "neck": {"nose": 1.0},
    "head": {"left_eye": 1.0, "right_eye": 1.0, "nose": -1.0},
    "left_shoulder": {"left_shoulder": 1.0},
    "left_elbow": {"left_elbow": 1.0},
    "left_wrist": {"left_wrist": 1.0},
    "right_shoulder": {"right_shoulder": 1.0},
    "right_elbow": {"right_elbow": 1.0},
    "right_wrist": {"right_wrist": 1.0},
}
"""Each Human3.6M joint as a weighted sum of COCO joints (see :func:`coco_to_h36m`)."""


def _weights(table: dict[str, dict[str, float]], source: Skeleton, target: Skeleton):
    """The (J_target, J_source) matrix of a joint-name table."""
    weights = np.zeros((target.num_joints, source.num_joints))
    for i, name in enumerate(target.joint_names):
        for source_name, weight in table[name].items():
            weights[i, source.joint_names.index(source_name)] = weight
    return weights


COCO_TO_H36M = _weights(H36M_FROM_COCO, COCO_17, H36M_17)
"""(17, 17) matrix mapping COCO-17 joints (columns) to Human3.6M-17 joints (rows)."""


def coco_to_h36m(xy) -> np.ndarray:
    """COCO-17 keypoints (..., 17, 2) to Human3.6M-17 (..., 17, 2), in ``H36M_17`` order.

    COCO has no pelvis, spine or top of the head, so those joints are approximations:
    the limbs are copied; ``hip`` is the mean of the hips; ``thorax`` the mean of the
    shoulders; ``spine`` the midpoint of ``hip`` and ``thorax``; ``neck`` is the nose;
    ``head`` is the mean of the eyes moved away from the nose by the eye-nose offset
    (``left_eye + right_eye - nose``). Detections lifted this way differ from
    Human3.6M's mocap joints most at the spine, neck and head.

    Raises:
      KeypointsError: unless the last two axes are (17, 2).
    """
    xy = np.asarray(xy)
    if xy.shape[-2:] != (COCO_17.num_joints, 2):
        raise KeypointsError(f"coco_to_h36m needs COCO keypoints (..., 17, 2), got {xy.shape}")
    return np.einsum("ij,...jc->...ic", COCO_TO_H36M, xy).astype(xy.dtype)


def convert_keypoints(kp: Keypoints, skeleton_to: Skeleton) -> Keypoints:
    """The keypoints in skeleton ``skeleton_to``.

    Same joint names: the same keypoints, labelled ``skeleton_to``. COCO-17 to
    Human3.6M-17: :func:`coco_to_h36m`, each derived joint scored with the lowest score
    of the COCO joints it is made of.

    Raises:
      KeypointsError: naming both skeletons, for any other pair.
    """
    source = kp.skeleton
    if source.joint_names == skeleton_to.joint_names:
        return dataclasses.replace(kp, skeleton=skeleton_to)
    if source.joint_names != COCO_17.joint_names or skeleton_to.joint_names != H36M_17.joint_names:
        raise KeypointsError(
            f"no conversion from skeleton {source.name!r} to {skeleton_to.name!r}; only "
            f"{COCO_17.name!r} to {H36M_17.name!r} is known"
        )
    sources = COCO_TO_H36M != 0
    score = np.where(sources, kp.score[..., None, :], np.float32(np.inf)).min(axis=-1)
    return dataclasses.replace(kp, xy=coco_to_h36m(kp.xy), score=score, skeleton=skeleton_to)


# -- image size -----------------------------------------------------------------------


def with_image_size(kp: Keypoints, width: int, height: int) -> Keypoints:
    """The keypoints with the image size ``width`` x ``height`` pixels (positive ints)."""
    if not (_positive_int(width) and _positive_int(height)):
        raise KeypointsError(f"image size must be positive ints, got {width!r} x {height!r}")
    return dataclasses.replace(kp, width=width, height=height)


def normalise(kp: Keypoints) -> np.ndarray:
    """VideoPose3D's normalised screen coordinates (T, J, 2) float32: ``X / w * 2 - [1, h / w]``.

    Raises:
      KeypointsError: if the image size is unknown (set it with :func:`with_image_size`).
    """
    if kp.width is None or kp.height is None:
        raise KeypointsError(
            "the image size is unknown (the keypoint file does not give it): pass --width and "
            "--height (with_image_size)"
        )
    return normalize_screen_coordinates(kp.xy, kp.width, kp.height).astype(np.float32)
