"""The problem's build beside Ray's start (:func:`raylanczos.run.startup.beside_ray`)."""

from __future__ import annotations

import threading
import time

import pytest

from raylanczos.run.startup import beside_ray

WAIT_S = 10.0


def test_the_build_and_the_connection_run_at_once():
    """Each side waits for the other to have started: done one after the other, this would fail."""
    built, connected = threading.Event(), threading.Event()

    def prepare():
        built.set()
        assert connected.wait(WAIT_S), "connect never ran while prepare did"
        return "problem"

    def connect():
        connected.set()
        assert built.wait(WAIT_S), "prepare never ran while connect did"

    assert beside_ray(prepare, connect) == "problem"


def test_the_problems_error_comes_before_the_connections():
    def prepare():
        raise ValueError("bad factory")

    def connect():
        raise ConnectionError("no Ray")

    with pytest.raises(ValueError, match="bad factory"):
        beside_ray(prepare, connect)
    with pytest.raises(ConnectionError, match="no Ray"):
        beside_ray(lambda: "problem", connect)


def test_an_interrupt_does_not_wait_for_the_build():
    release = threading.Event()

    def connect():
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        beside_ray(lambda: release.wait(WAIT_S), connect)
    assert time.monotonic() - started < WAIT_S / 2, "the interrupt waited for the build"
    release.set()
