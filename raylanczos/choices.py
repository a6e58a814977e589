"""Every option's allowed values, in one place, and the one check of an integer's form.

Each choice is a ``Literal`` type (for signatures and type checkers) and the tuple of its
values (for validation and the command line's ``choices``). Every layer takes its choices
from here; the command line takes them through :mod:`raylanczos.config`. Pure Python: no
numpy, no framework, so the numerics may import it too.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, get_args

#: The operator whose spectrum is estimated: the Hessian, the generalised Gauss–Newton matrix,
#: or the preconditioned Hessian D^{-1/2} H D^{-1/2} for the problem's positive diagonal D.
Operator = Literal["hessian", "ggn", "preconditioned"]
#: How the workers' partial products are summed: on each node first, or all on the driver.
Reduction = Literal["node", "flat"]
#: The products' dtype when not the model's own (None): float64 is the validation mode.
ComputeDtype = Literal["float32", "float64"]
#: Start vectors' distribution.
StartDistribution = Literal["gaussian", "rademacher"]
#: How a run shows progress: a bar on a terminal and log lines elsewhere ("auto"), or as named.
ProgressMode = Literal["auto", "bar", "lines", "none"]
#: The framework a problem is written in.
Backend = Literal["jax", "keras"]
#: Where the Lanczos vectors live: on the driver, or in slices kept on the workers' nodes.
StateHolder = Literal["driver", "sharded"]
#: How a JAX backend computes a block of B tangents' products (:mod:`raylanczos.backends.jax`):
#: ``jax.vmap`` of forward-over-reverse ``jax.jvp(jax.grad)`` (the default); ``jax.linearize``
#: of the gradient once per batch with the linear map ``vmap``-ed over the tangents; or
#: ``jax.lax.map`` of ``jvp(grad)``, the tangents one after another in one program. "auto"
#: times each on one batch at the workers' warm-up and keeps the fastest.
ProductForm = Literal["auto", "jvp-grad", "linearize", "map"]

OPERATORS: tuple[str, ...] = get_args(Operator)
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
COMPUTE_DTYPES: tuple[str | None, ...] = (None, *get_args(ComputeDtype))
START_DISTRIBUTIONS: tuple[str, ...] = get_args(StartDistribution)
PROGRESS_MODES: tuple[str, ...] = get_args(ProgressMode)
BACKENDS: tuple[str, ...] = get_args(Backend)
STATES: tuple[str, ...] = get_args(StateHolder)
PRODUCT_FORMS: tuple[str, ...] = get_args(ProductForm)
#: The forms a JAX backend computes in, its default first ("auto" chooses among them).
JAX_PRODUCT_FORMS: tuple[str, ...] = PRODUCT_FORMS[1:]


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer ≥ ``minimum`` (not a bool), else a
    ``ValueError`` naming ``name`` and quoting the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        bound = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
