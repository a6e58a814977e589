"""Placement: the resources a worker asks for, and why a cluster cannot place a group."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import ray

from raylanczos.problem.data import Shard


def alive_node_resources() -> list[dict[str, float]]:
    """The total resources of each alive node of the connected cluster."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def placement_shortfall(bundles: Sequence[Mapping[str, float]], nodes: Sequence[Mapping[str, float]]) -> str:
    """Why ``bundles`` cannot all be placed on ``nodes`` (their total resources), or "".

    A bundle must fit on one node, and all bundles together within the cluster's totals
    (several bundles may share a node). Pure: the caller gathers the nodes' resources.
    """
    asked: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            asked[name] = asked.get(name, 0.0) + amount
    total: dict[str, float] = {}
    for node in nodes:
        for name, amount in node.items():
            total[name] = total.get(name, 0.0) + amount

    def listing(resources: Mapping[str, float]) -> str:
        """The amounts of the resources the workers ask for (0 where there are none)."""
        return ", ".join(f"{_amount(resources.get(name, 0.0))} {name}" for name in sorted(asked))

    short = {name: amount for name, amount in asked.items() if amount > total.get(name, 0.0) + 1e-9}
    if short:
        return (
            f"{len(bundles)} workers need {listing(asked)} in all, and the cluster has {listing(total)} "
            f"on {len(nodes)} node(s)"
        )
    for bundle in bundles:
        if not any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items()) for node in nodes):
            return f"a worker needs {listing(bundle)} on one node, and no node of the cluster has that"
    return ""


def _amount(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value / 2**30:.3g}Gi"


#: The XLA flag that makes a CPU process see G host devices (read when JAX starts).
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def device_resources(resources: Mapping[str, Any], devices: int) -> dict[str, Any]:
    """A worker's Ray actor options for ``devices`` G devices: a GPU worker (``num_gpus``
    given) asks for G GPUs; a CPU worker's options are unchanged (see :func:`device_environment`)."""
    if devices > 1 and resources.get("num_gpus"):
        return {**resources, "num_gpus": devices}
    return dict(resources)


def device_environment(resources: Mapping[str, Any], devices: int) -> dict[str, Any] | None:
    """The ``runtime_env`` of a CPU worker with G > 1 devices: ``XLA_FLAGS`` set to
    :data:`HOST_DEVICES_FLAG` = G in its process, before JAX starts there, so that it sees G
    host devices (the worker's own ``XLA_FLAGS`` are replaced); None otherwise."""
    if devices <= 1 or resources.get("num_gpus"):
        return None
    return {"env_vars": {"XLA_FLAGS": f"{HOST_DEVICES_FLAG}={devices}"}}


def _bundle(options: Mapping[str, Any], shard: Shard) -> dict[str, float]:
    """The placement-group bundle of one worker: its CPUs, GPUs, memory and resources."""
    bundle = {
        "CPU": options.get("num_cpus", 0),
        "GPU": options.get("num_gpus", 0),
        "memory": options.get("memory", 0),
        **options.get("resources", {}),
        **dict(shard.resources),
    }
    return {name: float(amount) for name, amount in bundle.items() if amount}
