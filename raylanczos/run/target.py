"""Drawing until a target width: the loop's gate, and the record of why a part stopped.

With ``target_width`` X, each part (the whole model, or each block) draws B at a time,
B the draws per pass. Before the first draw of each new round of B (draw d = kB, d ≥ 2),
the gate waits for the part's d draws to end and checks them
(:func:`~raylanczos.numerics.certificate.width_check`): when the band's sampling
half-width ε (absolute, probability units) and the trace's standard error relative to
|trace estimate| are both ≤ X, the part's remaining draws are skipped; otherwise the next
round starts. ``draws`` is the most a part takes.

The draws are the fixed run's: draw d starts from the same vector, in a block of the same
B, so a part that stopped at D' draws has the tridiagonals of a ``draws=D'`` run. The gate
decides from the ended draws' first coefficients (α₀, β₁) alone, which the checkpoint
holds, so a resumed run stops where the undisturbed one would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from raylanczos.config import SpectrumConfig
from raylanczos.numerics.certificate import (
    MIN_TARGET_DRAWS,
    WidthCheck,
    sampling_half_width,
    stopping_points,
    width_check,
)
from raylanczos.outputs.record import StoppingRecord
from raylanczos.run.loop import DrawTask, FinishedDraw, first_coefficients
from raylanczos.run.plan import RunPlan

logger = logging.getLogger("raylanczos")


@dataclass(frozen=True)
class TargetGate:
    """The loop's gate (:data:`~raylanczos.run.loop.Gate`) for a target width.

    ``tasks``: the run's draws, part by part (a part's draws are consecutive, draw d at its
    d-th place); ``block_size``: B, the draws of a round; ``target``: X; ``distribution``:
    the start vectors' (ε and the trace's standard error depend on it); ``looks``: J, the
    draw counts at which a part may stop, for ε (the band reported is the same).
    """

    tasks: Sequence[DrawTask]
    block_size: int
    target: float
    distribution: str
    looks: int = 1

    def __call__(self, task: int, ended: Mapping[int, tuple[float, float]]) -> int | None:
        """``task`` when it may start, None while its round waits for the part's earlier
        draws to end, or the first task of the next part when this part's target is met."""
        draw = self.tasks[task].draw
        if draw % self.block_size or draw < MIN_TARGET_DRAWS:
            return task
        first = task - draw
        if any(earlier not in ended for earlier in range(first, task)):
            return None
        coefficients = np.array([ended[earlier] for earlier in range(first, task)])
        check = width_check(
            coefficients[:, 0], coefficients[:, 1], self.tasks[task].dim, self.target, distribution=self.distribution,
            looks=self.looks,
        )
        return self._next_part(task) if check.met else task

    def _next_part(self, task: int) -> int:
        """The first task of the part after ``task``'s (``len(tasks)`` after the last)."""
        block = self.tasks[task].block
        return next((later for later in range(task, len(self.tasks)) if self.tasks[later].block != block), len(self.tasks))


def target_gate(plan: RunPlan, config: SpectrumConfig) -> TargetGate | None:
    """The gate of a run with ``config.target_width`` (None without one). Says in the log
    how the draws are checked, and warns of a part whose band's sampling half-width stays
    above the target even at the most draws."""
    if config.target_width is None:
        return None
    target, most = config.target_width, config.draws
    logger.info(
        "target width %g: checked every %d draws from %d on, at most %d draws%s",
        target, plan.block_size, MIN_TARGET_DRAWS, most, " per block" if len(plan.parts) > 1 else "",
    )
    looks = stopping_points(most, plan.block_size)
    for part in plan.parts:
        widest = sampling_half_width(part.dim, most, distribution=config.distribution, looks=looks)
        if widest > target:
            where = f" of block {part.name!r}" if part.name else ""
            logger.warning(
                "target width %g: the band's sampling half-width%s is %.2g after %d draws, the most (--draws); "
                "the run will stop there", target, where, widest, most,
            )
    return TargetGate(plan.tasks, plan.block_size, target, config.distribution, looks)


def stopping_record(
    records: Sequence[FinishedDraw], dim: int, maximum: int, target: float, distribution: str, looks: int,
) -> StoppingRecord:
    """Why a part's ``records`` (its ended draws, in draw order) are as many as they are,
    for summary.json and the closing line: the target met after them, or the maximum
    reached with what was still too wide (``looks``: J, as for :class:`TargetGate`)."""
    coefficients = np.array([first_coefficients(r.alpha, r.beta, r.steps) for r in records])
    check = width_check(coefficients[:, 0], coefficients[:, 1], dim, target, distribution=distribution, looks=looks)
    return StoppingRecord(
        target_width=check.target, reached=check.met, draws=check.draws, maximum=maximum,
        sampling_half_width=check.sampling_half_width, trace_relative_std_error=check.trace_relative_std_error,
        reason=stop_reason(check, maximum),
    )


def stop_reason(check: WidthCheck, maximum: int) -> str:
    """``target width 0.02 reached after 6 draws``, or ``maximum of 16 draws reached;
    sampling half-width 0.031 > 0.02`` (and the trace's relative standard error when it
    too is over)."""
    if check.met:
        return f"target width {check.target:g} reached after {check.draws} draws"
    over = [
        f"{name} {value:.2g} > {check.target:g}"
        for name, value in (
            ("sampling half-width", check.sampling_half_width),
            ("trace relative standard error", check.trace_relative_std_error),
        )
        if not value <= check.target
    ]
    if check.draws < MIN_TARGET_DRAWS:
        over.append(f"a standard error needs {MIN_TARGET_DRAWS} draws")
    return f"maximum of {maximum} draws reached; " + ", ".join(over)
