"""Progress bars that are drawn on a terminal only.

A bar redrawn into a log file (``chiral ... > log``) turns into one long line of
carriage returns, so every bar the tasks show goes through :func:`progress_bar`, which
draws it only when standard error is a terminal; a log gets the commands' own
one-line-per-event messages instead.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when ``enabled`` and stderr is a terminal."""
    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), **kwargs)
