"""What a person sees: one updating bar on a terminal, lines in a job log, nothing when quiet."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

from raylanczos.operators.contract import TIMING_COLUMNS
from raylanczos.outputs.progress import (
    Progress,
    ProgressBar,
    ProgressLines,
    StderrHandler,
    make_progress,
)

ROW = dict.fromkeys(TIMING_COLUMNS, 0.0) | {"step": 3, "total": 0.25, "bytes_received": 2.5e6}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_a_bar_on_a_terminal_and_lines_elsewhere():
    assert isinstance(make_progress("auto", Terminal()), ProgressBar)
    assert isinstance(make_progress("auto", io.StringIO()), ProgressLines)
    assert type(make_progress("none")) is Progress
    with pytest.raises(ValueError, match="progress must be one of"):
        make_progress("loud")


def test_the_bar_redraws_one_line():
    terminal = Terminal()
    bar = make_progress("bar", terminal)
    bar.start(total_steps=100, done_steps=0, block_size=4)
    for done in (4, 8, 12):
        bar.update(done, 0, 10, ROW)
    bar.close()
    text = terminal.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n"), "one line, ended once"
    frames = [frame for frame in text.split("\r") if frame]
    assert len(frames) == 3 and "steps 12/100" in frames[-1] and "12%" in frames[-1]
    assert ProgressBar.active is None


def test_a_log_line_clears_the_bar_and_redraws_it(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    logger = logging.getLogger("raylanczos.test-progress")
    handler = StderrHandler()
    logger.addHandler(handler)
    try:
        bar = make_progress("bar", terminal)
        bar.start(10, 0, 1)
        bar.update(5, 0, 1, ROW)
        logger.warning("worker 1 restarted")
        bar.close()
    finally:
        logger.removeHandler(handler)
    text = terminal.getvalue()
    assert "\r\x1b[Kworker 1 restarted\n\r[" in text, repr(text)


def test_lines_go_to_the_logger(caplog):
    caplog.set_level(logging.INFO, logger="raylanczos")
    lines = make_progress("lines", io.StringIO())
    lines.start(20, 0, 2)
    lines.update(6, 1, 4, ROW)
    assert "pass 3 | steps 6/20, draws done 1/4" in caplog.text and "driver out 0 B in 2.5 MB" in caplog.text


def test_the_python_api_is_not_silent_without_logging_configured():
    """A script that configures no logging still sees the run's lines on standard error."""
    code = (
        "import logging\n"
        "from raylanczos.outputs.progress import logger, reporting\n"
        "with reporting():\n"
        "    logger.info('worker 0: shard 0')\n"
        "logger.info('after the run')\n"
        "assert not logging.getLogger('raylanczos').handlers\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "worker 0: shard 0" in done.stderr and "after the run" not in done.stderr
