"""Helpers for tests of file writers: a folder's exact state, and a fixed umask."""

import contextlib
import hashlib
import os
import stat
from pathlib import Path


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: relative name -> (mode, sha256 of a file's bytes)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(folder))] = (path.stat().st_mode, digest)
    return state


def modes(paths) -> set[int]:
    """The permission bits of ``paths`` (a set: ``{0o644}`` when all are 0644)."""
    return {stat.S_IMODE(Path(p).stat().st_mode) for p in paths}


@contextlib.contextmanager
def umask(mask: int):
    """Run the block under umask ``mask``, then restore the old one."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)
