"""What the benchmark scripts share: a description of the machine, and a median timer.

Every figure a benchmark prints comes with the machine it was measured on and the date
(``docs/benchmarks.md`` keeps them), so that the next person can compare.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from typing import Any, Callable


def describe_machine() -> dict[str, Any]:
    """CPU model, cores this process may use, memory (GiB), Python and the UTC date."""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = float("nan")
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
    }


def median_seconds(function: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``function``, after one untimed call (compilation)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
