"""Reading ``.npz`` archives of lifting data, with errors that name the file.

Shared by the readers of VideoPose3D's files (:mod:`chiral_tasks.lifting.videopose3d`)
and of our own (:mod:`chiral_tasks.lifting.npz`).
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike


class LiftingFormatError(ValueError):
    """A lifting data file is malformed; the message names the file and the problem."""


def read_npz(path: PathLike, *, allow_pickle: bool) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read eagerly; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise LiftingFormatError(
            f"{path}: not an .npz archive (no zip directory; truncated or another format?)"
        )
    try:
        with np.load(path, allow_pickle=allow_pickle) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, pickle.UnpicklingError) as err:
        raise LiftingFormatError(f"{path}: corrupt .npz archive ({err})") from err
    except ValueError as err:
        raise LiftingFormatError(f"{path}: unreadable array in the archive ({err})") from err


def require_keys(arrays: Mapping[str, Any], keys: Sequence[str], path: PathLike) -> None:
    """Raise :class:`LiftingFormatError` naming the ``keys`` missing from ``arrays``."""
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise LiftingFormatError(f"{path}: missing keys {missing} (found {sorted(arrays)})")
