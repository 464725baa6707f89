"""Kinetics-skeleton clips in ST-GCN's layouts.

Two input formats:

* **Per-clip JSON** (the released ``kinetics_train/<id>.json``)::

      {"data": [{"frame_index": 1,
                 "skeleton": [{"pose": [x0, y0, ..., x17, y17], "score": [s0, ..., s17]},
                              ...]},
                ...],
       "label": "abseiling", "label_index": 0}

  with coordinates in [0, 1] of the frame and 1-based ``frame_index``, plus a
  label index file ``{video_id: {"has_skeleton": bool, "label": str,
  "label_index": int}}``.
* **Preprocessed split**: ``<split>_data.npy`` holding (N, C=3, T, V=18, M=2)
  float32, and labels: ST-GCN's ``<split>_label.pkl`` (a pickle of
  ``(sample_names, labels)``, read only on request since unpickling runs code
  from the file) or our pickle-free JSON ``{"sample_name": [...], "label": [...]}``.

The tensor of one clip is (C=3, T, V=18, M): channels x, y, score; joints in
OpenPose-18 order (``chiral_jax.skeletons.OPENPOSE_18``). As in ST-GCN's feeder,
the first ``num_person_in`` skeletons of each frame are read, ``xy -= 0.5``, xy is
zeroed where the score is 0, and each frame keeps its ``num_person_out``
skeletons with the highest score summed over the joints (a per-frame ranking,
so a slot need not hold the same person from frame to frame).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from chiral_tasks.common.files import atomic_path
from chiral_tasks.recognition.model import INPUT_LAYOUT

NUM_JOINTS = 18
NUM_CHANNELS = 3
_NUMBER_TYPES = (int, float)  # exact JSON number types: bool is not one of them


# -- writing -----------------------------------------------------------------------------


def write_clip_json(path, frames: Sequence, label: str, label_index: int) -> None:
    """Writes one clip in the Kinetics-skeleton JSON format.

    Args:
      path: the output ``.json`` file.
      frames: per frame, a sequence of ``(pose, score)`` skeletons with ``pose``
        (18, 2) x, y in [0, 1] and ``score`` (18,); frame ``i`` gets
        ``frame_index = i + 1``. A frame may have no skeleton.
      label: the class name.
      label_index: the class index.
    """
    data = []
    for i, skeletons in enumerate(frames):
        entries = []
        for pose, score in skeletons:
            pose = np.asarray(pose, dtype=np.float64)
            score = np.asarray(score, dtype=np.float64)
            if pose.shape != (NUM_JOINTS, 2) or score.shape != (NUM_JOINTS,):
                raise ValueError(
                    f"{path}: frame {i}: pose must be ({NUM_JOINTS}, 2) and score "
                    f"({NUM_JOINTS},), got {pose.shape} and {score.shape}"
                )
            if not (np.all(np.isfinite(pose)) and np.all(np.isfinite(score))):
                raise ValueError(f"{path}: frame {i}: NaN or infinite pose or score")
            entries.append({"pose": pose.reshape(-1).tolist(), "score": score.tolist()})
        data.append({"frame_index": i + 1, "skeleton": entries})
    clip = {"data": data, "label": str(label), "label_index": int(label_index)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(clip))


def write_label_index(path, entries: dict[str, dict]) -> None:
    """Writes a label index ``{video_id: {"has_skeleton", "label", "label_index"}}``."""
    out = {}
    for video_id, entry in entries.items():
        missing = {"has_skeleton", "label", "label_index"} - set(entry)
        if missing:
            raise ValueError(f"label index entry {video_id!r} lacks {sorted(missing)}")
        out[video_id] = {
            "has_skeleton": bool(entry["has_skeleton"]),
            "label": str(entry["label"]),
            "label_index": int(entry["label_index"]),
        }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(out))


# -- per-clip JSON -----------------------------------------------------------------------


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _require(where: str, mapping, keys: Sequence[str]) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(mapping).__name__}")
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")


def _finite_vector(where: str, values, length: int) -> np.ndarray:
    """``values`` as float32, checked: ``length`` JSON numbers, finite in float32."""
    if not isinstance(values, list) or len(values) != length:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise ValueError(f"{where}: expected a list of {length} numbers, got {got}")
    if not all(type(v) in _NUMBER_TYPES for v in values):
        bad = next(v for v in values if type(v) not in _NUMBER_TYPES)
        raise ValueError(f"{where}: expected numbers, got {bad!r}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except OverflowError as err:  # an integer beyond float64
        raise ValueError(f"{where}: value out of range ({err})") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: NaN or infinite values")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: values beyond the float32 range")
    return arr


def _int_field(where: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value


def _label_field(where: str, value) -> int:
    label = _int_field(where, value)
    if label < 0:
        raise ValueError(f"{where}: must be >= 0, got {label}")
    return label


def _keep_top_persons(data: np.ndarray, num_person_out: int) -> np.ndarray:
    """Per frame, the ``num_person_out`` persons of highest summed score; (C, T, V, M)."""
    # A stable sort keeps file order among equal scores (ST-GCN's argsort does not).
    order = np.argsort(-data[2].sum(axis=1), axis=1, kind="stable")[:, :num_person_out]
    return np.take_along_axis(data, order[None, :, None, :], axis=3)


def load_clip(
    path, *, num_frames: int = 300, num_person_in: int = 5, num_person_out: int = 2
) -> tuple[np.ndarray, int]:
    """Reads one Kinetics-skeleton JSON clip into ST-GCN's tensor layout.

    Frame ``frame_index`` (1-based) goes to time index ``frame_index - 1``;
    frames past ``num_frames`` are dropped and missing frames are zeros.

    Returns:
      ``(data, label_index)`` with data (3, num_frames, 18, num_person_out) float32.

    Raises:
      FileNotFoundError: if the file is missing.
      ValueError: naming the file and frame on invalid JSON, missing keys, a
        negative or non-integer ``label_index``, a pose that is not 36 numbers or
        a score that is not 18 (booleans and strings are not numbers), NaN or a
        value beyond float32, a frame index below 1, or a clip with no skeleton
        in its first ``num_frames`` frames.
    """
    if num_frames < 1 or not 1 <= num_person_out <= num_person_in:
        raise ValueError(
            f"need num_frames >= 1 and 1 <= num_person_out <= num_person_in, got "
            f"{num_frames}, {num_person_out}, {num_person_in}"
        )
    path = Path(path)
    clip = _read_json(path, "Kinetics-skeleton clip")
    _require(str(path), clip, ("data", "label_index"))
    label_index = _label_field(f"{path}: label_index", clip["label_index"])
    if not isinstance(clip["data"], list):
        raise ValueError(f"{path}: 'data' must be a list of frames")
    data = np.zeros((NUM_CHANNELS, num_frames, NUM_JOINTS, num_person_in), dtype=np.float32)
    placed = 0
    for n, frame in enumerate(clip["data"]):
        where = f"{path}: data[{n}]"
        _require(where, frame, ("frame_index", "skeleton"))
        t = _int_field(f"{where}.frame_index", frame["frame_index"]) - 1
        if t < 0:
            raise ValueError(f"{where}: frame_index must be >= 1, got {t + 1}")
        if not isinstance(frame["skeleton"], list):
            raise ValueError(f"{where}: 'skeleton' must be a list")
        for m, skeleton in enumerate(frame["skeleton"][:num_person_in]):
            at = f"{where}.skeleton[{m}]"
            _require(at, skeleton, ("pose", "score"))
            pose = _finite_vector(f"{at}.pose", skeleton["pose"], 2 * NUM_JOINTS)
            score = _finite_vector(f"{at}.score", skeleton["score"], NUM_JOINTS)
            if t < num_frames:
                data[0, t, :, m] = pose[0::2]
                data[1, t, :, m] = pose[1::2]
                data[2, t, :, m] = score
                placed += 1
    if placed == 0:
        raise ValueError(f"{path}: no skeleton in the first {num_frames} frames")
    data[:2] = np.where(data[2] != 0, data[:2] - 0.5, 0.0)
    return _keep_top_persons(data, num_person_out), label_index


def read_label_index(path) -> dict:
    """Reads and checks a label index ``{video_id: {"has_skeleton", "label", "label_index"}}``.

    Raises:
      FileNotFoundError: if the file is missing.
      ValueError: naming the file and video id on invalid JSON, a missing key, a
        ``has_skeleton`` that is not a boolean, a ``label_index`` that is not an
        integer >= 0, or a ``label`` that is not a string.
    """
    path = Path(path)
    index = _read_json(path, "label index")
    if not isinstance(index, dict):
        raise ValueError(f"{path}: expected a JSON object mapping video ids to labels")
    for video_id, entry in index.items():
        where = f"{path}: {video_id!r}"
        _require(where, entry, ("has_skeleton", "label_index"))
        if not isinstance(entry["has_skeleton"], bool):
            raise ValueError(
                f"{where}: has_skeleton must be true or false, got {entry['has_skeleton']!r}"
            )
        _label_field(f"{where}: label_index", entry["label_index"])
        if "label" in entry and not isinstance(entry["label"], str):
            raise ValueError(f"{where}: label must be a string, got {entry['label']!r}")
    return index


def iter_kinetics_dir(
    clips_dir, label_index_path, **clip_kwargs
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yields ``(video_id, data, label_index)`` for each usable clip of a directory.

    As ST-GCN does, walks the ``*.json`` files of ``clips_dir`` (sorted), looks each
    id up in the label index and skips clips whose ``has_skeleton`` is false.
    ``clip_kwargs`` go to :func:`load_clip`.

    Raises:
      ValueError: if a clip is absent from the label index or its
        ``label_index`` disagrees with it, or as :func:`read_label_index` and
        :func:`load_clip` do.
    """
    clips_dir = Path(clips_dir)
    label_index_path = Path(label_index_path)
    if not clips_dir.is_dir():
        raise FileNotFoundError(f"Kinetics-skeleton clip directory not found: {clips_dir}")
    index = read_label_index(label_index_path)
    for path in sorted(clips_dir.glob("*.json")):
        if path.stem not in index:
            raise ValueError(f"{path}: video id {path.stem!r} is not in {label_index_path}")
        entry = index[path.stem]
        if not entry["has_skeleton"]:
            continue
        data, label = load_clip(path, **clip_kwargs)
        if label != entry["label_index"]:
            raise ValueError(
                f"{path}: label_index {label} disagrees with {label_index_path} "
                f"({entry['label_index']})"
            )
        yield path.stem, data, label


