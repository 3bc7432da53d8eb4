"""Ctrl-C during indexing: the first asks the loop to stop between images, the second stops at once."""

from __future__ import annotations

import os
import signal

import pytest

from indexer import interrupts


def test_first_ctrl_c_is_kept_until_the_loop_checks_and_a_second_raises_at_once() -> None:
    before = signal.getsignal(signal.SIGINT)
    with interrupts.stop_between_images() as stop:
        assert not stop.asked
        stop.check()  # nothing asked: no exception
        os.kill(os.getpid(), signal.SIGINT)  # handled on the main thread before the next line
        assert stop.asked  # no KeyboardInterrupt here, wherever the main thread was
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C: raised by the handler itself
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler back after the block
