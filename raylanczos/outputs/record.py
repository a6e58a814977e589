"""The run record: what ``summary.json`` holds, as frozen dataclasses.

A finished spectrum (the whole model's, one block's, or one sweep point's) is a
:class:`SpectrumRecord`; the top level of a run with parts (blocks, or a sweep's points) is
a :class:`PartsRecord`. Both are written with :meth:`to_json` and read back with
:func:`record_from_json`; every other module reads a run through their fields, never by
indexing the JSON.

The JSON keys are the ones users' scripts read, and they stay: new facts are new keys.
``schema_version`` says which layout a file has; files without it (written before the
record existed) load too, with None for what they lack.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from raylanczos.numerics.certificate import stopping_points
from raylanczos.numerics.spectrum import SpectrumSummary

#: The layout of summary.json this module writes (files without the key are version 1).
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class ConfigRecord:
    """``summary["config"]``: what determined the numbers, and the problem's facts.

    ``order`` and ``num_params`` are the operator's: a block's own dimension for a block.
    ``state``: where the Lanczos vectors lived (``driver`` or ``sharded``; None before the
    sharded state existed). ``draws``: the most draws per part; with ``target_width`` (the
    run drew until it, :class:`StoppingRecord`) a part may have stopped at fewer.
    ``devices_per_worker``: G, the devices each worker sharded its model over (None before
    several devices per worker existed). ``product_form``: how the workers computed a
    block's products (JAX: ``"jvp-grad"`` or ``"linearize"``; None for Keras, and before the
    choice existed, when it was ``"jvp-grad"``). A sweep's top level knows only ``problem``
    and ``operator``.
    """

    problem: str
    operator: str = "hessian"
    arguments: dict[str, Any] | None = None
    order: int | None = None
    draws: int | None = None
    draws_per_pass: int | None = None
    seed: int | None = None
    distribution: str | None = None
    compute_dtype: str | None = None
    model_dtype: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None
    training: bool | None = None
    num_params: int | None = None
    num_examples: int | None = None
    batch_size: int | None = None
    shard_plan: dict[str, Any] | None = None
    state: str | None = None
    deflate: int | None = None
    deflate_tol: float | None = None
    target_width: float | None = None
    devices_per_worker: int | None = None
    product_form: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _without_none(dataclasses.asdict(self), keep=("arguments", "training"))

    def stopping_points(self) -> int:
        """J, the draw counts at which the run may have stopped: 1 for a fixed number of
        draws; with ``target_width``, :func:`~raylanczos.numerics.certificate.stopping_points`
        of the most draws and the draws per pass (the band's union bound is over them)."""
        if self.target_width is None:
            return 1
        return stopping_points(self.draws, self.draws_per_pass or 1)

    def identity(self) -> dict[str, Any]:
        """:meth:`to_json` as a run's identity (what a checkpoint is resumed against).

        ``devices_per_worker`` G > 1 is part of it: XLA's collectives add a sharded
        product's partial sums in another order than one device does, so float32 products
        (and their Lanczos steps) differ in the last bits from G = 1's and from another G's.
        G = 1 is left out: it is the one-device path of the runs made before G existed,
        bit for bit, so their checkpoints still resume.

        ``product_form`` is part of it for the same reason (a form may change the last bits
        of float32 products); ``"jvp-grad"``, the only form before the choice existed, is
        left out like G = 1.
        """
        data = self.to_json()
        if data.get("devices_per_worker") == 1:
            del data["devices_per_worker"]
        if data.get("product_form") == "jvp-grad":
            del data["product_form"]
        return data

    @staticmethod
    def identity_product_form(identity: Mapping[str, Any]) -> str | None:
        """The product form of a run of this :meth:`identity` (a checkpoint's): None where it
        names none (a Keras run, or one in ``"jvp-grad"``, left out)."""
        return identity.get("product_form")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ConfigRecord":
        return _build(cls, data)


@dataclass(frozen=True)
class LayoutRecord:
    """Where the products ran: the workers (their own descriptions), their resources, the
    reduction and its node groups, whether the driver summed the partials itself (one
    local group; the same order, so the same bits) and read them from the node's shared
    memory (``shared_memory``; the same numbers), the broadcast dtype, the flat vector's
    layout (``[{"name", "shape", "offset", "size"}, ...]``; a block's own layout for a
    block), and with a sharded state the keepers (each one's slice ``[lo, hi)``, where it
    ran and its sweep threads)."""

    workers: list[dict[str, Any]]
    worker_resources: dict[str, Any]
    reduce: str
    node_groups: list[list[int]]
    broadcast_dtype: str
    parameter_layout: list[dict[str, Any]]
    sums_on_driver: bool | None = None
    keepers: list[dict[str, Any]] | None = None
    shared_memory: bool | None = None

    def to_json(self) -> dict[str, Any]:
        reduce = {"mode": self.reduce, "node_groups": self.node_groups}
        if self.sums_on_driver is not None:
            reduce["sums_on_driver"] = self.sums_on_driver
        if self.shared_memory is not None:
            reduce["shared_memory"] = self.shared_memory
        data = {
            "workers": self.workers,
            "worker_resources": self.worker_resources,
            "reduce": reduce,
            "broadcast_dtype": self.broadcast_dtype,
            "parameter_layout": self.parameter_layout,
        }
        if self.keepers is not None:
            data["keepers"] = self.keepers
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LayoutRecord | None":
        if "workers" not in data:
            return None
        reduce = data.get("reduce") or {}
        return cls(
            workers=list(data["workers"]), worker_resources=dict(data.get("worker_resources") or {}),
            reduce=reduce.get("mode", "flat"), node_groups=[list(g) for g in reduce.get("node_groups", [])],
            broadcast_dtype=data.get("broadcast_dtype", ""), parameter_layout=list(data.get("parameter_layout") or []),
            sums_on_driver=reduce.get("sums_on_driver"), keepers=data.get("keepers"),
            shared_memory=reduce.get("shared_memory"),
        )


@dataclass(frozen=True)
class TimingRecord:
    """Per-pass timings: ``rows`` of ``columns`` (seconds; bytes for ``bytes_*``; the pass
    index and active draws), and each column's mean over passes (None for no pass)."""

    columns: list[str]
    rows: list[list[float]]
    means: dict[str, float | None]

    UNIT = "seconds (bytes for bytes_*)"

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "unit": self.UNIT, "rows": self.rows, **self.means}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TimingRecord":
        means = {key: value for key, value in data.items() if key.startswith("mean_")}
        return cls(columns=list(data.get("columns", [])), rows=list(data.get("rows", [])), means=means)


