"""SIGINT and SIGTERM wait for a safe point inside the training loop (common.signals)."""

import os
import signal
import threading

import pytest

from chiral_tasks.common import signals

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="Python delivers signals to the main thread only",
)


@pytest.fixture
def installed():
    restore = signals.install()
    yield
    restore()


def test_a_signal_waits_for_the_next_check(installed):
    steps = []
    with pytest.raises(signals.Terminated), signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("finished the step")  # the signal did not cut the step short
        signals.check()
        steps.append("never")
    assert steps == ["finished the step"]
    with signals.deferred():  # nothing stays pending
        signals.check()


def test_a_second_signal_raises_at_once(installed):
    with pytest.raises(KeyboardInterrupt) as second, signals.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        try:
            signals.check()
        except KeyboardInterrupt as first:
            first.add_note("first")
            os.kill(os.getpid(), signal.SIGINT)  # e.g. during the checkpoint save
            pytest.fail("the second signal was only recorded")
    assert "first" not in getattr(second.value, "__notes__", [])


def test_a_signal_left_at_the_end_of_the_block_is_raised_there(installed):
    with pytest.raises(KeyboardInterrupt), signals.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        done = True
    assert done


def test_outside_the_loop_a_signal_raises_at_once(installed):
    with pytest.raises(signals.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("not raised")
