"""A run through the command line in a forced product form: its line, its record, and a
resume asked for in another form, refused before any worker starts."""

from __future__ import annotations

import shutil

import pytest

import raylanczos as rl
from raylanczos import cli
from tests.conftest import FAST, TINY


@pytest.mark.slow
def test_a_linearize_run_records_its_form_and_a_resume_in_another_is_refused(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--problem", TINY, "--order", "8", "--draws", "2", "--workers", "2", "--address", ray_session.address, *FAST]
    assert cli.main([*args, "--out", str(out), "--product-form", "linearize", "--progress", "lines"]) == 0
    err = capsys.readouterr().err
    assert "product form linearize (not measured: chosen)" in err
    result = rl.load_result(out)
    assert result.record.config.product_form == "linearize"
    assert {worker["product_form"] for worker in result.record.run.layout.workers} == {"linearize"}

    unfinished = tmp_path / "unfinished"  # the checkpoint without the rendered outputs: a resume computes
    shutil.copytree(out, unfinished)
    (unfinished / "summary.json").unlink()
    assert cli.main([*args, "--out", str(unfinished), "--resume", "--product-form", "map", "--quiet"]) == 2
    assert "--product-form map differs from the form the checkpointed run computed in, linearize" in capsys.readouterr().err
