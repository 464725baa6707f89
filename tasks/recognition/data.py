"""Finding and loading a Kinetics-skeleton split in either of ST-GCN's formats.

A dataset folder holds, per split (``train``, ``val``), the per-clip JSON layout::

    kinetics_<split>/<video_id>.json  +  kinetics_<split>_label.json

and/or the preprocessed layout::

    <split>_data.npy  +  <split>_label.json (ours)  or  <split>_label.pkl (ST-GCN's)

plus optionally ``label_name.txt`` (class names, one a line, line i = class i).
``format="auto"`` prefers the preprocessed layout (memory-mapped, fast) and falls
back to the JSON clips, which are all read into memory (fine for the validation
split; for Kinetics' 240k training clips use the preprocessed layout, e.g. from
ST-GCN's ``tools/kinetics_gendata.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from chiral_tasks.recognition.kinetics import (
    load_kinetics_dir,
    load_npy_split,
    read_label_index,
)

FORMATS = ("auto", "npy", "json")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: ``data`` (N, 3, T, 18, M) float32, ``labels`` (N,) int64, ``names``."""

    data: np.ndarray
    labels: np.ndarray
    names: list[str]


def _npy_paths(root: Path, split: str) -> tuple[Path, Path | None]:
    data = root / f"{split}_data.npy"
    for suffix in (".json", ".pkl"):
        labels = root / f"{split}_label{suffix}"
        if labels.is_file():
            return data, labels
    return data, None


def _json_paths(root: Path, split: str) -> tuple[Path, Path]:
    return root / f"kinetics_{split}", root / f"kinetics_{split}_label.json"


def load_split(data_dir, split: str, *, format: str = "auto", trust_pickle: bool = False) -> Split:
    """Loads ``split`` from ``data_dir`` (see the module docstring for the layouts).

    Raises:
      FileNotFoundError: naming the files looked for when the split is absent.
      ValueError: on an unknown format, a pickled label file without
        ``trust_pickle``, or any malformed file (from :mod:`kinetics`).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    root = Path(data_dir)
    data_npy, label_file = _npy_paths(root, split)
    clips_dir, index = _json_paths(root, split)
    has_npy = data_npy.is_file() and label_file is not None
    if format == "npy" or (format == "auto" and has_npy):
        if label_file is None:
            raise FileNotFoundError(
                f"no labels for {data_npy}: expected {split}_label.json or {split}_label.pkl "
                f"in {root}"
            )
        if label_file.suffix == ".pkl" and not trust_pickle:
            raise ValueError(
                f"{label_file} is a pickle, and loading it runs code stored in the file: "
                "pass --allow-pickle (trust_pickle=True) only for a file you trust"
            )
        data, labels, names = load_npy_split(data_npy, label_file, trust_pickle=trust_pickle)
        return Split(data, labels, names)
    if format == "json" or clips_dir.is_dir():
        data, labels, names = load_kinetics_dir(clips_dir, index)
        return Split(data, labels, names)
    raise FileNotFoundError(
        f"no {split!r} split in {root}: looked for {data_npy.name} with "
        f"{split}_label.json/.pkl, and for {clips_dir.name}/ with {index.name}"
    )


def class_names(data_dir, min_classes: int) -> list[str]:
    """Class names, index = class, at least ``min_classes`` of them.

    From ``label_name.txt`` if present (all its lines: Kinetics has 400 classes
    even when a split holds fewer), else from the JSON label indices, else
    ``"class <i>"``.

    Raises:
      ValueError: naming the file if ``label_name.txt`` has fewer than
        ``min_classes`` names or a blank line between names (it would shift the
        class of every later name), or a label index is malformed (see
        :func:`kinetics.read_label_index`) or gives one class index two names.
    """
    root = Path(data_dir)
    names_file = root / "label_name.txt"
    if names_file.is_file():
        try:
            lines = [line.strip() for line in names_file.read_text().splitlines()]
        except UnicodeDecodeError as err:
            raise ValueError(f"{names_file}: not UTF-8 text ({err})") from err
        while lines and not lines[-1]:
            lines.pop()
        if "" in lines:
            raise ValueError(
                f"{names_file}: line {lines.index('') + 1} is blank; every later name "
                "would name the wrong class"
            )
        if len(lines) < min_classes:
            raise ValueError(
                f"{names_file} names {len(lines)} classes but the labels need {min_classes}"
            )
        return lines
    found: dict[int, tuple[str, Path]] = {}
    for split_index in sorted(root.glob("kinetics_*_label.json")):
        for video_id, entry in read_label_index(split_index).items():
            if "label" not in entry:
                continue
            label, index = entry["label"], entry["label_index"]
            name, source = found.setdefault(index, (label, split_index))
            if name != label:
                raise ValueError(
                    f"{split_index}: {video_id!r} names class {index} {label!r}, but "
                    f"{source} names it {name!r}"
                )
    count = max([min_classes, *(i + 1 for i in found)])
    return [found[i][0] if i in found else f"class {i}" for i in range(count)]
