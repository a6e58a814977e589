"""The outlier search before a deflated run: K eigenpairs of largest magnitude per part.

Each part (the whole model, or each block) gets Lanczos draws of its own start vectors
(draw numbers from :data:`OUTLIER_DRAWS`, apart from the SLQ draws'), through the same
block operator and :class:`~raylanczos.run.loop.SpectrumLoop` as the run, all parts' draws
sharing the passes. Each draw's K Ritz pairs of largest |θ| are its candidates; a part
keeps the draw whose largest Lanczos residual estimate is smallest, and one more pass of
true products gives their residuals ‖C q − θ q‖. A part converged when every residual is at
most ``deflate_tol``·‖C‖ (‖C‖: the largest |θ|). The others run again with twice the steps,
up to four times ``order`` (at least 2K, at most the part's dimension); a part that still
has not converged is refused in one line that names its residuals. No Ray.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from raylanczos.config import SpectrumConfig
from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.deflation import Deflation
from raylanczos.numerics.lanczos import start_vector
from raylanczos.numerics.ritz import RitzPairs, largest_magnitude_pairs
from raylanczos.operators.contract import BlockOperator
from raylanczos.outputs.record import DeflationRecord
from raylanczos.outputs.store import npz_writer
from raylanczos.run.checkpoint import Checkpoint, CheckpointError
from raylanczos.run.loop import DrawTask, FinishedDraw, LoopHooks, SpectrumLoop
from raylanczos.run.plan import Part, RunPlan
from raylanczos.run.residuals import residual_norms

logger = logging.getLogger("raylanczos")

#: The outlier search's draw numbers start here, so its start vectors are not the SLQ draws'.
OUTLIER_DRAWS = 1_000_000
#: Longest outlier search: this many times ``order`` (each try doubles the steps).
LONGEST_SEARCH = 4


class DeflationError(ValueError):
    """Outliers that did not converge to the tolerance; the message names their residuals."""


def find_outliers(operator: BlockOperator, plan: RunPlan, config: SpectrumConfig, sweeps: BasisSweeps) -> dict[str, Deflation]:
    """Per part of ``plan``, its ``config.deflate`` eigenpairs of largest magnitude, each
    with a true residual ≤ ``config.deflate_tol``·‖C‖ (see the module docstring)."""
    found: dict[str, Deflation] = {}
    waiting, order, products, attempt = list(plan.parts), 0, 0, 0
    longest = max(LONGEST_SEARCH * config.order, 2 * config.deflate)
    while waiting:
        order = min(max(order * 2, config.order, 2 * config.deflate), longest, max(part.dim for part in waiting))
        logger.info(
            "deflation: searching the %d largest-magnitude eigenpairs of %d part(s), %d Lanczos steps",
            config.deflate, len(waiting), order,
        )
        candidates, passes = _search(operator, waiting, order, attempt, config, sweeps)
        products += passes * operator.block_size
        unconverged = []
        for part in waiting:
            pairs = min(candidates[part.name], key=lambda p: float(np.max(p.residuals, initial=np.inf)))
            residuals = residual_norms(operator, plan, part.name, pairs)
            products += -(-len(pairs.values) // operator.block_size) * operator.block_size
            scale = float(np.max(np.abs(pairs.values)))
            if len(pairs.values) == config.deflate and np.all(residuals <= config.deflate_tol * scale):
                found[part.name] = Deflation(pairs.values, pairs.vectors, residuals, min(order, part.dim), products)
            elif order >= min(longest, part.dim):
                raise DeflationError(_not_converged(part, pairs, residuals, scale, order, config))
            else:
                unconverged.append(part)
        waiting, attempt = unconverged, attempt + 1
    for name, deflation in found.items():
        logger.info(
            "deflation%s: %d eigenvalues %s, relative residuals ≤ %.1e (%d steps, %d products)",
            f" of block {name!r}" if name else "", len(deflation.values), np.array2string(deflation.values, precision=4),
            float(np.max(deflation.residuals) / np.max(np.abs(deflation.values))), deflation.steps, deflation.products,
        )
    return found


def _search(
    operator: BlockOperator, parts: list[Part], order: int, attempt: int, config: SpectrumConfig, sweeps: BasisSweeps
) -> tuple[dict[str, list[RitzPairs]], int]:
    """One try: ``max(1, B // parts)`` draws of ``order`` steps per part, all in one loop;
    each draw's K pairs of largest |θ|, per part, and the passes it took."""
    per_part = max(1, operator.block_size // len(parts))
    tasks = [
        DrawTask(index, part.name, OUTLIER_DRAWS + attempt * per_part + draw, part.dim, part.indices)
        for index, (part, draw) in enumerate((part, draw) for part in parts for draw in range(per_part))
    ]
    candidates: dict[str, list[RitzPairs]] = {part.name: [] for part in parts}

    def keep(task: DrawTask, lanczos, record: FinishedDraw) -> None:
        alpha, beta = record.tridiagonal()
        last = float(lanczos.beta[lanczos.steps - 1])
        candidates[task.block].append(largest_magnitude_pairs(lanczos.basis, alpha, beta, last, config.deflate))

    dim = max(part.dim for part in parts)
    bases = [allocate_basis(min(order, dim) + 1, dim) for _ in range(operator.block_size)]
    loop = SpectrumLoop(
        operator, tasks, order, bases, seed=config.seed, distribution=config.distribution, sweeps=sweeps,
        options=config.lanczos, hooks=LoopHooks(finished=keep),
    )
    return candidates, loop.run().passes


def _not_converged(part: Part, pairs: RitzPairs, residuals: np.ndarray, scale: float, order: int, config: SpectrumConfig) -> str:
    where = f" of block {part.name!r}" if part.name else ""
    found = "" if len(pairs.values) == config.deflate else f" (Lanczos found only {len(pairs.values)})"
    relative = ", ".join(f"{r / scale:.1e}" for r in residuals)
    return (
        f"deflation{where}: the {config.deflate} largest-magnitude eigenpairs{found} did not converge to "
        f"deflate_tol {config.deflate_tol:g}·‖C‖ (‖C‖ ≈ {scale:.4g}) in {order} Lanczos steps: relative residuals "
        f"{relative}; raise --deflate-tol or --order, or deflate fewer"
    )


def deflated_plan(plan: RunPlan, deflations: dict[str, Deflation]) -> RunPlan:
    """``plan`` whose draws are of P C P on range(P), with each part's deflation."""
    tasks = tuple(dataclasses.replace(task, deflation=deflations.get(task.block)) for task in plan.tasks)
    return dataclasses.replace(plan, tasks=tasks)


def deflation_records(plan: RunPlan, deflations: dict[str, Deflation], config: SpectrumConfig) -> dict[str, DeflationRecord]:
    """Per part, what its summary records of the deflation: the eigenpairs' values and
    residuals, the search's steps and products, and per draw (in draw order) the weights
    (q_kᵀ v)² of its unit start vector v, from which the plain Hutchinson sample follows."""
    records = {}
    for part in plan.parts:
        deflation = deflations.get(part.name)
        if deflation is None:
            continue
        weights = [
            deflation.start_weights(start_vector(task.dim, seed=config.seed, draw=task.draw, distribution=config.distribution))
            for task in plan.tasks_of(part)
        ]
        records[part.name] = DeflationRecord(
            values=deflation.values.tolist(), residuals=deflation.residuals.tolist(), tolerance=config.deflate_tol,
            steps=deflation.steps, products=deflation.products, start_weights=[w.tolist() for w in weights],
        )
    return records


#: The checkpoint's file of each part's deflated eigenpairs.
DEFLATION_FILE = "deflation.npz"
DEFLATION_FIELDS = ("values", "vectors", "residuals", "steps", "products")


def save_deflations(checkpoint: Checkpoint, deflations: dict[str, Deflation]) -> None:
    """Each part's deflated eigenpairs into the checkpoint, once the outlier search is done."""
    arrays = {
        f"{name}/{field}": np.asarray(getattr(found, field)) for name, found in deflations.items() for field in DEFLATION_FIELDS
    }
    checkpoint.store.write(DEFLATION_FILE, npz_writer(**arrays))


def load_deflations(checkpoint: Checkpoint) -> dict[str, Deflation] | None:
    """The deflations :func:`save_deflations` wrote, or None when the checkpoint has none."""
    if not checkpoint.store.exists(DEFLATION_FILE):
        return None
    try:
        arrays = checkpoint.store.load_npz(DEFLATION_FILE)
        names = {key.rsplit("/", 1)[0] for key in arrays}
        return {
            name: Deflation(
                arrays[f"{name}/values"], arrays[f"{name}/vectors"], arrays[f"{name}/residuals"],
                int(arrays[f"{name}/steps"]), int(arrays[f"{name}/products"]),
            )
            for name in names
        }
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint in {checkpoint.directory}: cannot read {DEFLATION_FILE}: {err}") from err