@dataclass(frozen=True)
class RunInfo:
    """What every spectrum of one run shares: versions, configuration, data, layout, timings."""

    raylanczos_version: str
    versions: dict[str, str]
    config: ConfigRecord
    dataset: dict[str, Any]
    layout: LayoutRecord | None
    timings: TimingRecord | None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "raylanczos_version": self.raylanczos_version,
            "versions": self.versions,
            "config": self.config.to_json(),
            "dataset": self.dataset,
        }
        if self.layout is not None:
            data.update(self.layout.to_json())
        if self.timings is not None:
            data["timings"] = self.timings.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunInfo":
        return cls(
            raylanczos_version=data.get("raylanczos_version", ""), versions=dict(data.get("versions") or {}),
            config=ConfigRecord.from_json(data.get("config") or {}), dataset=dict(data.get("dataset") or {}),
            layout=LayoutRecord.from_json(data),
            timings=TimingRecord.from_json(data["timings"]) if "timings" in data else None,
        )


@dataclass(frozen=True)
class DrawRecords:
    """Per draw, in draw order: Lanczos steps completed, whether it ended in an invariant
    subspace, ‖VᵀV − I‖_max, second re-orthogonalisation passes, and fresh products taken
    where the look-ahead's estimate was not trusted."""

    steps_completed: list[int]
    breakdown: list[bool]
    orthogonality_loss: list[float]
    second_reorthogonalisation_passes: list[int]
    fresh_products: list[int]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DrawRecords":
        steps = list(data.get("steps_completed", []))
        return cls(
            steps_completed=steps,
            breakdown=list(data.get("breakdown", [False] * len(steps))),
            orthogonality_loss=list(data.get("orthogonality_loss", [])),
            second_reorthogonalisation_passes=list(data.get("second_reorthogonalisation_passes", [])),
            fresh_products=list(data.get("fresh_products", [])),
        )


