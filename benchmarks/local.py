"""Whole jobs on one machine: raylanczos, PyHessian and the original JAX algorithm, side by side.

Each tool runs the same SLQ job (``--order`` m steps, ``--draws`` D draws) on the same
problems (``benchmarks/local_problems.py``: a 2,410- and a 301,066-parameter tanh MLP on
the 1797 digits, the same weights in JAX and PyTorch) as a fresh process, the way a user
launches it; repetitions are interleaved (tool by tool within a repetition) and the
medians printed. For each job:

- ``startup_s``: launch → the first Lanczos step done (for raylanczos the first pass of B
  draw-steps; for the original JAX algorithm, compilation plus one step, whose loop is one
  compiled program);
- ``draw_step_s``: wall seconds per draw-step after the first, from when the steps were
  seen to finish (raylanczos: its progress lines; PyHessian: its Hessian-vector products;
  the JAX algorithm: its draws);
- ``teardown_s``: the results written (raylanczos: its closing line, printed after every
  output is on disk; the others: their results printed) → the process gone;
- ``wall_s``: launch → the process gone;
- ``lambda_max``: the job's largest Ritz value (a check that the tools agree).

raylanczos runs through its installed command with its defaults (workers, B, a private
local Ray: ``--address local``), PyHessian 0.1 (``pip install pyhessian``, with PyTorch)
on its fastest form (the whole dataset as one batch, whose gradient graph every product
reuses; PyTorch ≥ 2 made ``torch.eig`` raise, and PyHessian's ``density`` calls once per
draw, so the child gives it ``torch.linalg.eigh``'s result in that form); the original JAX
algorithm as :func:`raylanczos.benchmarking.jax_original_lanczos` builds it, one compiled
program per job, the D draws one after another::

    python benchmarks/local.py --order 90 --draws 8 --repeats 3
    python benchmarks/local.py --problems small --tools raylanczos pyhessian

Run it on a quiet machine: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from raylanczos.benchmarking import describe_machine

HERE = Path(__file__).resolve().parent
PASS_LINE = re.compile(r"\bpass \d+ \| steps (\d+)/(\d+)")

PYHESSIAN_CHILD = """
import importlib, json, sys, time
import torch
pyhessian = importlib.import_module("pyhessian.hessian")  # the module; the package's attribute is the class
from local_problems import torch_problem

name, order, draws = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def eig(matrix, eigenvectors=True):  # torch.eig's old form (PyTorch 2 raises instead)
    values, vectors = torch.linalg.eigh(matrix)
    return torch.stack([values, torch.zeros_like(values)], 1), vectors
torch.eig = eig
done = []
product = pyhessian.hessian_vector_product
def timed_product(*args):
    result = product(*args)
    done.append(time.time())
    return result
pyhessian.hessian_vector_product = timed_product
torch.manual_seed(0)
model, inputs, targets = torch_problem(name)
hessian = pyhessian.hessian(model, torch.nn.CrossEntropyLoss(), data=(inputs, targets), cuda=False)
nodes, _ = hessian.density(iter=order, n_v=draws)
print(json.dumps({"first_step": done[0], "last_step": done[-1], "steps": len(done),
                  "lambda_max": float(max(max(draw) for draw in nodes)), "written": time.time()}), flush=True)
"""

JAX_ORIGINAL_CHILD = """
import json, sys, time
import numpy as np
from scipy.linalg import eigvalsh_tridiagonal
import raylanczos as rl
from raylanczos.benchmarking import jax_original_lanczos
import local_problems

name, order, draws = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lanczos, n = jax_original_lanczos(local_problems.jax_problem(name), order)
done, top = [], []
for draw in range(draws):
    alpha, beta = lanczos(rl.start_vector(n, seed=0, draw=draw))
    alpha.block_until_ready()
    done.append(time.time())
    top.append(float(eigvalsh_tridiagonal(np.float64(alpha), np.float64(beta[:-1])).max()))
print(json.dumps({"draws_done": done, "steps": order, "lambda_max": max(top), "written": time.time()}), flush=True)
"""


def child_env() -> dict[str, str]:
    """The environment of every job: this one, with ``local_problems`` importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env


