"""The operator computed in this process, without Ray: the single-process reference and
the benchmark floor."""

from __future__ import annotations

import numpy as np

from raylanczos.operators.contract import check_answer, reduce_partials
from raylanczos.operators.shard_worker import ShardWorker
from raylanczos.problem.data import ShardPlan
from raylanczos.problem.definition import ProblemSource, build_problem


class LocalHessian:
    """The full-batch operator (Hessian or Gauss–Newton) computed in this process, no Ray.

    ``plan`` defaults to one shard with every example; ``devices`` G > 1 shards the (JAX)
    model over this process's first G devices in every shard. Same reduction as the
    distributed operator, so results agree with it to rounding of the shard sums.
    ``matvec`` takes one vector float64[n], ``matmat`` a block float64 (B, n).
    """

    def __init__(
        self,
        source: ProblemSource,
        *,
        plan: ShardPlan | None = None,
        compute_dtype: str | None = None,
        operator: str = "hessian",
        devices: int = 1,
    ):
        problem = build_problem(source)
        self.num_examples = problem.num_examples
        plan = (plan or ShardPlan.balanced(self.num_examples, 1)).validate(problem.data)
        self.workers = [
            ShardWorker(problem, shard, compute_dtype=compute_dtype, operator=operator, devices=devices) for shard in plan.shards
        ]
        for worker in self.workers:
            check_answer(worker.start_error)
        self.dim = self.workers[0].backend.num_params

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        answers = [worker.partial_products(vectors) for worker in self.workers]
        for info, _ in answers:
            check_answer(info.error)
        return reduce_partials([p for _, p in answers], [info.count for info, _ in answers], self.num_examples)

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        return self.matmat(np.asarray(vector)[None, :])[0]
