"""Writing files safely: atomically, and never over files nobody asked to replace.

:func:`atomic_path` gives a writer a temporary name next to the real one and renames
the finished file into place, so an interrupted writer never leaves a half-written
file under the real name. :func:`refuse_existing` lets a generator check, before it
writes anything, that none of the files it is about to write exists yet.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def _umask() -> int:
    """The process's umask (reading it means setting it: it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path in ``path``'s folder that becomes ``path`` when the block succeeds.

    Write the file to the yielded path. When the block exits normally, the file gets
    the mode of a newly created file (``0o666`` less the umask, so 0644 under umask
    022) and :func:`os.replace` renames it onto ``path``, in one atomic step: readers
    see the old file or the complete new one, never a part. When the block raises, the
    temporary file is removed and ``path`` is left as it was. Missing parent folders
    are created.

    The temporary name is hidden and ends in ``.tmp`` (``.0001.mat.k3j_x9.tmp``), so
    loaders that glob for ``*.mat`` or ``*.json`` skip the leftover of a killed
    process. Writers that append an extension to a name lacking it (``np.save``,
    ``np.savez``) must be given an open file instead of the name; writers that read
    the format from the extension (an animation) take ``suffix=".tmp.gif"``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def refuse_existing(folder: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> None:
    """Raise :class:`FileExistsError` if any of ``paths`` (files to write) already exists.

    Args:
      folder: the output folder, named in the message (paths are shown relative to it).
      paths: every file the caller is about to write, in the order it writes them.

    Raises:
      FileExistsError: naming ``folder``, the first existing file and how many more
        exist, and the ways out (``--overwrite`` or another ``--out``).
    """
    folder = Path(folder)
    existing = [Path(p) for p in paths if os.path.lexists(p)]
    if not existing:
        return
    first = existing[0]
    name = first.relative_to(folder) if first.is_relative_to(folder) else first
    more = len(existing) - 1
    others = f" (and {more} more file{'s' if more > 1 else ''} this generator writes)"
    raise FileExistsError(
        f"{folder}: already holds {name}{others if more else ''}; pass --overwrite "
        f"to replace {'them' if more else 'it'}, or choose another --out"
    )
