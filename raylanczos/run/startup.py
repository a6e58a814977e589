"""What a run's start-up overlaps with Ray's.

Starting a local Ray (or joining one) takes seconds in which the driver mostly waits for
Ray's processes; building the problem (importing the framework, calling the factory,
checking the loss) takes about a second of the driver's own. :func:`beside_ray` does the
two at once, Ray on this thread (where Ray wants to start) and the build on a thread of
its own; :func:`preload_plotting` imports the plotting library while the run works, so
that its import is not paid after the last pass.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def beside_ray(prepare: Callable[[], T], connect: Callable[[], None]) -> T:
    """``prepare()`` on a thread of its own while ``connect()`` runs on this one; returns
    what ``prepare`` returned. An error of ``prepare`` (the problem's: a bad factory, a loss
    that fails) is raised in preference to one of ``connect``, once both have ended; an
    interrupt (Ctrl-C) is raised at once, without waiting for ``prepare``."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = prepare()
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = err

    worker = threading.Thread(target=run, name="raylanczos-prepare", daemon=True)
    worker.start()
    try:
        connect()
    except Exception:
        worker.join()
        if "error" in outcome:
            raise outcome["error"] from None  # type: ignore[misc]
        raise
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def preload_plotting() -> None:
    """Import matplotlib's figure and PNG canvas on a daemon thread (a third of a second
    on a laptop core), so that the first plot does not wait for them."""

    def load() -> None:
        import matplotlib.figure  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401

    threading.Thread(target=load, name="raylanczos-preload-plotting", daemon=True).start()
