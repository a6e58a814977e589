"""The run's plan, before any worker starts: pure, no Ray.

From the problem (built in the driver) and the configuration: the problem's facts (checked
on the first rows of data, on the driver's CPU), the parts (the whole model, or its
blocks), the draw tasks, the draws per pass B, the bases' sizes, the shard plan when the
caller chose one, and the run's identity, which a checkpoint is resumed against.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raylanczos.backends import make_backend
from raylanczos.choices import JAX_PRODUCT_FORMS
from raylanczos.config import (
    DEFAULT_DRAWS_PER_PASS,
    OptionError,
    ScalingConfig,
    SpectrumConfig,
)
from raylanczos.outputs.progress import byte_size
from raylanczos.outputs.record import ConfigRecord
from raylanczos.problem.blocks import select_blocks
from raylanczos.problem.data import Shard, ShardPlan
from raylanczos.problem.definition import Problem, ProblemSource, source_name
from raylanczos.problem.layout import ParameterLayout
from raylanczos.run.loop import DrawTask
from raylanczos.run.stores import choose_state

logger = logging.getLogger("raylanczos")

#: Rows of the first batch the driver checks the loss on (on its own CPU, before workers start).
PREFLIGHT_ROWS = 64


@dataclass(frozen=True)
class ProblemFacts:
    """What the driver learns of a problem before any worker starts."""

    num_params: int
    layout: ParameterLayout
    dtype: str
    backend: str
    training: bool | None
    num_examples: int
    batch_size: int


def inspect_problem(problem: Problem, config: SpectrumConfig) -> ProblemFacts:
    """Build the backend on the first rows in the driver, on its CPU: the checks a worker
    would make at start-up (parameters finite, the loss a scalar on a batch, the operator
    available), seconds before any worker starts, and the parameter layout."""
    rows = min(problem.batch_size, PREFLIGHT_ROWS, problem.num_examples)
    arrays = problem.data.read(Shard(0, rows=((0, rows),)))
    backend = make_backend(problem, arrays, compute_dtype=config.compute_dtype, operator=config.operator, on_host=True)
    return ProblemFacts(
        num_params=backend.num_params, layout=backend.layout, dtype=str(backend.dtype), backend=problem.backend,
        training=backend.training, num_examples=problem.num_examples, batch_size=problem.batch_size,
    )


@dataclass(frozen=True)
class Part:
    """An operator of the run: the whole model (name "") or one block.

    ``indices``: int64[dim], the part's positions in the flat parameter vector (None for the
    whole model); ``layout``: the part's own vector layout; ``path``: its output
    sub-directory ("" for the top level).
    """

    name: str
    pattern: str
    parameters: tuple[str, ...]
    dim: int
    indices: np.ndarray | None
    layout: ParameterLayout
    path: str


@dataclass(frozen=True)
class RunPlan:
    """The parts, the draw tasks (part by part, draw by draw), B, the draws per pass, and
    where the Lanczos vectors live (``state``: ``"driver"`` or ``"sharded"``, and why)."""

    facts: ProblemFacts
    parts: tuple[Part, ...]
    tasks: tuple[DrawTask, ...]
    block_size: int
    order: int
    state: str = "driver"
    state_reason: str = ""

    @property
    def basis_rows(self) -> int:
        """m + 1 rows of the largest part's basis (its order clamped to its dimension)."""
        return min(self.order, self.basis_dim) + 1

    @property
    def basis_dim(self) -> int:
        return max(part.dim for part in self.parts)

    @property
    def basis_bytes(self) -> int:
        """One basis, float64 (m + 1, n_part), in bytes."""
        return self.basis_rows * self.basis_dim * 8

    def part(self, name: str) -> Part:
        return next(part for part in self.parts if part.name == name)

    def part_order(self, part: Part) -> int:
        return min(self.order, part.dim)

    def tasks_of(self, part: Part) -> list[DrawTask]:
        return [task for task in self.tasks if task.block == part.name]


