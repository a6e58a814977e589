"""What a run's private local Ray costs to start, with and without the dashboard.

raylanczos starts its local Ray without the dashboard (nothing of a run needs it). This
measures ``ray.init(address="local")`` in fresh processes, alternating the two settings,
and the processes it starts (the descendants of the process that called it, from /proc)
with their resident memory, and prints one JSON object with the machine and the date.

    python benchmarks/local_ray_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from raylanczos.benchmarking import describe_machine

PROBE = """
import json, os, sys, time
import ray
from raylanczos.distributed import reaper
started = time.perf_counter()
ray.init(address="local", num_cpus=1, include_dashboard={dashboard}, logging_level="ERROR")
seconds = time.perf_counter() - started
table = reaper.process_table()
mine = {{os.getpid()}}
while True:
    more = {{pid for pid, (ppid, _) in table.items() if ppid in mine}} - mine
    if not more:
        break
    mine |= more
rss_kib = 0
for pid in mine - {{os.getpid()}}:
    try:
        with open(f"/proc/{{pid}}/status") as status:
            rss_kib += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        pass
ray.shutdown()
print(json.dumps({{"init_s": seconds, "processes": len(mine) - 1, "rss_mib": rss_kib / 1024}}))
"""


def measure(dashboard: bool | None) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(dashboard=dashboard)], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = {"dashboard (Ray's default)": None, "no dashboard (raylanczos)": False}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, dashboard in settings.items():
            samples[name].append(measure(dashboard))
    report = {
        name: {
            "init_s_median": round(statistics.median(s["init_s"] for s in runs), 2),
            "init_s_all": [round(s["init_s"], 2) for s in runs],
            "processes": int(statistics.median(s["processes"] for s in runs)),
            "rss_mib_median": round(statistics.median(s["rss_mib"] for s in runs)),
        }
        for name, runs in samples.items()
    }
    print(json.dumps({"machine": describe_machine(), "repeats": args.repeats, "local_ray_start": report}, indent=1))


if __name__ == "__main__":
    main()
