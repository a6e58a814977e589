"""What the benchmark scripts share: a description of the machine, a median timer, and the
original JAX code's algorithm (the baseline of ``jobs/benchmark.py`` and ``benchmarks/local.py``).

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


def jax_original_lanczos(problem: Any, order: int) -> tuple[Callable[[Any], Any], int]:
    """The original JAX code's algorithm on ``problem`` (a JAX :class:`~raylanczos.Problem`):
    float32 Lanczos of ``order`` steps with the whole loop (the HVPs over every batch of the
    dataset and a full re-orthogonalisation against the basis) in one ``jax.jit``, a
    ``lax.fori_loop`` over steps with the basis (order, n) on the device.

    Returns ``(lanczos, n)``: ``lanczos(v0)`` takes a float32 (n,) unit start vector and
    returns ``(alpha, beta)``, each float32 (order,); it is compiled on its first call.
    """
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from raylanczos.problem.data import BatchPlan, ShardPlan

    flat, unravel = ravel_pytree(problem.params)
    arrays = problem.data.read(ShardPlan.balanced(problem.num_examples, 1).shards[0])
    batches = jax.device_put(list(BatchPlan(arrays, problem.batch_size)))  # arguments, not constants: no folding
    n, total = flat.size, problem.num_examples

    def hvp(v, batches):
        out = jnp.zeros_like(flat)
        for batch in batches:
            size = len(next(iter(batch.values())))
            grad = jax.grad(lambda p, b=batch: problem.loss_fn(unravel(p), b))
            out = out + size * jax.jvp(grad, (flat,), (v,))[1]
        return out / total

    def lanczos(v0, batches):
        def step(i, carry):
            basis, alpha, beta, v, v_old, b = carry
            basis = basis.at[i].set(v)
            w = hvp(v, batches) - b * v_old
            a = w @ v
            w = w - a * v
            mask = (jnp.arange(order) <= i).astype(w.dtype)
            w = w - basis.T @ (mask * (basis @ w))
            b_new = jnp.linalg.norm(w)
            return basis, alpha.at[i].set(a), beta.at[i].set(b_new), w / b_new, v, b_new

        init = (jnp.zeros((order, n), jnp.float32), jnp.zeros(order), jnp.zeros(order), v0, jnp.zeros(n), 0.0)
        _, alpha, beta, *_ = jax.lax.fori_loop(0, order, step, init)
        return alpha, beta

    compiled = jax.jit(lanczos)
    return (lambda v0: compiled(jnp.asarray(v0, jnp.float32), batches)), n
