"""Command line: ``raylanczos run`` (or ``python -m raylanczos run``), ``raylanczos density``
and ``raylanczos compare``.

Errors print one line, ``raylanczos: error: ...``, and exit with status 2; ``--debug``
shows the full traceback instead. An option's error names it as it is typed here
(``--workers``), not as the Python keyword it becomes. A command line argparse cannot
parse is one line too, ``raylanczos run: error: ... (see raylanczos run --help)``, not
argparse's usage block.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, NoReturn, Sequence

from raylanczos import __version__
from raylanczos.config import (
    CHECKPOINT_EVERY_S,
    DEFAULT_DEFLATE_TOL,
    DEFAULT_DRAWS_PER_PASS,
    OPERATORS,
    PRODUCT_FORMS,
    PROGRESS_MODES,
    REDUCTIONS,
    START_DISTRIBUTIONS,
    STATES,
    DensityConfig,
    OptionError,
    ScalingConfig,
)
from raylanczos.errors import one_line
from raylanczos.outputs.progress import configure_logging, quiet_framework_logs
from raylanczos.outputs.record import PART_STATISTICS

EXIT_ERROR = 2
#: How the closing line writes the operator's norm.
OPERATOR_SYMBOLS = {"hessian": "H", "ggn": "G", "preconditioned": "D^-1/2 H D^-1/2"}
SCALING = ScalingConfig()
DENSITY = DensityConfig()

#: Python keywords whose flags are not ``--`` + the keyword with dashes.
FLAGS = {
    "num_workers": "--workers",
    "distribution": "--start",
    "compute_dtype": "--float64",
    "num_cpus": "--cpus-per-worker",
    "num_gpus": "--gpus-per-worker",
    "worker_resources": "--cpus-per-worker/--gpus-per-worker",
    "grid_range": "--grid-min/--grid-max",
    "log_scale": "--log",
    "out": "--out",
    "checkpoint_every_s": "--checkpoint-every",
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points to ``--help``, instead of
    the usage block (twenty lines for ``run``) followed by the error. Its subcommands'
    parsers are of this class too (argparse makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="raylanczos", description="Hessian eigenvalue densities by stochastic Lanczos quadrature on Ray."
    )
    parser.add_argument("--version", action="version", version=f"raylanczos {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="estimate the spectrum of a problem's Hessian (or Gauss-Newton matrix)")
    what = run.add_argument_group("what to compute")
    what.add_argument("--problem", required=True, help="problem factory, 'package.module:function' (found from the cwd and PYTHONPATH)")
    what.add_argument("--order", type=int, default=90, help="Lanczos steps per draw, m (default 90; clamped to n)")
    what.add_argument("--draws", type=int, default=10, help="independent random start vectors, D (default 10)")
    what.add_argument(
        "--draws-per-pass", type=int, default=None,
        help=f"draws whose products share one pass over the data, B (default {DEFAULT_DRAWS_PER_PASS}, at most D); "
        "the driver holds B Lanczos bases of n*(m+1)*8 bytes",
    )
    what.add_argument("--seed", type=int, default=0, help="seed of the start vectors (default 0)")
    what.add_argument("--start", dest="distribution", choices=START_DISTRIBUTIONS, default="gaussian", help="start vector distribution (default gaussian)")
    what.add_argument(
        "--operator", choices=OPERATORS, default="hessian",
        help="hessian (default), ggn (the generalised Gauss-Newton matrix) or preconditioned "
        "(D^-1/2 H D^-1/2 for the factory's positive diagonal D, e.g. Adam's sqrt(v)+eps)",
    )
    what.add_argument(
        "--blocks", nargs="+", default=(), metavar="PATTERN",
        help="spectra of parameter blocks: glob patterns over the parameter names (e.g. '0/*' '*conv1*'), one block each",
    )
    what.add_argument("--per-layer", action="store_true", help="one block per top-level layer or module")
    what.add_argument(
        "--deflate", type=int, default=0, metavar="K",
        help="first find the K eigenpairs of largest magnitude (of each block), then run SLQ on the rest of the "
        "spectrum (P H P, P = I - QQ^T); the density adds them back as spikes, and a deflated trace is reported",
    )
    what.add_argument(
        "--deflate-tol", type=float, default=DEFAULT_DEFLATE_TOL, metavar="TOL",
        help=f"the K eigenpairs' residuals ||Hq - lambda q|| must be <= TOL*||H|| (default {DEFAULT_DEFLATE_TOL:g}); "
        "refused, naming them, if they do not get there",
    )
    what.add_argument(
        "--target-width", type=float, default=None, metavar="X",
        help="draw --draws-per-pass draws at a time until the CDF band's sampling half-width (absolute, in "
        "probability units) and the trace's standard error relative to |trace| are both <= X (e.g. 0.05), checked "
        "from 2 draws on, with --draws the most (per block); the draws are those of a fixed run, and summary.json's "
        "stop_reason says why it stopped",
    )
    what.add_argument(
        "--sweep", default=None, metavar="NAME=V1,V2,...",
        help="one run per value of a factory keyword argument (e.g. step=100,1000 for training checkpoints), "
        "with the same start vectors, each in <out>/NAME=V",
    )
    what.add_argument(
        "--float64", dest="compute_dtype", action="store_const", const="float64", default=None,
        help="compute the products in float64 (validation mode; slower)",
    )

    where = run.add_argument_group("where it runs")
    where.add_argument("--workers", dest="num_workers", type=int, default=None,
                       help="workers, one data shard each (default: the shard plan's count; on a local machine one per GPU, else one per core)")
    where.add_argument("--cpus-per-worker", type=float, default=None, help="CPUs per worker (default 1)")
    where.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per worker (default 0, or 1 in the local GPU layout)")
    where.add_argument(
        "--pin-cpus", action=argparse.BooleanOptionalAction, default=None,
        help="pin each worker to --cpus-per-worker cores of its own (default: on for CPU-only workers, off with GPUs)",
    )
    where.add_argument(
        "--devices-per-worker", type=int, default=SCALING.devices_per_worker, metavar="G",
        help="devices each worker shards its JAX model over (FSDP-like, or the factory's param_sharding): G GPUs per "
        f"GPU worker, else G host devices in the worker's process (default {SCALING.devices_per_worker}; not for Keras)",
    )
    where.add_argument(
        "--product-form", choices=PRODUCT_FORMS, default=SCALING.product_form,
        help="how a JAX worker computes the products of a block of draws: jax.vmap of jvp(grad) (jvp-grad), "
        "jax.linearize of the gradient once per batch with its linear map vmap-ed over the draws (linearize), or "
        "jax.lax.map of jvp(grad), one draw after another in one program (map); auto times each on one batch at "
        f"start-up and keeps the fastest (jvp-grad at one draw per pass); default {SCALING.product_form}",
    )
    where.add_argument("--shards", default=None, help='JSON shard plan: {"workers": [{"rows": [[start, stop]]} | {"files": [...]}, ...]}')
    where.add_argument("--reduce", choices=REDUCTIONS, default=SCALING.reduce,
                       help=f"sum each node's partial products on the node (node) or on the driver (flat); default {SCALING.reduce}")
    where.add_argument("--state", choices=STATES, default=None,
                       help="where the Lanczos vectors live: the driver's memory (driver) or slices on keepers, one per "
                       "node (sharded; the driver moves only scalars); default driver while the bases fit --basis-memory-gb")
    where.add_argument("--basis-memory-gb", type=float, default=SCALING.basis_memory_gb,
                       help=f"the driver's memory for the bases, GB (default {SCALING.basis_memory_gb:g})")
    where.add_argument("--address", default=None, help="Ray address (default: a running Ray, else a new local one)")
    where.add_argument("--timeout", type=float, default=SCALING.timeout,
                       help=f"seconds to wait for a worker to start or to answer one pass (default {SCALING.timeout:g})")
    where.add_argument("--placement-timeout", type=float, default=None,
                       help="seconds to wait for a cluster short of resources to add nodes (default 0 on a local machine, 600 on a cluster)")
    where.add_argument("--max-restarts", type=int, default=SCALING.max_restarts,
                       help=f"restarts of a worker whose process dies; its pass is recomputed (default {SCALING.max_restarts})")

    results = run.add_argument_group("results")
    results.add_argument("--out", required=True, help="output directory, or an object-store URI such as s3://bucket/runs/x")
    results.add_argument("--checkpoint-dir", default=None,
                         help="local directory for the checkpoint (default <out>/checkpoint; a cache directory for URIs)")
    results.add_argument("--checkpoint-every", type=float, default=CHECKPOINT_EVERY_S, metavar="SECONDS",
                         help="seconds between checkpoints; a pass that ends a draw is always saved; 0: every pass "
                         f"(default {CHECKPOINT_EVERY_S:g}; a killed run computes at most this much again)")
    results.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    results.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    results.add_argument("--save-vectors", action="store_true", help="write each draw's Lanczos basis to lanczos_vec_<d>.npy")
    results.add_argument("--top-eigenvectors", type=int, default=0, metavar="K",
                         help="write the top-K Ritz vectors (eigenvectors.npy, float64 (K, n)) and their residual norms")
    results.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                         help="auto (default: a bar on a terminal, else one log line per pass), bar, lines or none")
    results.add_argument("--quiet", action="store_true", help="no progress and no start-up lines; errors and the closing line only")
    _add_density_options(results)

    density = commands.add_parser("density", help="redraw the density, plot and statistics of a finished run")
    density.add_argument(
        "--run", "--out", dest="run", required=True,
        help="directory or URI of a finished run (--out is another name for it); without --to, its spectrum.npz, "
        "summary.json and density.png (and a run of parts' statistics.csv) are rewritten in place; tridiag.npy is only read",
    )
    density.add_argument("--to", default=None, help="write the redrawn files here instead, leaving the run untouched")
    _add_density_options(density)

    compare = commands.add_parser("compare", help="overlay the densities of finished runs in one figure")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="output directories or URIs of finished runs (2 to 10)")
    compare.add_argument("--out", required=True, help="the figure to write (PNG); a CSV of the statistics goes beside it")
    compare.add_argument("--labels", nargs="+", default=None, help="legend labels, one per run (default: run name and operator)")
    compare.add_argument("--grid-points", type=int, default=DENSITY.grid_points,
                         help=f"points of the common grid (default {DENSITY.grid_points})")
    return parser


def _add_density_options(parser: Any) -> None:
    parser.add_argument(
        "--sigma2-relative", type=float, default=DENSITY.sigma2_relative,
        help=f"density variance as a fraction of (lambda_max - lambda_min)^2 (default {DENSITY.sigma2_relative:g})",
    )
    parser.add_argument("--sigma2", type=float, default=None,
                        help="absolute density variance (eigenvalue units squared); overrides --sigma2-relative")
    parser.add_argument(
        "--sigma2-original", type=float, default=None,
        help="the original spectral-density code's sigma_squared: its variance, grid and normalisation, exactly",
    )
    parser.add_argument("--grid-points", type=int, default=DENSITY.grid_points,
                        help=f"density grid points (default {DENSITY.grid_points})")
    parser.add_argument("--grid-min", type=float, default=None, help="lower end of the grid (with --grid-max)")
    parser.add_argument("--grid-max", type=float, default=None, help="upper end of the grid (with --grid-min)")
    parser.add_argument(
        "--negative-threshold", type=float, default=DENSITY.negative_threshold,
        help="count eigenvalues below -EPS*||H|| as negative in the closing estimate "
        f"(default {DENSITY.negative_threshold:g})",
    )
    parser.add_argument(
        "--log", dest="log_scale", action="store_true",
        help="draw the density in log10|lambda|, the positive and negative parts apart, on a symmetric-log axis, "
        "with the bulk at zero as its mass (for spectra that span orders of magnitude)",
    )
    parser.add_argument("--log-sigma2", type=float, default=DENSITY.log_sigma2,
                        help=f"variance of the --log kernel, in decades squared (default {DENSITY.log_sigma2:g})")
    parser.add_argument(
        "--log-zero-threshold", type=float, default=DENSITY.log_zero_threshold,
        help=f"with --log, Ritz values with |theta| <= EPS*||H|| are the bulk at zero (default {DENSITY.log_zero_threshold:g})",
    )


def main(argv: Sequence[str] | None = None, *, exit_at_once: bool = False) -> int:
    """Run the command ``argv`` (default: the process's arguments); the exit status.

    With ``exit_at_once`` (the installed command, :func:`command`), a local Ray the run
    started is left to its guard, for a caller that ends the process right after.
    """
    quiet_framework_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    if args.command != "run":
        return _command(args, None)
    from raylanczos.distributed.session import RaySession, when_ray_stops

    when_ray_stops(_end_when_ray_stops)
    session = RaySession(args.address)
    try:
        return _command(args, session)
    finally:
        session.close(leave_local_ray=exit_at_once)


def command() -> NoReturn:
    """The installed ``raylanczos`` command: :func:`main`, then the process ends at once.

    By then every output is on disk and the closing line printed. A local Ray the run
    started is ended by its guard (SIGKILL of its processes, as when a driver is killed);
    the interpreter's own teardown is skipped. Ray's graceful shutdown and the
    interpreter's teardown (JAX's and Ray's native threads) took about 2.5 s of the user's
    wall time on 2 cores, and protect nothing a finished run needs.
    """
    code = main(exit_at_once=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _command(args: argparse.Namespace, session: Any) -> int:
    """Run the parsed command; print its closing line, or its error in one line."""
    try:
        if args.command == "run":
            closing = closing_line(_run(args, session))
        elif args.command == "density":
            closing = closing_line(_density(args))
        else:
            closing = _compare(args)
    except KeyboardInterrupt:
        print("raylanczos: interrupted; finished draws and the checkpoint are kept (resume with --resume)", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI's one place that turns errors into messages
        if args.debug:
            raise
        print(f"raylanczos: error: {error_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    print(closing)
    return 0


def _end_when_ray_stops(address: str) -> None:
    """End the run in one line when the Ray it joined (another program's) stops: Ray would
    end this process anyway, without a word. Finished draws and the checkpoint are on disk
    already, as after any kill of the driver, so ``--resume`` continues."""
    print(
        "\n" if sys.stderr.isatty() else "",  # past a progress bar's line
        f"raylanczos: error: the Ray at {address} that this run joined has stopped; run again "
        "(--resume continues from the last checkpoint; --address local starts a Ray of the run's own)",
        sep="", file=sys.stderr, flush=True,
    )
    sys.stdout.flush()
    os._exit(EXIT_ERROR)


def error_line(err: BaseException) -> str:
    """The one line an error prints: options named by their flags, whitespace collapsed."""
    if isinstance(err, OptionError):
        text = err.for_option(FLAGS.get(err.option, "--" + err.option.replace("_", "-")))
    else:
        text = str(err)
    return one_line(text) or type(err).__name__


def closing_line(result: Any) -> str:
    """The statistics a reader wants first: extreme eigenvalues, trace, negative fraction;
    a table of them for a run of several parts (blocks, sweep points), and one table per
    point for a sweep of blocks runs."""
    from raylanczos.outputs.render import PartsResult

    if isinstance(result, PartsResult):
        nested = [name for name, part in result.parts.items() if isinstance(part, PartsResult)]
        if nested:
            tables = [f"{name}:\n{_parts_table(result.parts[name])}{_stop_lines(result.parts[name])}" for name in nested]
            return "\n".join(tables) + f"\n→ {result.out}"
        return _parts_table(result) + _stop_lines(result) + f"\n→ {result.out}"
    stopping = result.record.stopping
    stopped = f"  stopped: {stopping.reason}" if stopping is not None else ""
    return f"{_statistics(result.record)}{stopped}  → {result.out}"


def _stop_lines(result: Any) -> str:
    """``\nstopped: 0: target width 0.05 reached after 8 draws`` per part of a run drawn
    until a target width ("" for the others)."""
    return "".join(
        f"\nstopped: {name}: {part.record.stopping.reason}"
        for name, part in result.parts.items()
        if getattr(part.record, "stopping", None) is not None
    )


def _parts_table(result: Any) -> str:
    from raylanczos.outputs.compare import format_table

    rows = [
        [row.part, row.dim, *(row.statistics.get(key, float("nan")) for key in PART_STATISTICS)]
        for row in result.record.part_statistics
    ]
    return format_table(["part", "n", *PART_STATISTICS], rows)


def _statistics(record: Any) -> str:
    stats = record.statistics
    trace = f"trace ≈ {stats.trace_estimate:.6g}"
    if stats.trace_std_error == stats.trace_std_error:  # not NaN
        trace += f" ± {stats.trace_std_error:.2g}"
    deflation = record.deflation
    if deflation is not None and deflation.trace is not None:
        trace += f" (deflated: {deflation.trace:.6g}" + (
            f" ± {deflation.trace_std_error:.2g})" if deflation.trace_std_error == deflation.trace_std_error else ")"
        )
    error = stats.negative_fraction_std_error
    negative = f"negative eigenvalues {100 * stats.negative_fraction:.3g}%" + (f" ± {100 * error:.2g}%" if error == error else "")
    symbol = OPERATOR_SYMBOLS.get(record.config.operator, "H")
    negative += f" (below -{stats.negative_threshold_relative:g}·‖{symbol}‖)"
    line = f"λ_max {stats.lambda_max:.6g}  λ_min {stats.lambda_min:.6g}  {trace}  {negative}"
    certificate = record.certificate
    if certificate is not None:
        low, high = certificate.negative_fraction_bounds
        line += (
            f"  certified ({100 * certificate.confidence:g}%): in [{100 * low:.3g}%, {100 * high:.3g}%],"
            f" CDF within ±{certificate.ks_half_width:.2g}"
        )
    return line


def _density_config(args: argparse.Namespace):
    from raylanczos.config import DensityConfig

    if (args.grid_min is None) != (args.grid_max is None):
        raise OptionError("grid_range", None, "give both --grid-min and --grid-max, or neither")
    grid_range = (args.grid_min, args.grid_max) if args.grid_min is not None else None
    return DensityConfig(
        sigma2_relative=args.sigma2_relative, sigma2=args.sigma2, sigma2_original=args.sigma2_original,
        grid_points=args.grid_points, grid_range=grid_range, negative_threshold=args.negative_threshold,
        log_scale=args.log_scale, log_sigma2=args.log_sigma2, log_zero_threshold=args.log_zero_threshold,
    )


def _run(args: argparse.Namespace, session: Any):
    from raylanczos.config import OutputConfig, SpectrumConfig
    from raylanczos.run.runner import hessian_spectrum
    from raylanczos.run.sweep import parse_sweep

    resources = None
    if args.cpus_per_worker is not None or args.gpus_per_worker is not None:
        resources = {"num_cpus": 1.0 if args.cpus_per_worker is None else args.cpus_per_worker}
        if args.gpus_per_worker:
            resources["num_gpus"] = args.gpus_per_worker
    density = _density_config(args)
    config = SpectrumConfig(
        order=args.order, draws=args.draws, draws_per_pass=args.draws_per_pass, seed=args.seed,
        distribution=args.distribution, compute_dtype=args.compute_dtype, operator=args.operator,
        blocks=tuple(args.blocks), per_layer=args.per_layer, deflate=args.deflate, deflate_tol=args.deflate_tol,
        target_width=args.target_width,
    )
    scaling = ScalingConfig(
        num_workers=args.num_workers, worker_resources=resources, shards=args.shards, pin_cpus=args.pin_cpus,
        reduce=args.reduce, address=args.address, timeout=args.timeout, placement_timeout=args.placement_timeout,
        state=args.state, basis_memory_gb=args.basis_memory_gb,
        max_restarts=args.max_restarts, devices_per_worker=args.devices_per_worker, product_form=args.product_form,
    )
    output = OutputConfig(
        out=args.out, checkpoint_dir=args.checkpoint_dir, checkpoint_every_s=args.checkpoint_every, resume=args.resume,
        overwrite=args.overwrite, save_vectors=args.save_vectors, top_eigenvectors=args.top_eigenvectors,
    )
    progress = "none" if args.quiet else args.progress
    sweep = dict([parse_sweep(args.sweep)]) if args.sweep is not None else None
    return hessian_spectrum(args.problem, config, scaling, output, density, sweep=sweep, progress=progress, session=session)


def _density(args: argparse.Namespace):
    from raylanczos.outputs.render import rerender

    return rerender(args.run, _density_config(args), to=args.to)


def _compare(args: argparse.Namespace) -> str:
    from raylanczos.outputs.compare import compare_runs

    return compare_runs(args.runs, args.out, labels=args.labels, grid_points=args.grid_points)


if __name__ == "__main__":  # pragma: no cover
    command()
