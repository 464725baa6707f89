"""Stopping cleanly on Ctrl-C (SIGINT) and SIGTERM.

:func:`install` (the ``chiral`` entry point calls it) makes both signals raise
:class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM, which ``timeout``,
docker and job schedulers send). Inside :func:`deferred` (the trainer's loop) the
first signal is only recorded, and :func:`check` raises it at the next safe point:
between steps, never in the middle of writing a checkpoint. A second signal raises
at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that training saves its state before stopping."""


_pending: list[type[KeyboardInterrupt]] = []  # the first signal inside deferred()
_raised = [False]  # whether check() raised it: later signals then raise at once
_depth = [0]


def _handler(signum, frame) -> None:
    error = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _depth[0] and not _pending:
        _pending.append(error)
        return
    raise error()


def install() -> Callable[[], None]:
    """Route SIGINT and SIGTERM through this module; return a function that undoes it.

    Does nothing outside the main thread (Python delivers signals only there).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block, a first signal waits for :func:`check` (or the block's end)."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        unraised = _pending[0] if _pending and not _raised[0] else None
        if not _depth[0]:
            _pending.clear()
            _raised[0] = False
    if unraised is not None and not _depth[0]:
        raise unraised()


def check() -> None:
    """Raise the signal recorded inside :func:`deferred`, if any (once)."""
    if _pending and not _raised[0]:
        _raised[0] = True
        raise _pending[0]()
