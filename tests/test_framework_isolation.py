"""Packaging: ``import raylanczos`` and JAX runs never import TensorFlow; Keras runs never need JAX.

Each check runs in a fresh interpreter and inspects ``sys.modules``. TensorFlow itself
imports JAX when JAX is installed (``tensorflow/lite/python/util.py`` tries
``from jax import jit``), so the Keras check makes JAX unimportable first, as in an
environment with only the ``tf`` extra: the run must work and load no JAX module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = """
import sys
def loaded(*names):
    return sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in names})
"""


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", FRAMEWORKS + textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_import_raylanczos_loads_no_framework():
    out = run_python("""
        import raylanczos, raylanczos.backends, raylanczos.problem.layout, raylanczos.operators.shard_worker
        import raylanczos.examples.digits_data
        print(loaded("jax", "jaxlib", "tensorflow", "keras", "ray"))
    """)
    assert out == "[]"


def test_a_jax_run_loads_no_tensorflow():
    out = run_python("""
        import numpy as np
        from raylanczos.examples import digits
        from raylanczos.operators.local import LocalHessian
        hessian = LocalHessian(digits.tiny_problem())
        hessian.matvec(np.ones(hessian.dim))
        print(loaded("jax", "tensorflow", "keras"))
    """)
    assert out == "['jax']"


@pytest.mark.slow
def test_a_keras_run_needs_no_jax():
    pytest.importorskip("tensorflow")
    out = run_python("""
        import importlib.abc

        class NoJax(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("jax", "jaxlib"):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
                return None

        sys.meta_path.insert(0, NoJax())
        import numpy as np
        from raylanczos.examples import digits_keras
        from raylanczos.operators.local import LocalHessian
        hessian = LocalHessian(digits_keras.tiny_problem(), compute_dtype="float64")
        assert np.all(np.isfinite(hessian.matvec(np.ones(hessian.dim))))
        print(loaded("jax", "jaxlib", "tensorflow", "keras"))
    """)
    assert out == "['keras', 'tensorflow']"


def test_rendering_and_loading_need_no_ray(tmp_path):
    """``raylanczos density`` and ``rl.load_result`` on a finished run import neither Ray nor a framework."""
    out = run_python(f"""
        import numpy as np
        import raylanczos as rl
        from raylanczos import cli
        from raylanczos.numerics import spectrum
        from raylanczos.outputs.record import SpectrumRecord
        from raylanczos.outputs.render import render_spectrum
        from raylanczos.outputs.store import OutputStore, npy_writer

        a = np.diag(np.linspace(-1.0, 3.0, 50))
        runs = [rl.lanczos(a, order=10, seed=0, draw=d) for d in range(2)]
        tridiagonals = [(r.alpha, r.beta) for r in runs]
        store = OutputStore({str(tmp_path / "run")!r})
        store.write("tridiag.npy", npy_writer(spectrum.stack_tridiagonals(tridiagonals, 10)))
        summary = {{"config": {{"order": 10, "num_params": 50, "problem": "diag"}}, "steps_completed": [10, 10]}}
        render_spectrum(tridiagonals, SpectrumRecord.from_json(summary), store)
        assert cli.main(["density", "--out", {str(tmp_path / "run")!r}, "--sigma2", "1e-4"]) == 0
        assert rl.load_result({str(tmp_path / "run")!r}).sigma2 == 1e-4
        print(loaded("ray", "jax", "jaxlib", "tensorflow", "keras"))
    """)
    assert out == "[]"


@pytest.mark.slow
def test_jax_keeps_compiled_products_in_the_cache_unless_told_not_to(tmp_path):
    """A JAX backend caches its compiled programs under ``$RAYLANCZOS_CACHE`` by default, so a
    second run of the same model starts without compiling; ``RAYLANCZOS_COMPILATION_CACHE=off``
    and a ``JAX_COMPILATION_CACHE_DIR`` of the user's own are respected."""
    code = """
        import os, numpy as np
        from raylanczos.examples import digits
        from raylanczos.operators.local import LocalHessian
        LocalHessian(digits.tiny_problem()).matvec(np.ones(310))
        print("ok")
    """
    for setting, expect_files in (({}, True), ({"RAYLANCZOS_COMPILATION_CACHE": "off"}, False)):
        cache = tmp_path / ("on" if expect_files else "off")
        env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
        env.update(RAYLANCZOS_CACHE=str(cache), **setting)
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        compiled = list((cache / "jax-compilation").glob("*")) if (cache / "jax-compilation").exists() else []
        assert bool(compiled) == expect_files, (setting, compiled)