def plan_run(problem: Problem, config: SpectrumConfig, scaling: ScalingConfig) -> RunPlan:
    """The plan of one spectrum (or sweep point): facts, parts, tasks, B. A problem whose
    workers cannot hold it on ``scaling.devices_per_worker`` devices (Keras) is refused first."""
    problem.check_devices(scaling.devices_per_worker)
    if scaling.product_form != "auto" and problem.backend != "jax":
        raise OptionError(
            "product_form", scaling.product_form,
            "{name} {value} is a JAX form: a " + problem.backend + " problem computes its products one way (give auto)",
        )
    facts = inspect_problem(problem, config)
    blocks = select_blocks(facts.layout, config.blocks, config.per_layer)
    if blocks:
        parts = tuple(
            Part(b.name, b.pattern, b.parameters, b.dim, b.indices, facts.layout.subset(b.parameters), f"blocks/{b.name}")
            for b in blocks
        )
    else:
        parts = (Part("", "", tuple(facts.layout.names), facts.num_params, None, facts.layout, ""),)
    tasks = tuple(
        DrawTask(p * config.draws + d, part.name, d, part.dim, part.indices)
        for p, part in enumerate(parts) for d in range(config.draws)
    )
    for part in parts:
        if config.deflate >= part.dim:
            where = f" of block {part.name!r}" if part.name else ""
            raise OptionError("deflate", config.deflate, "{name} {value} leaves nothing" + f"{where} (dimension {part.dim})")
        if config.order > part.dim:
            logger.warning(
                "order %d exceeds the number of parameters %d%s; using order %d",
                config.order, part.dim, f" of block {part.name!r}" if part.name else "", part.dim,
            )
    largest = max(part.dim for part in parts)
    basis_bytes = (min(config.order, largest) + 1) * largest * 8
    budget = math.inf if scaling.state == "sharded" else scaling.basis_memory_gb * 1e9
    block_size = config.block_size(len(tasks), basis_bytes, budget)
    state, reason = choose_state(scaling.state, block_size, basis_bytes, scaling.basis_memory_gb)
    if state == "sharded" and config.deflate:
        raise OptionError(
            "deflate", config.deflate, "{name} needs the driver's state (--state driver), and this run's is sharded: " + reason
        )
    if state == "sharded":  # the keepers' nodes hold the bases: the head's budget does not cap B
        block_size = config.block_size(len(tasks), basis_bytes, math.inf)
    elif config.draws_per_pass is None and block_size < min(DEFAULT_DRAWS_PER_PASS, len(tasks)):
        logger.info(
            "draws per pass: %d, as many bases of %s as fit in basis_memory_gb %g (choose with --draws-per-pass)",
            block_size, byte_size(basis_bytes), scaling.basis_memory_gb,
        )
    return RunPlan(facts, parts, tasks, block_size, config.order, state, reason)


def operator_plan(dim: int, *, draws: int, block_size: int, order: int) -> RunPlan:
    """The plan of draws over a bare operator of dimension ``dim`` (a dense matrix, say): one
    part, one flat tensor, no problem behind it; for runs in one process and benchmarks."""
    layout = ParameterLayout.from_shapes([("operator", (dim,))])
    facts = ProblemFacts(dim, layout, "float64", "", None, 0, 0)
    part = Part("", "", ("operator",), dim, None, layout, "")
    tasks = tuple(DrawTask(d, "", d, dim) for d in range(draws))
    return RunPlan(facts, (part,), tasks, min(block_size, draws), order)


def chosen_shard_plan(scaling: ScalingConfig, problem: Problem) -> ShardPlan | None:
    """The shard plan the caller chose (a plan, a worker count or worker resources), or None
    for the default layout, which depends on the cluster."""
    if scaling.shards is None and scaling.num_workers is None and scaling.worker_resources is None:
        return None
    shards, num_workers = scaling.shards, scaling.num_workers
    if shards is None:
        plan = ShardPlan.balanced(problem.num_examples, num_workers or 1)
    elif isinstance(shards, ShardPlan):
        plan = shards
    else:
        plan = ShardPlan.from_json(shards)
    if num_workers is not None and plan.num_workers != num_workers:
        raise OptionError("num_workers", num_workers, "{name} {value} does not match the shard plan's " + f"{plan.num_workers} workers")
    return plan.validate(problem.data)


def config_record(
    source: ProblemSource, arguments: dict[str, Any] | None, config: SpectrumConfig, plan: RunPlan, shards: ShardPlan,
    devices_per_worker: int = 1, product_form: str | None = None,
) -> ConfigRecord:
    """``summary["config"]`` of the whole run (a part's has its own ``order`` and ``num_params``);
    ``product_form``: the form the workers compute in (None for Keras)."""
    facts = plan.facts
    return ConfigRecord(
        problem=source_name(source), arguments=arguments, order=min(config.order, facts.num_params), draws=config.draws,
        draws_per_pass=plan.block_size, seed=config.seed, distribution=config.distribution,
        compute_dtype=config.compute_dtype or "model", model_dtype=facts.dtype, operator=config.operator,
        blocks=[{"name": p.name, "pattern": p.pattern, "dim": p.dim} for p in plan.parts if p.name],
        backend=facts.backend, training=facts.training, num_params=facts.num_params,
        num_examples=facts.num_examples, batch_size=facts.batch_size, shard_plan=shards.to_json(), state=plan.state,
        deflate=config.deflate or None, deflate_tol=config.deflate_tol if config.deflate else None,
        target_width=config.target_width, devices_per_worker=devices_per_worker, product_form=product_form,
    )


def resumed_product_form(recorded: str | None, requested: str, backend: str) -> str:
    """The product form a resumed run computes in: the checkpoint's ``recorded`` one (None for
    a JAX run is ``"jvp-grad"``, the only form before the choice existed), never a new
    measurement; ``requested`` as it is for a backend without forms (Keras). A forced form
    other than the recorded one is refused, naming both: a run never mixes two."""
    if backend != "jax":
        return requested
    used = recorded or JAX_PRODUCT_FORMS[0]
    if requested not in ("auto", used):
        raise OptionError(
            "product_form", requested,
            "{name} {value} differs from the form the checkpointed run computed in, " + f"{used}: resume with {used} or auto",
        )
    return used


def run_identity(record: ConfigRecord, config: SpectrumConfig, scaling: ScalingConfig) -> dict[str, Any]:
    """What determines the run's numbers: a checkpoint resumes only a run with the same
    (devices per worker G > 1 among them; see :meth:`ConfigRecord.identity`)."""
    return {**record.identity(), "lanczos": dataclasses.asdict(config.lanczos), "reduce": scaling.reduce}
