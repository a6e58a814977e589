"""Resource policy, as pure functions: which cores a worker is pinned to, how many
threads the driver's (and each keeper's) re-orthogonalisation uses, the worker layout of a plain
local run, and which product form a run's workers compute in, from their timings.

Nothing here talks to Ray: the Ray layer gathers the facts (cores, bundles, nodes) and
passes them in, so each rule is unit-tested on described machines and injected where it
is used.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence


@dataclass(frozen=True)
class DriverThreads:
    """``blas``: the driver's BLAS thread limit (None: no limit); ``sweeps``: threads the
    basis sweeps are split over (:class:`~raylanczos.basis.BasisSweeps`); ``every_core_taken``:
    pinned workers own every core the driver may use."""

    blas: int | None
    sweeps: int
    every_core_taken: bool = False

    def describe(self) -> str:
        if self.sweeps > 1:
            return f"workers take every core; re-orthogonalisation split over {self.sweeps} threads, one per core"
        if self.every_core_taken:
            return (
                f"workers take every core; re-orthogonalisation on the driver's thread (vectors under "
                f"{SWEEP_THREADS_MIN_DIM:,} entries: threads would cost more than they save)"
            )
        if self.blas is not None:
            return f"{self.blas} BLAS thread(s), on the cores no worker on this node is pinned to"
        return "BLAS threads as the library chooses (workers are not pinned)"


#: The shortest vector (entries) whose basis sweeps a driver splits over threads. One
#: classical Gram–Schmidt pass against k = 45 rows, on the calling thread against 2
#: threads (2-core Xeon VM, other work running, 2026-12-06): 0.24 against 1.2 ms at
#: n = 2,410; 3.8 against 6.5 ms at 100,000; 38 against 21 ms at 301,066.
SWEEP_THREADS_MIN_DIM = 200_000


def driver_threads(pinned: bool, driver_cores: Collection[int], worker_cores: Collection[int], dim: int) -> DriverThreads:
    """Threads for the driver's re-orthogonalisation.

    Args:
      pinned: whether the workers are pinned to cores.
      driver_cores: the cores the driver process may use.
      worker_cores: the cores that workers on the driver's node are pinned to.
      dim: the length n of the Lanczos vectors (the largest part's).

    Unpinned workers: BLAS as it is, one sweep thread. Pinned workers leaving cores free:
    BLAS on that many threads. Pinned workers on every core: single-threaded BLAS; the
    basis sweeps of vectors of at least :data:`SWEEP_THREADS_MIN_DIM` entries split over one
    thread per core, so that each worker loses an equal share of its core to them instead
    of one worker losing the whole sweep (a second BLAS thread spinning between calls was
    measured slower); shorter ones on the driver's own thread, where the threads' hand-offs
    cost more than the sweep. The results are the same bits either way.
    """
    if not pinned:
        return DriverThreads(blas=None, sweeps=1)
    free = len(set(driver_cores) - set(worker_cores))
    if free:
        return DriverThreads(blas=free, sweeps=1)
    return DriverThreads(blas=1, sweeps=len(set(driver_cores)) if dim >= SWEEP_THREADS_MIN_DIM else 1, every_core_taken=True)


def keeper_threads(node_cpus: float) -> int:
    """Threads of a keeper's basis sweeps on a node of ``node_cpus`` CPUs: one per whole CPU,
    at least one.

    A keeper reserves no CPU: it re-orthogonalises while its node's workers compute the
    next block, so, as with the driver's sweeps on a node whose every core runs a worker
    (:func:`driver_threads`), a sweep split over every core takes an equal share of each
    instead of delaying one worker by the whole sweep. The sweeps' arithmetic does not
    depend on their threads, so neither do a run's bits.
    """
    return max(int(node_cpus), 1)


def cpu_slots(bundle_nodes: Mapping[int, str], bundle_cpus: Sequence[float]) -> list[tuple[int, int]]:
    """``(first, count)`` core slots per bundle: consecutive and distinct within each node.

    ``bundle_nodes`` maps a bundle's index to its node id; ``bundle_cpus`` are the CPUs
    each bundle reserves (a fraction still takes one whole core).
    """
    used: dict[str, int] = {}
    slots = []
    for index, cpus in enumerate(bundle_cpus):
        node, count = bundle_nodes.get(index, ""), max(math.ceil(cpus), 1)
        slots.append((used.get(node, 0), count))
        used[node] = used.get(node, 0) + count
    return slots


def pin_to_cores(first: int, count: int) -> list[int]:
    """Restrict this process to ``count`` of the cores it may use, from index ``first``.

    Indexes wrap around the sorted allowed set, so slots beyond the machine's cores share
    cores instead of failing. XLA and TensorFlow size their thread pools from this set,
    so pin before importing them: a worker then uses the CPUs it reserved, and workers
    on one node (and the driver's re-orthogonalisation) do not fight over cores.
    Returns the cores chosen.
    """
    allowed = sorted(os.sched_getaffinity(0))
    cores = sorted({allowed[(first + i) % len(allowed)] for i in range(max(count, 1))})
    os.sched_setaffinity(0, cores)
    return cores


@dataclass(frozen=True)
class WorkerLayout:
    """How many workers a run starts and what each reserves (Ray actor options)."""

    num_workers: int
    num_cpus: float
    num_gpus: float
    reason: str

    @property
    def resources(self) -> dict[str, float]:
        resources = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            resources["num_gpus"] = self.num_gpus
        return resources


def default_layout(cpus: int, gpus: int, *, local: bool, devices: int = 1) -> WorkerLayout:
    """The worker layout of a run that names neither ``--workers`` nor ``--cpus-per-worker``.

    Args:
      cpus, gpus: what the cluster (the local machine) offers.
      local: True when the run started its own Ray on this machine; on a cluster address
        the layout stays the explicit default of one 1-CPU worker, since the driver cannot
        tell which of the cluster's (possibly autoscaled) nodes the user means to use.

    One worker per GPU when there are GPUs (1 CPU each, the rest left to the driver and
    the workers' host threads); with ``devices`` G > 1 per worker, one worker per G GPUs
    (at least one, which the placement then refuses if the cluster has fewer than G). Without GPUs, one single-core pinned worker per core: on
    a CPU, independent data shards scale better than one process's threads, and the
    driver's re-orthogonalisation overlaps the products on the same cores (its sweeps
    are split evenly over them; see :func:`driver_threads`).
    """
    if not local:
        return WorkerLayout(1, 1.0, 0.0, "one 1-CPU worker (a cluster address: name --workers and --cpus-per-worker)")
    if gpus >= 1 and devices > 1:
        return WorkerLayout(max(int(gpus) // devices, 1), 1.0, float(devices), f"one worker per {devices} GPUs ({int(gpus)} GPUs)")
    if gpus >= 1:
        return WorkerLayout(int(gpus), 1.0, 1.0, f"one worker per GPU ({int(gpus)} GPUs)")
    workers = max(int(cpus), 1)
    return WorkerLayout(workers, 1.0, 0.0, f"one single-core worker per core ({workers} cores, no GPU)")


def measures_product_forms(requested: str, block_size: int) -> bool:
    """Whether the workers time the product forms at their warm-up: for "auto" with B > 1
    only. At B = 1 "auto" keeps the default form's plain product, the bits of one draw per
    pass before the choice existed."""
    return requested == "auto" and block_size > 1


#: How many times faster than the default form (the first) another must be to replace it.
#: The forms' float32 products differ in the last bits, and the choice rests on timings: with
#: this margin, two runs of a net where the forms run alike keep the default's bits, and a
#: form is chosen where it clearly wins (the 301k-parameter MLP on a CPU: ``map`` 1.4× at
#: B = 4, 6× at B = 8; docs/benchmarks.md).
FORM_MARGIN = 1.25
#: A default form's block that takes less than this (seconds, the slowest worker's) is kept:
#: the pass's fixed costs (the round trip, the sums, the sweeps) dominate such a product, and
#: a choice made from timings that short would follow the machine's noise from run to run.
FORM_MIN_SECONDS = 0.05


def times_other_forms(default_seconds: Sequence[Mapping[str, float]]) -> bool:
    """Whether the other product forms are worth timing, from each worker's seconds per
    block of the default form: only when the slowest worker's block takes
    :data:`FORM_MIN_SECONDS` or more (shorter, :func:`fastest_product_form` keeps the default
    whatever the others take, so a small net need not compile them); never for workers
    with no forms (Keras)."""
    return max((seconds for times in default_seconds for seconds in times.values()), default=0.0) >= FORM_MIN_SECONDS


def fastest_product_form(times: Sequence[Mapping[str, float]]) -> tuple[str | None, dict[str, float]]:
    """The product form whose slowest worker is fastest, from each worker's seconds per block
    by form (``times``, worker by worker, forms in the backend's order), and the slowest
    worker's seconds per form; ``(None, {})`` for workers with no forms to choose from (Keras).
    The pass waits for its slowest worker. The default form (the first) is kept when its block
    takes under :data:`FORM_MIN_SECONDS`, or unless the fastest is at least
    :data:`FORM_MARGIN` times faster; a tie keeps the earlier form."""
    if not times or not times[0]:
        return None, {}
    slowest = {form: max(worker[form] for worker in times) for form in times[0]}
    default = next(iter(slowest))
    fastest = min(slowest, key=slowest.__getitem__)
    wins = slowest[default] >= FORM_MIN_SECONDS and FORM_MARGIN * slowest[fastest] <= slowest[default]
    return (fastest if wins else default), slowest
