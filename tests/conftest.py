"""Shared fixtures: one local Ray per test session, with explicit resources."""

from __future__ import annotations

import pytest

#: Actor options for tests: fractional CPUs so three workers fit on a 2-CPU Ray.
WORKER_RESOURCES = {"num_cpus": 0.5}


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs (token authentication left on), shut down at the end."""
    ray = pytest.importorskip("ray")
    context = ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield context
    ray.shutdown()
