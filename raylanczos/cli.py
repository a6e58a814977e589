"""Command line: ``raylanczos run`` (or ``python -m raylanczos run``) and ``raylanczos density``.

Errors print one line, ``raylanczos: error: ...``, and exit with status 2; ``--debug``
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from raylanczos import spectrum
from raylanczos.worker import DEFAULT_MAX_RESTARTS, DEFAULT_TIMEOUT_S

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raylanczos", description="Hessian eigenvalue densities by stochastic Lanczos quadrature on Ray.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="estimate the Hessian spectrum of a problem")
    run.add_argument("--problem", required=True, help="problem factory, 'package.module:function' (found from the cwd and PYTHONPATH)")
    run.add_argument("--out", required=True, help="output directory, or an object-store URI such as s3://bucket/runs/x")
    run.add_argument(
        "--checkpoint-dir", default=None,
        help="local directory for the per-step checkpoint (default <out>/checkpoint; a cache directory for URIs)",
    )
    run.add_argument("--order", type=int, default=90, help="Lanczos steps per draw, m (default 90; clamped to n)")
    run.add_argument("--draws", type=int, default=10, help="independent random start vectors, D (default 10)")
    run.add_argument("--workers", type=int, default=None, help="HVP workers, one data shard each (default 1, or the shard plan's count)")
    run.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (default 0)")
    run.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1)")
    run.add_argument(
        "--pin-cpus", action=argparse.BooleanOptionalAction, default=None,
        help="pin each worker to --cpus-per-worker cores of its own (default: on for CPU-only workers, off with GPUs)",
    )
    run.add_argument("--shards", default=None, help='JSON shard plan: {"workers": [{"rows": [[start, stop]]} | {"files": [...]}, ...]}')
    run.add_argument("--seed", type=int, default=0, help="seed of the start vectors (default 0)")
    run.add_argument("--start", choices=("gaussian", "rademacher"), default="gaussian", help="start vector distribution")
    run.add_argument("--float64", action="store_true", help="compute HVPs in float64 (validation mode; slower)")
    run.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    run.add_argument("--save-vectors", action="store_true", help="write each draw's Lanczos basis to lanczos_vec_<d>.npy")
    _add_density_options(run)
    run.add_argument("--address", default=None, help="Ray address (default: a running Ray, else a new local one)")
    run.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for a worker to start or to answer one step (default {DEFAULT_TIMEOUT_S:g})",
    )
    run.add_argument(
        "--max-restarts", type=int, default=DEFAULT_MAX_RESTARTS,
        help=f"restarts of a worker whose process dies; its step is recomputed (default {DEFAULT_MAX_RESTARTS})",
    )

    density = commands.add_parser("density", help="recompute the density and plot of a finished run with another σ² or grid")
    density.add_argument("--out", required=True, help="output directory or URI of a finished run")
    _add_density_options(density, defaults=False)
    density.add_argument("--sigma2", type=float, default=None, help="absolute variance σ² (eigenvalue units squared); overrides --sigma2-relative")
    density.add_argument("--grid-min", type=float, default=None, help="lower end of the grid")
    density.add_argument("--grid-max", type=float, default=None, help="upper end of the grid")
    return parser


def _add_density_options(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    parser.add_argument(
        "--sigma2-relative",
        type=float,
        default=spectrum.DEFAULT_SIGMA2_RELATIVE if defaults else None,
        help=f"density variance as a fraction of (λ_max − λ_min)² (default {spectrum.DEFAULT_SIGMA2_RELATIVE:g})",
    )
    parser.add_argument(
        "--grid-points", type=int, default=spectrum.DEFAULT_GRID_POINTS if defaults else None, help="density grid points"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        if args.command == "run":
            result = _run(args)
        else:
            result = _density(args)
    except KeyboardInterrupt:
        print("raylanczos: interrupted; finished draws and the checkpoint are kept (resume with --resume)", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI's one place that turns errors into messages
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"raylanczos: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    summary = result.summary
    print(
        f"λ_max {summary['lambda_max']:.6g}  λ_min {summary['lambda_min']:.6g}  trace ≈ {summary['trace_estimate']:.6g}  "
        f"negative weight {summary['negative_weight']:.3g}  → {result.out}"
    )
    return 0


def _run(args: argparse.Namespace):
    from raylanczos.runner import hessian_spectrum

    resources = {"num_cpus": args.cpus_per_worker}
    if args.gpus_per_worker:
        resources["num_gpus"] = args.gpus_per_worker
    return hessian_spectrum(
        args.problem,
        order=args.order,
        draws=args.draws,
        num_workers=args.workers,
        worker_resources=resources,
        shards=args.shards,
        out=args.out,
        checkpoint_dir=args.checkpoint_dir,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        compute_dtype="float64" if args.float64 else None,
        distribution=args.start,
        save_vectors=args.save_vectors,
        sigma2_relative=args.sigma2_relative,
        grid_points=args.grid_points,
        address=args.address,
        timeout=args.timeout,
        max_restarts=args.max_restarts,
        pin_cpus=args.pin_cpus,
    )


def _density(args: argparse.Namespace):
    from raylanczos.runner import rerender

    grid_range = None
    if (args.grid_min is None) != (args.grid_max is None):
        raise ValueError("give both --grid-min and --grid-max, or neither")
    if args.grid_min is not None:
        grid_range = (args.grid_min, args.grid_max)
    return rerender(
        args.out,
        sigma2_relative=args.sigma2_relative,
        sigma2=args.sigma2,
        grid_points=args.grid_points,
        grid_range=grid_range,
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging() -> None:
    """Progress lines of the ``raylanczos`` logger, time-stamped, on standard error."""
    logger = logging.getLogger("raylanczos")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
