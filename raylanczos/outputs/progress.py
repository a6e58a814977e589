"""What a person sees while a run goes on: log lines for job logs, one updating bar on a
terminal, or nothing.

The ``raylanczos`` logger carries start-up lines (workers, Ray, memory) and, in ``lines``
mode, one line per pass. :func:`reporting` attaches a standard-error handler for the
length of a run when the caller has configured no logging of their own, so the Python API
is not silent; the command line attaches it once (:func:`configure_logging`). A bar and
log lines share standard error: the handler clears the bar before a log line and redraws
it after.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Iterator, TextIO

from raylanczos.choices import PROGRESS_MODES, check_choice

logger = logging.getLogger("raylanczos")


#: Environment defaults that keep frameworks' start-up chatter off a run's output:
#: TensorFlow's C++ INFO and WARNING lines (oneDNN notices, CPU-feature notes, grappler's
#: "Not handling type DT_DOUBLE" in float64 mode). A value the user set is kept.
QUIET_FRAMEWORKS = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def quiet_framework_logs() -> None:
    """Apply :data:`QUIET_FRAMEWORKS` to this process's environment, where not set already.

    Frameworks read these when first imported, so this runs before a problem factory is
    imported: at the command line's start, and in each worker before it builds the problem.
    """
    for name, value in QUIET_FRAMEWORKS.items():
        os.environ.setdefault(name, value)


class Progress:
    """Reports the passes of a run (the base class reports nothing)."""

    def start(self, total_steps: int, done_steps: int, block_size: int) -> None:
        self.total, self.done_at_start, self.started = total_steps, done_steps, time.perf_counter()

    def update(self, done_steps: int, finished_draws: int, total_draws: int, row: dict[str, float]) -> None:
        """After a pass: Lanczos steps done (over all draws), draws finished, and the pass's
        timing row by column name."""

    def close(self) -> None:
        pass

    def eta(self, done_steps: int) -> tuple[float, float]:
        """(elapsed, estimated remaining) seconds, from the steps done since :meth:`start`."""
        elapsed = time.perf_counter() - self.started
        rate = (done_steps - self.done_at_start) / elapsed if elapsed > 0 else 0.0
        return elapsed, (max(self.total - done_steps, 0) / rate if rate > 0 else float("nan"))


class ProgressLines(Progress):
    """One log line per pass: position, elapsed, ETA, the time split and the driver's traffic."""

    def update(self, done_steps: int, finished_draws: int, total_draws: int, row: dict[str, float]) -> None:
        elapsed, remaining = self.eta(done_steps)
        logger.info(
            "pass %d | steps %d/%d, draws done %d/%d | elapsed %s, ETA %s | hvp %.3fs gather %.3fs node-sum %.3fs "
            "reduce %.3fs reorth %.3fs ckpt %.3fs | driver out %s in %s",
            row["step"], done_steps, self.total, finished_draws, total_draws, clock(elapsed), clock(remaining),
            row["hvp_max"], row["gather"], row["node_reduce"], row["reduce"], row["reorth"], row["checkpoint"],
            byte_size(row["bytes_sent"]), byte_size(row["bytes_received"]),
        )


class ProgressBar(Progress):
    """A single line on a terminal, redrawn after every pass."""

    #: The bar being shown, if any (the log handler clears it before writing a line).
    active: "ProgressBar | None" = None

    def __init__(self, stream: TextIO, width: int = 30):
        self.stream, self.width, self.text = stream, width, ""

    def start(self, total_steps: int, done_steps: int, block_size: int) -> None:
        super().start(total_steps, done_steps, block_size)
        ProgressBar.active = self

    def update(self, done_steps: int, finished_draws: int, total_draws: int, row: dict[str, float]) -> None:
        elapsed, remaining = self.eta(done_steps)
        fraction = done_steps / self.total if self.total else 1.0
        filled = int(round(self.width * fraction))
        self.text = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:3.0f}% steps {done_steps}/{self.total}, "
            f"draws {finished_draws}/{total_draws} | {row['total']:.3f} s/pass | elapsed {clock(elapsed)}, ETA {clock(remaining)}"
        )
        self.draw()

    def draw(self) -> None:
        self.stream.write("\r" + self.text + "\x1b[K")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.text:
            self.stream.write("\n")
            self.stream.flush()
        ProgressBar.active = None


def make_progress(mode: str, stream: TextIO | None = None) -> Progress:
    """The reporter for ``mode``: ``"bar"``, ``"lines"``, ``"none"``, or ``"auto"`` (a bar
    when ``stream``, default standard error, is a terminal, else lines)."""
    check_choice("progress", mode, PROGRESS_MODES)
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    return {"bar": lambda: ProgressBar(stream), "lines": ProgressLines, "none": Progress}[mode]()


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, around any bar."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        bar = ProgressBar.active
        if bar is not None and bar.text:
            bar.clear()
        super().emit(record)
        if bar is not None and bar.text:
            bar.draw()


def configure_logging(level: int = logging.INFO) -> None:
    """Time-stamped lines of the ``raylanczos`` logger on standard error (the command line's)."""
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


@contextlib.contextmanager
def reporting() -> Iterator[None]:
    """For the length of a run, show the ``raylanczos`` logger's INFO lines on standard
    error if nobody configured logging (no handler on it or on the root logger)."""
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def clock(seconds: float) -> str:
    """``75.2`` → ``"1m15s"``; NaN → ``"?"``."""
    if seconds != seconds:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def byte_size(count: float) -> str:
    """``1234567`` → ``"1.23 MB"`` (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} B"