def load_kinetics_dir(
    clips_dir, label_index_path, **clip_kwargs
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Loads every usable clip of a directory (see :func:`iter_kinetics_dir`).

    Returns:
      ``(data, labels, ids)``: (N, 3, T, 18, M) float32, (N,) int64, N video ids.
    """
    clips = list(iter_kinetics_dir(clips_dir, label_index_path, **clip_kwargs))
    if not clips:
        raise ValueError(f"no clip with a skeleton in {clips_dir}")
    ids, data, labels = zip(*clips, strict=True)
    return np.stack(data), np.asarray(labels, dtype=np.int64), list(ids)


# -- preprocessed split ------------------------------------------------------------------


def _check_split(where: str, data: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    if data.ndim != 5 or data.shape[1] != NUM_CHANNELS or data.shape[3] != NUM_JOINTS:
        raise ValueError(
            f"{where}: data must have shape (N, {NUM_CHANNELS}, T, {NUM_JOINTS}, M), "
            f"got {data.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be a 1-D integer array, got {labels.dtype}")
    if not data.shape[0] == labels.shape[0] == len(names):
        raise ValueError(
            f"{where}: {data.shape[0]} samples, {labels.shape[0]} labels and "
            f"{len(names)} sample names disagree"
        )


def save_npy_split(data_npy, label_json, data, labels, sample_names: Sequence[str]) -> None:
    """Writes a split as ``data_npy`` (N, 3, T, 18, M) float32 and our JSON labels."""
    data = np.asarray(data, dtype=np.float32)
    labels = np.asarray(labels)
    names = [str(n) for n in sample_names]
    _check_split(str(data_npy), data, labels, names)
    if not str(data_npy).endswith(".npy"):  # np.save's own rule for a name
        data_npy = f"{data_npy}.npy"
    with atomic_path(data_npy) as tmp, open(tmp, "wb") as f:
        np.save(f, data)
    with atomic_path(label_json) as tmp:
        tmp.write_text(json.dumps({"sample_name": names, "label": labels.tolist()}))


def _read_labels(path: Path, trust_pickle: bool) -> tuple[list[str], np.ndarray]:
    if path.suffix == ".pkl":
        if not trust_pickle:
            raise ValueError(
                f"{path} is a pickle: loading it can run arbitrary code. Pass "
                "trust_pickle=True only for a file you trust, then save_npy_split "
                "rewrites the labels as JSON"
            )
        if not path.is_file():
            raise FileNotFoundError(f"label file not found: {path}")
        try:
            with path.open("rb") as f:
                content = pickle.load(f)
        except Exception as err:  # unpickling raises many types on a corrupt file
            raise ValueError(f"{path}: not a readable pickle ({err!r})") from err
        if not (isinstance(content, tuple | list) and len(content) == 2):
            raise ValueError(f"{path}: expected a pickled (sample_names, labels) pair")
        names, labels = content
    else:
        content = _read_json(path, "label file")
        _require(str(path), content, ("sample_name", "label"))
        names, labels = content["sample_name"], content["label"]
        # JSON true/false would pass np.asarray as 1/0 when mixed with integers.
        if not isinstance(labels, list):
            raise ValueError(f"{path}: 'label' must be a list, got {type(labels).__name__}")
        if not all(type(v) is int for v in labels):
            bad = next(v for v in labels if type(v) is not int)
            raise ValueError(f"{path}: 'label' must hold integers, got {bad!r}")
    return _check_labels(path, names, labels)


def _check_labels(path: Path, names, labels) -> tuple[list[str], np.ndarray]:
    """Sample names (unique strings) and labels ((N,) int64, >= 0) of a label file."""
    if isinstance(names, str | bytes) or not isinstance(names, list | tuple | np.ndarray):
        raise ValueError(f"{path}: sample names must be a list, got {type(names).__name__}")
    if not all(isinstance(n, str) for n in names):
        bad = next(n for n in names if not isinstance(n, str))
        raise ValueError(f"{path}: sample names must be strings, got {bad!r}")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"{path}: sample name {name!r} appears more than once")
            seen.add(name)
    labels = np.asarray(labels)
    if labels.ndim == 1 and labels.size == 0:
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: labels must be a 1-D integer array, got dtype {labels.dtype}, "
            f"shape {labels.shape}"
        )
    if len(labels) != len(names):
        raise ValueError(f"{path}: {len(names)} sample names for {len(labels)} labels")
    as_int64 = labels.astype(np.int64)
    if not np.array_equal(as_int64, labels):
        raise ValueError(f"{path}: labels beyond the int64 range")
    negative = np.flatnonzero(as_int64 < 0)
    if negative.size:
        i = int(negative[0])
        raise ValueError(
            f"{path}: label {as_int64[i]} of sample {names[i]!r} is negative "
            f"({negative.size} negative labels); class indices start at 0"
        )
    return names, as_int64


def load_npy_split(
    data_npy, label_path, *, trust_pickle: bool = False, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads a preprocessed split: ``<split>_data.npy`` and its labels.

    The data is memory-mapped read-only. ``label_path`` is our JSON
    (``{"sample_name": [...], "label": [...]}``) or, with ``trust_pickle=True``,
    ST-GCN's ``.pkl``. ``check_finite`` scans the data for NaN in chunks (one
    pass over the file).

    Returns:
      ``(data, labels, sample_names)``: (N, 3, T, 18, M) float32 memmap, (N,) int64.

    Raises:
      FileNotFoundError: if a file is missing.
      ValueError: naming the file on data that is not float32 or is empty, a
        wrong shape, NaN or infinite values, labels that are not integers >= 0,
        sample names that are not unique strings, or counts that disagree.
    """
    data_npy = Path(data_npy)
    if not data_npy.is_file():
        raise FileNotFoundError(f"data file not found: {data_npy}")
    try:
        data = np.load(data_npy, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{data_npy}: not a plain numeric .npy file ({err})") from err
    # float32 is what callers get and what ST-GCN writes: a float64 file would come
    # back float64 (and values past float32's range turn inf once cast), a bool or
    # string file as non-numbers.
    if data.dtype.kind != "f" or data.dtype.itemsize != 4:
        hint = " (np.load(path).astype(np.float32) converts it)" * (data.dtype.kind in "fiu")
        raise ValueError(f"{data_npy}: data must be float32, got {data.dtype}{hint}")
    names, labels = _read_labels(Path(label_path), trust_pickle)
    _check_split(str(data_npy), data, labels, names)
    if data.size == 0:
        raise ValueError(f"{data_npy}: no data (shape {data.shape})")
    if check_finite:
        chunk = 256
        for start in range(0, data.shape[0], chunk):
            if not np.all(np.isfinite(data[start : start + chunk])):
                raise ValueError(f"{data_npy}: NaN or infinite values near sample {start}")
    return data, labels, names


# -- chirality ---------------------------------------------------------------------------


def mirror_clip(data):
    """The chirality transform of clips shaped (..., C=3, T, V=18, M), numpy or JAX.

    Negates x (channel 0, already centred on 0) and swaps each left/right
    OpenPose-18 joint pair; y and the score channel keep their sign.
    """
    return INPUT_LAYOUT.transform(data, joint_axis=-2, dim_axis=-4)