@dataclass(frozen=True)
class PartRecord:
    """A block: its name (its directory), the pattern that chose it, its tensors, its dimension."""

    name: str
    pattern: str
    parameters: list[str]
    dim: int

    def to_json(self) -> dict[str, Any]:
        return {"part": self.name, "block": {"pattern": self.pattern, "parameters": self.parameters, "dim": self.dim}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PartRecord | None":
        if not data.get("part"):
            return None
        block = data.get("block") or {}
        return cls(data["part"], block.get("pattern", data["part"]), list(block.get("parameters", [])), int(block.get("dim", 0)))

    @property
    def label(self) -> str:
        """The name, with the pattern when that differs: ``all_w (*/w)``."""
        return self.name if self.pattern == self.name else f"{self.name} ({self.pattern})"


@dataclass(frozen=True)
class EigenvectorRecord:
    """The top Ritz pairs written to ``file`` (float64 (K, n), rows follow ``layout``).

    ``residual_norms``: ‖C y − θ y‖ from one extra pass of true products (operator units);
    ``lanczos_residual_norms``: the estimate |β_m·u_m| from the Lanczos relation, which
    rounding in the products makes optimistic (it can be exactly 0 at convergence).
    """

    file: str
    shape: list[int]
    values: list[float]
    residual_norms: list[float]
    lanczos_residual_norms: list[float] | None
    layout: str

    RESIDUAL_NOTE = "||H y - theta y|| from one extra pass of products; lanczos_residual_norms: |beta_m u_m| from the Lanczos relation"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["residual_norms_note"] = self.RESIDUAL_NOTE
        return _without_none(data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "EigenvectorRecord | None":
        if not data:
            return None
        return cls(
            file=data.get("file", "eigenvectors.npy"), shape=list(data.get("shape", [])), values=list(data.get("values", [])),
            residual_norms=list(data.get("residual_norms", [])), lanczos_residual_norms=data.get("lanczos_residual_norms"),
            layout=data.get("layout", ""),
        )


@dataclass(frozen=True)
class DensityRecord:
    """How the density was drawn: the kernel's absolute variance ``sigma2`` (eigenvalue
    units²), the relative or original-convention value it came from (None when not used),
    the convention in words, and the grid (points, ends)."""

    sigma2: float
    sigma2_relative: float | None
    sigma2_original: float | None
    convention: str
    units: str
    grid_points: int
    grid_min: float
    grid_max: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "DensityRecord | None":
        return _build(cls, data) if data else None


@dataclass(frozen=True)
class CertificateRecord:
    """The certificate of a spectrum (:mod:`raylanczos.numerics.certificate`): a band
    [``lower``, ``upper``] on ``grid`` that holds for the spectral CDF everywhere with
    probability ≥ ``confidence``; its Kolmogorov–Smirnov half-width, its Wasserstein-1 bound
    over ``w1_support`` (eigenvalue units), the interval ``negative_fraction_bounds`` of the
    fraction of eigenvalues below the negative threshold, the sampling part of the band's
    half-width, and the start distribution it was derived for."""

    grid: list[float]
    lower: list[float]
    upper: list[float]
    confidence: float
    ks_half_width: float
    w1_bound: float
    negative_fraction_bounds: list[float]
    sampling_half_width: float
    w1_support: list[float]
    distribution: str

    def to_json(self) -> dict[str, Any]:
        return {
            "cdf_band": {"grid": self.grid, "lower": self.lower, "upper": self.upper, "confidence": self.confidence},
            "ks_half_width": self.ks_half_width,
            "w1_bound": self.w1_bound,
            "negative_fraction_bounds": self.negative_fraction_bounds,
            "sampling_half_width": self.sampling_half_width,
            "w1_support": self.w1_support,
            "certificate_distribution": self.distribution,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CertificateRecord | None":
        band = data.get("cdf_band")
        if not band:
            return None
        return cls(
            grid=list(band["grid"]), lower=list(band["lower"]), upper=list(band["upper"]), confidence=band["confidence"],
            ks_half_width=data["ks_half_width"], w1_bound=data["w1_bound"],
            negative_fraction_bounds=list(data["negative_fraction_bounds"]),
            sampling_half_width=data.get("sampling_half_width", float("nan")),
            w1_support=list(data.get("w1_support", [])), distribution=data.get("certificate_distribution", ""),
        )


@dataclass(frozen=True)
class StoppingRecord:
    """Why a run drawn until a target width X stopped where it did (one spectrum's draws).

    ``reason``: in words, e.g. ``target width 0.02 reached after 6 draws`` or ``maximum of
    16 draws reached; sampling half-width 0.031 > 0.02``; ``reached``: whether both figures
    are ≤ X after ``draws`` draws; ``sampling_half_width``: the band's sampling part ε
    (probability units); ``trace_relative_std_error``: the trace's standard error over
    |trace estimate| (dimensionless); ``maximum``: the draws allowed.
    """

    target_width: float
    reached: bool
    draws: int
    maximum: int
    sampling_half_width: float
    trace_relative_std_error: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Top-level keys of summary.json: ``stop_reason``, and ``stopping``'s figures."""
        figures = {key: value for key, value in dataclasses.asdict(self).items() if key != "reason"}
        return {"stop_reason": self.reason, "stopping": figures}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoppingRecord | None:
        if "stop_reason" not in data:
            return None
        return cls(reason=data["stop_reason"], **(data.get("stopping") or {}))


@dataclass(frozen=True)
class DeflationRecord:
    """The eigenpairs a deflated run took out (:mod:`raylanczos.numerics.deflation`), and the traces.

    ``values``, ``residuals``: the K eigenvalues (largest magnitude first) and their true
    residual norms ‖C q − λ q‖ (eigenvalue units); ``tolerance``: the ``deflate_tol`` they
    met (relative to ‖C‖); ``steps``, ``products``: the Lanczos steps and the block products
    (rows of every pass; shared by the blocks of a run) the search took; ``start_weights``:
    per draw, (q_kᵀ v)² of its unit start vector v (D × K). ``trace``, ``trace_std_error``:
    Σ λ_k + (n − K)·mean α₀ and its standard error, set when rendered.
    """

    values: list[float]
    residuals: list[float]
    tolerance: float
    steps: int
    products: int
    start_weights: list[list[float]]
    trace: float | None = None
    trace_std_error: float | None = None

    VECTORS_FILE = "deflated_vectors.npy"
    NOTE = (
        "deflated: the K eigenpairs of largest magnitude taken out first (residual ||C q - lambda q||); the density "
        "is (1/n) sum_k delta(lambda_k) + ((n-K)/n) times SLQ of P C P, P = I - QQ^T; trace_deflated = sum_k lambda_k "
        "+ (n-K) mean(alpha_0); trace_estimate is the plain Hutchinson estimate of the same start vectors"
    )

    def to_json(self) -> dict[str, Any]:
        """Top-level keys of summary.json: ``deflated``, ``trace_deflated`` (± its standard
        error), the products each trace estimate cost, and ``deflation``'s details."""
        draws = len(self.start_weights)
        return {
            "deflated": [{"value": value, "residual": residual} for value, residual in zip(self.values, self.residuals)],
            "trace_deflated": self.trace,
            "trace_deflated_std_error": self.trace_std_error,
            "trace_deflated_products": self.products + draws,
            "trace_products": draws,
            "deflation": {
                "tolerance": self.tolerance, "steps": self.steps, "products": self.products,
                "vectors_file": self.VECTORS_FILE, "start_weights": self.start_weights, "note": self.NOTE,
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DeflationRecord | None":
        if not data.get("deflated"):
            return None
        details = data.get("deflation") or {}
        return cls(
            values=[entry["value"] for entry in data["deflated"]], residuals=[entry["residual"] for entry in data["deflated"]],
            tolerance=details.get("tolerance", float("nan")), steps=int(details.get("steps", 0)),
            products=int(details.get("products", 0)), start_weights=[list(row) for row in details.get("start_weights", [])],
            trace=data.get("trace_deflated"), trace_std_error=data.get("trace_deflated_std_error"),
        )


@dataclass(frozen=True)
class LogDensityRecord:
    """How the log-scale density was drawn (:mod:`raylanczos.numerics.logdensity`): the
    kernel's variance ``sigma2`` in decades², the bulk's threshold τ (eigenvalue units) and
    its ε, the quadrature mass above τ, below −τ and within [−τ, τ], and the grid of
    u = log₁₀|λ| (points, ends in decades)."""

    sigma2: float
    zero_threshold: float
    zero_threshold_relative: float
    positive_mass: float
    negative_mass: float
    zero_mass: float
    grid_points: int
    grid_min: float
    grid_max: float
    units: str = "grid in decades of |lambda|; sigma2 in decades squared; densities per decade"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "LogDensityRecord | None":
        return _build(cls, data) if data else None


@dataclass(frozen=True)
class SpectrumRecord:
    """``summary.json`` of one spectrum. ``statistics`` and ``density`` are None until the
    tridiagonals are rendered (:func:`raylanczos.outputs.render.render_spectrum`)."""

    run: RunInfo
    draws: DrawRecords
    part: PartRecord | None = None
    top_eigenvectors: EigenvectorRecord | None = None
    statistics: SpectrumSummary | None = None
    density: DensityRecord | None = None
    certificate: CertificateRecord | None = None
    log_density: LogDensityRecord | None = None
    deflation: DeflationRecord | None = None
    stopping: StoppingRecord | None = None

    @property
    def config(self) -> ConfigRecord:
        return self.run.config

    def to_json(self) -> dict[str, Any]:
        data = self.run.to_json()
        if self.part is not None:
            data.update(self.part.to_json())
        data.update(self.draws.to_json())
        if self.top_eigenvectors is not None:
            data["top_eigenvectors"] = self.top_eigenvectors.to_json()
        if self.statistics is not None:
            data.update(dataclasses.asdict(self.statistics))
        if self.density is not None:
            data["density"] = self.density.to_json()
        if self.certificate is not None:
            data.update(self.certificate.to_json())
        if self.log_density is not None:
            data["log_density"] = self.log_density.to_json()
        if self.deflation is not None:
            data.update(self.deflation.to_json())
        if self.stopping is not None:
            data.update(self.stopping.to_json())
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SpectrumRecord":
        names = {f.name for f in dataclasses.fields(SpectrumSummary)}
        statistics = None
        if "lambda_max" in data:
            known = {name: data.get(name, float("nan")) for name in names}
            statistics = SpectrumSummary(**known)
        return cls(
            run=RunInfo.from_json(data), draws=DrawRecords.from_json(data), part=PartRecord.from_json(data),
            top_eigenvectors=EigenvectorRecord.from_json(data.get("top_eigenvectors")), statistics=statistics,
            density=DensityRecord.from_json(data.get("density")), certificate=CertificateRecord.from_json(data),
            log_density=LogDensityRecord.from_json(data.get("log_density")),
            deflation=DeflationRecord.from_json(data), stopping=StoppingRecord.from_json(data),
        )


#: The statistics of each part in a parts run's ``part_statistics`` table and ``statistics.csv``.
PART_STATISTICS = (
    "lambda_max", "lambda_min", "trace_estimate", "trace_std_error", "negative_fraction",
    "negative_fraction_std_error", "negative_mass",
)


@dataclass(frozen=True)
class PartRow:
    """One row of a parts run's table: the part, its dimension, and its statistics by name
    (:data:`PART_STATISTICS`; a row read from an older run has the ones it had)."""

    part: str
    dim: int
    statistics: dict[str, float]

    @classmethod
    def of(cls, name: str, record: "SpectrumRecord | PartsRecord") -> "PartRow":
        """The row of a part; a part that has parts of its own (a sweep point of a blocks
        run) has no statistics of its own (NaN; its blocks' are in its own table)."""
        statistics = getattr(record, "statistics", None)
        values = dataclasses.asdict(statistics) if statistics is not None else {}
        return cls(name, int(record.config.num_params or 0), {key: values.get(key, float("nan")) for key in PART_STATISTICS})

    def to_json(self) -> dict[str, Any]:
        return {"part": self.part, "dim": self.dim, **self.statistics}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PartRow":
        return cls(data["part"], int(data.get("dim", 0)), {key: data[key] for key in PART_STATISTICS if key in data})


@dataclass(frozen=True)
class SweepRecord:
    """What a sweep varied: the factory argument ``name`` over ``values``."""

    name: str
    values: list[Any]


@dataclass(frozen=True)
class PartsRecord:
    """``summary.json`` of a run with parts: the blocks of one run (``run`` set), or the
    points of a sweep (``sweep`` set, and ``run`` holds only the problem and operator).

    ``parts``: part name → sub-directory; ``part_labels``: part name → legend label;
    ``parts_title``: the overlay's title; ``part_statistics``: one row per part.
    """

    run: RunInfo
    parts: dict[str, str]
    part_labels: dict[str, str]
    parts_title: str
    part_statistics: list[PartRow]
    sweep: SweepRecord | None = None

    @property
    def config(self) -> ConfigRecord:
        return self.run.config

    def to_json(self) -> dict[str, Any]:
        if self.sweep is not None:
            data: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "config": {"problem": self.config.problem, "operator": self.config.operator},
                "sweep": {"name": self.sweep.name, "values": self.sweep.values},
            }
        else:
            data = self.run.to_json()
        data.update(
            parts=dict(self.parts), part_labels=dict(self.part_labels), parts_title=self.parts_title,
            part_statistics=[row.to_json() for row in self.part_statistics],
        )
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PartsRecord":
        sweep = data.get("sweep")
        return cls(
            run=RunInfo.from_json(data), parts=dict(data["parts"]), part_labels=dict(data.get("part_labels") or {}),
            parts_title=data.get("parts_title", ""),
            part_statistics=[PartRow.from_json(row) for row in data.get("part_statistics", [])],
            sweep=SweepRecord(sweep["name"], list(sweep["values"])) if sweep else None,
        )


def record_from_json(data: Mapping[str, Any]) -> SpectrumRecord | PartsRecord:
    """The record a ``summary.json`` holds: a parts run's top level, or one spectrum."""
    if not isinstance(data, Mapping):
        raise ValueError(f"summary.json must hold a JSON object, got {type(data).__name__}")
    return PartsRecord.from_json(data) if data.get("parts") else SpectrumRecord.from_json(data)


def _build(kind: type, data: Mapping[str, Any]) -> Any:
    """``kind`` from the keys of ``data`` that are its fields (the others are ignored)."""
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{key: value for key, value in data.items() if key in names})


def _without_none(data: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None or key in keep}