def timed_lines(tool: str, command: list[str], cwd: Path) -> tuple[float, list[tuple[float, str]], list[tuple[float, str]], float, int]:
    """Run ``command``; returns (launch time, stdout lines, stderr lines, exit time, status),
    each line with the epoch second it arrived."""
    launch = time.time()
    process = subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: dict[str, list[tuple[float, str]]] = {"out": [], "err": []}

    def read(stream, key):
        for line in stream:
            lines[key].append((time.time(), line.rstrip("\n")))

    readers = [threading.Thread(target=read, args=(process.stdout, "out")), threading.Thread(target=read, args=(process.stderr, "err"))]
    for reader in readers:
        reader.start()
    status = process.wait()
    exited = time.time()
    for reader in readers:
        reader.join()
    if status != 0:
        tail = "\n".join(text for _, text in (lines["err"] or lines["out"])[-5:])
        raise SystemExit(f"{tool} failed (exit {status}):\n{tail}")
    return launch, lines["out"], lines["err"], exited, status


def run_raylanczos(problem: str, order: int, draws: int, workdir: Path) -> dict[str, float]:
    command = [
        str(Path(sys.executable).with_name("raylanczos")), "run", "--problem", f"local_problems:{problem}",
        "--order", str(order), "--draws", str(draws), "--address", "local", "--progress", "lines", "--out", "run",
    ]
    launch, out, err, exited, _ = timed_lines("raylanczos", command, workdir)
    passes = [(when, int(m.group(1)), int(m.group(2))) for when, text in err if (m := PASS_LINE.search(text))]
    (first, first_steps, total), (last, _, _) = passes[0], passes[-1]
    closing = next(when for when, text in out if text.startswith("λ_max"))
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    return {
        "startup_s": first - launch, "draw_step_s": (last - first) / (total - first_steps),
        "teardown_s": exited - closing, "wall_s": exited - launch, "lambda_max": summary["lambda_max"],
    }


def run_pyhessian(problem: str, order: int, draws: int, workdir: Path) -> dict[str, float]:
    launch, out, _, exited, _ = timed_lines("pyhessian", [sys.executable, "-c", PYHESSIAN_CHILD, problem, str(order), str(draws)], workdir)
    result = json.loads(out[-1][1])
    return {
        "startup_s": result["first_step"] - launch, "draw_step_s": (result["last_step"] - result["first_step"]) / (result["steps"] - 1),
        "teardown_s": exited - result["written"], "wall_s": exited - launch, "lambda_max": result["lambda_max"],
    }


def run_jax_original(problem: str, order: int, draws: int, workdir: Path) -> dict[str, float]:
    launch, out, _, exited, _ = timed_lines("jax-original", [sys.executable, "-c", JAX_ORIGINAL_CHILD, problem, str(order), str(draws)], workdir)
    result = json.loads(out[-1][1])
    done = result["draws_done"]
    step = (done[-1] - done[0]) / ((len(done) - 1) * order) if len(done) > 1 else float("nan")
    first_draw_steps_s = (order - 1) * step  # the first draw's steps after its first
    return {
        "startup_s": done[0] - first_draw_steps_s - launch, "draw_step_s": step,
        "teardown_s": exited - result["written"], "wall_s": exited - launch, "lambda_max": result["lambda_max"],
    }


TOOLS = {"raylanczos": run_raylanczos, "pyhessian": run_pyhessian, "jax-original": run_jax_original}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=["small", "wide"], choices=["small", "wide"])
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    parser.add_argument("--order", type=int, default=90)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, dict[str, list[dict[str, float]]]] = {p: {t: [] for t in args.tools} for p in args.problems}
    for repeat in range(args.repeats):
        for problem in args.problems:
            for tool in args.tools:
                with tempfile.TemporaryDirectory(prefix=f"local-{tool}-") as workdir:
                    result = TOOLS[tool](problem, args.order, args.draws, Path(workdir))
                figures[problem][tool].append(result)
                print(f"repeat {repeat + 1}, {problem}, {tool}: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()), file=sys.stderr, flush=True)
    medians = {
        problem: {tool: {key: statistics.median(run[key] for run in runs) for key in runs[0]} for tool, runs in tools.items()}
        for problem, tools in figures.items()
    }
    print(f"{'problem':8} {'tool':13} {'start-up s':>10} {'draw-step s':>11} {'teardown s':>10} {'wall s':>8} {'lambda_max':>11}")
    for problem, tools in medians.items():
        for tool, m in tools.items():
            print(f"{problem:8} {tool:13} {m['startup_s']:10.2f} {m['draw_step_s']:11.4f} {m['teardown_s']:10.2f} {m['wall_s']:8.1f} {m['lambda_max']:11.6g}")
    report = {"machine": describe_machine(), "order": args.order, "draws": args.draws, "repeats": args.repeats, "medians": medians, "runs": figures}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
