"""The run's configuration types: validation, option routing, the default draws per pass."""

from __future__ import annotations

import pytest

from raylanczos.config import (
    DEFAULT_DRAWS_PER_PASS,
    OptionError,
    OutputConfig,
    ScalingConfig,
    SpectrumConfig,
    build_configs,
)


def test_options_are_routed_to_the_config_that_has_them():
    spectrum, scaling, output, density = build_configs(
        None, None, None, None, {"order": 30, "num_workers": 4, "out": "runs/x", "sigma2": 1e-4}
    )
    assert spectrum.order == 30 and scaling.num_workers == 4 and output.out == "runs/x" and density.sigma2 == 1e-4
    with pytest.raises(TypeError, match="unknown option 'ordre'; the options are .*order"):
        build_configs(None, None, None, None, {"ordre": 30})


def test_given_configs_are_updated_by_options():
    spectrum, *_ = build_configs(SpectrumConfig(order=10, seed=3), None, None, None, {"seed": 4})
    assert (spectrum.order, spectrum.seed) == (10, 4)


@pytest.mark.parametrize(
    "build, python, cli",
    [
        (lambda: ScalingConfig(num_workers=0), "num_workers must be a positive integer, got 0", "--workers must be a positive integer, got 0"),
        (lambda: SpectrumConfig(order=-1), "order must be a positive integer, got -1", "--order must be a positive integer, got -1"),
        (lambda: SpectrumConfig(operator="fisher"), "operator must be one of 'hessian', 'ggn', 'preconditioned', got 'fisher'", None),
        (lambda: ScalingConfig(timeout=0), "timeout must be a number > 0, got 0", None),
    ],
)
def test_an_option_error_names_the_option_as_it_was_spelt(build, python, cli):
    with pytest.raises(OptionError) as info:
        build()
    assert str(info.value) == python
    if cli:
        assert info.value.for_option(cli.split()[0]) == cli


def test_resume_and_overwrite_contradict():
    with pytest.raises(OptionError, match="resume and overwrite contradict"):
        OutputConfig(out="x", resume=True, overwrite=True)


def test_the_default_draws_per_pass_fits_the_memory_budget():
    config = SpectrumConfig()
    assert config.block_size(tasks=10, basis_bytes=1_000, budget_bytes=8e9) == DEFAULT_DRAWS_PER_PASS
    assert config.block_size(tasks=10, basis_bytes=3_000_000_000, budget_bytes=8e9) == 2, "two 3-GB bases in 8 GB"
    assert config.block_size(tasks=10, basis_bytes=18_600_000_000, budget_bytes=8e9) == 1, "one basis at least"
    assert config.block_size(tasks=3, basis_bytes=1_000, budget_bytes=8e9) == 3, "no more than the draws"
    chosen = SpectrumConfig(draws_per_pass=6)
    assert chosen.block_size(tasks=10, basis_bytes=18_600_000_000, budget_bytes=8e9) == 6, "a chosen B is kept"
    assert chosen.block_size(tasks=4, basis_bytes=1, budget_bytes=8e9) == 4
