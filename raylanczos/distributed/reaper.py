"""A guard for the local Ray a driver starts: when the driver dies without shutting Ray
down (SIGKILL, the out-of-memory killer), the guard ends the node's agents at once.

Why they would stay: a local Ray's GCS and raylet die with the driver that started them
(Ray gives them ``PR_SET_PDEATHSIG`` = SIGKILL). The raylet's children, the dashboard
agent and the runtime-env agent, notice within a second that the raylet has gone, then
report its unexpected death to the GCS, which has gone too, and wait out the report's
timeout (60 s, fixed in Ray's ``publish_error_to_driver``) before they exit, ignoring
SIGTERM meanwhile. After a clean ``ray.shutdown()`` the raylet ends them itself, in a
second.

The guard is a separate Python process (standard library only; it runs this file as a
script, isolated with ``-I``) that blocks reading a pipe from the driver. The read returns
when the driver closes the pipe or dies, and the guard then SIGKILLs the processes it was
given that are still the same processes (same pid and start time), and exits. Linux only
(it reads ``/proc``); elsewhere no guard is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Sequence

PROC = "/proc"


def process_table(proc: str = PROC) -> dict[int, tuple[int, str]]:
    """Every process's ``pid → (parent pid, start time)`` from ``/proc/<pid>/stat``; the
    start time (clock ticks since boot, as text) tells a process from a later one that
    reuses its pid."""
    table = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat")) as stat:
                # The command name (field 2) is in parentheses and may hold spaces.
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while being read
        table[int(entry)] = (int(fields[1]), fields[19])
    return table


def grandchildren(parent: int, table: dict[int, tuple[int, str]]) -> list[tuple[int, str]]:
    """``(pid, start time)`` of the children of ``parent``'s children, in pid order."""
    children = {pid for pid, (ppid, _) in table.items() if ppid == parent}
    return sorted((pid, start) for pid, (ppid, start) in table.items() if ppid in children)


def start_guard(processes: Sequence[tuple[int, str]]) -> subprocess.Popen | None:
    """Start a guard over ``processes`` (``(pid, start time)``); None where there is no
    ``/proc`` or nothing to guard. The guard acts when its ``stdin`` is closed: by
    :func:`stop_guard`, or by the kernel when this process dies."""
    if not processes or not os.path.isdir(PROC):
        return None
    return subprocess.Popen(
        [sys.executable, "-I", os.path.abspath(__file__), *(f"{pid}:{start}" for pid, start in processes)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal is for the driver, not the guard
    )


def stop_guard(guard: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Let ``guard`` act now (end what is left of its processes) and wait for it."""
    guard.stdin.close()
    guard.wait(timeout=timeout_s)


def end_processes(processes: Sequence[tuple[int, str]], table: dict[int, tuple[int, str]]) -> list[int]:
    """SIGKILL each of ``processes`` that ``table`` shows is still the same process; the pids signalled."""
    ended = []
    for pid, start in processes:
        if table.get(pid, (None, None))[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                ended.append(pid)
            except ProcessLookupError:
                pass
    return ended


def main(argv: Sequence[str]) -> None:
    """The guard: ``argv`` holds ``pid:start`` items; block until stdin closes, then end them."""
    processes = [(int(pid), start) for pid, start in (item.split(":") for item in argv)]
    while sys.stdin.buffer.read(4096):
        pass
    end_processes(processes, process_table())


if __name__ == "__main__":
    main(sys.argv[1:])
