"""Several devices per worker: a JAX model's parameters and tangents sharded over G devices.

A worker that owns G devices (its GPUs, or on a CPU the host devices that XLA's
``--xla_force_host_platform_device_count`` makes) lays them out as a one-axis
:class:`~jax.sharding.Mesh` whose axis is :data:`AXIS`, and shards every parameter leaf
by a *rule*: a function ``rule(name, shape, devices) -> PartitionSpec | None`` of the
leaf's layout name (``"layer0_mlp/w_in"``), its shape and G. The default,
:func:`fsdp_rule`, is FSDP-like: each leaf along its largest axis divisible by G,
replicated when none is. A block of B tangents, float64 (B, n) on the host, goes to the
devices leaf by leaf with the leaf's sharding (the block axis is never sharded), and the
products come back the same way: each device's shard is copied into its place in a
preallocated float64 (B, n) host buffer, so no device ever holds a second full copy of
the n parameters.

How a backend uses it (``product(params, tangents, batch) -> products`` over pytrees,
e.g. the Hessian product jvp-of-grad, ``jax.vmap``-ped over the block axis)::

    placement = plan_placement(params, worker_devices(G), rule)
    sharded_params = placement.put_params(params, np.float32)
    compiled = placement.jit_block_product(product).lower(
        sharded_params, placement.put_block(vectors, np.float32), batch).compile()
    check_fits(compiled_memory(compiled), device_memory_limit(placement.devices[0]), G)
    products = compiled(sharded_params, placement.put_block(vectors, np.float32), batch)
    placement.gather_block(products, out)            # out: float64 (B, n), filled in place

The products are jitted with the shardings as ``in_shardings``/``out_shardings``, so XLA
inserts the collectives (all-gathers of the parameter shards, reductions of partial
sums). :class:`ShardedJaxBackend` is the JAX backend built on it, for a worker with
``devices_per_worker`` G > 1 (:func:`raylanczos.backends.make_backend` imports this
module only then). Imports JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from raylanczos.backends.jax import JaxBackend, pytree_layout
from raylanczos.problem.data import Batch
from raylanczos.problem.definition import Problem, ProblemError
from raylanczos.problem.layout import ParameterLayout

#: The name of the worker's one mesh axis: the axis a rule's PartitionSpec may name.
AXIS = "devices"

#: ``rule(name, shape, devices)``: the PartitionSpec of the leaf named ``name`` (its layout
#: path) of ``shape`` over ``devices`` devices; None or ``PartitionSpec()`` replicates it.
ShardingRule = Callable[[str, tuple[int, ...], int], "PartitionSpec | None"]


def fsdp_rule(name: str, shape: tuple[int, ...], devices: int) -> PartitionSpec:
    """The default rule: shard the leaf along its largest axis whose length ``devices``
    divides (the first such axis on a tie), or replicate it (``PartitionSpec()``) when
    none does, or when there is one device. ``name`` is not used."""
    if devices <= 1:
        return PartitionSpec()
    divisible = [axis for axis, length in enumerate(shape) if length % devices == 0]
    if not divisible:
        return PartitionSpec()
    axis = max(divisible, key=lambda a: (shape[a], -a))
    return PartitionSpec(*(AXIS if a == axis else None for a in range(len(shape))))


def worker_devices(count: int, available: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The first ``count`` of ``available`` (default ``jax.local_devices()``: in a Ray actor
    given ``num_gpus=G``, its G GPUs), or ``ProblemError`` naming how many there are."""
    available = list(jax.local_devices() if available is None else available)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ProblemError(f"devices per worker must be a positive integer, got {count!r}")
    if count > len(available):
        kinds = sorted({d.platform for d in available})
        raise ProblemError(
            f"devices per worker is {count} but this worker sees {len(available)} device(s) ({', '.join(kinds)}); "
            "give the worker that many GPUs, or on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count"
        )
    return available[:count]


def check_spec(name: str, shape: tuple[int, ...], spec: Any, devices: int) -> PartitionSpec:
    """``spec`` as a PartitionSpec for the leaf, or ``ProblemError`` naming the leaf, its
    shape and the spec: it must be None or a PartitionSpec of at most ``len(shape)``
    entries, each None or :data:`AXIS` (at most once), on an axis ``devices`` divides."""
    if spec is None:
        return PartitionSpec()
    if not isinstance(spec, PartitionSpec):
        raise ProblemError(
            f"param_sharding gave {spec!r} for {name!r} (shape {shape}); expected a jax.sharding.PartitionSpec or None"
        )
    if len(spec) > len(shape):
        raise ProblemError(f"param_sharding gave {spec} for {name!r}, which has only {len(shape)} axes (shape {shape})")
    named = [(axis, entry) for axis, entry in enumerate(spec) if entry is not None]
    if len(named) > 1:
        raise ProblemError(f"param_sharding gave {spec} for {name!r}: the axis {AXIS!r} may shard one axis only")
    for axis, entry in named:
        if entry not in (AXIS, (AXIS,)):
            raise ProblemError(
                f"param_sharding gave {spec} for {name!r}: the worker's mesh has one axis, {AXIS!r}, not {entry!r}"
            )
        if shape[axis] % devices:
            raise ProblemError(
                f"param_sharding gave {spec} for {name!r} (shape {shape}): axis {axis} of length {shape[axis]} "
                f"does not split over {devices} devices"
            )
    return spec


@dataclass(frozen=True)
class Placement:
    """Where a worker's parameters, tangents and products live across its devices.

    Attributes:
      mesh: the one-axis mesh (:data:`AXIS`) over the worker's G devices.
      treedef: the parameters' pytree structure.
      layout: the flat vector's layout (leaves in ``ravel_pytree`` order, as the JAX
        backend's), giving each leaf's name, shape and offset in float64[n].
      specs: one PartitionSpec per leaf, in layout order (no block axis).
    """

    mesh: Mesh
    treedef: Any
    layout: ParameterLayout
    specs: tuple[PartitionSpec, ...]

    @property
    def devices(self) -> list[jax.Device]:
        return list(self.mesh.devices.flat)

    def param_shardings(self) -> Any:
        """A pytree of NamedSharding, one per parameter leaf."""
        return self.treedef.unflatten([NamedSharding(self.mesh, spec) for spec in self.specs])

    def block_shardings(self) -> Any:
        """A pytree of NamedSharding for leaves (B, *shape): the block axis unsharded."""
        return self.treedef.unflatten([NamedSharding(self.mesh, PartitionSpec(None, *spec)) for spec in self.specs])

    def replicated(self) -> NamedSharding:
        """Every device holds all of it (the batch, scalars)."""
        return NamedSharding(self.mesh, PartitionSpec())

    def put_params(self, params: Any, dtype: Any) -> Any:
        """The parameter pytree in ``dtype``, each leaf sent to the devices shard by shard."""
        leaves = jax.tree_util.tree_leaves(params)
        shardings = jax.tree_util.tree_leaves(self.param_shardings())
        return self.treedef.unflatten([_put(np.asarray(leaf), s, dtype) for leaf, s in zip(leaves, shardings)])

    def put_block(self, vectors: np.ndarray, dtype: Any) -> Any:
        """A block of flat vectors float64 (B, n) as a pytree of sharded (B, *shape) leaves in ``dtype``."""
        block = self._check_block(vectors, "vectors")
        shardings = jax.tree_util.tree_leaves(self.block_shardings())
        return self.treedef.unflatten([_put(self._leaf_view(block, b), s, dtype) for b, s in zip(self.layout.blocks, shardings)])

    def gather_block(self, products: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Copy a pytree of sharded (B, *shape) products into ``out`` float64 (B, n), shard
        by shard (one copy of each replicated shard), and return ``out`` (allocated when None)."""
        leaves = jax.tree_util.tree_leaves(products)
        if len(leaves) != len(self.layout.blocks):
            raise ValueError(f"expected products with {len(self.layout.blocks)} leaves, got {len(leaves)}")
        rows = leaves[0].shape[0]
        if out is None:
            out = np.empty((rows, self.layout.num_params), dtype=np.float64)
        self._check_block(out, "out")
        for leaf, block in zip(leaves, self.layout.blocks):
            if leaf.shape != (out.shape[0], *block.shape):
                raise ValueError(f"product {block.name!r} has shape {leaf.shape}, expected {(out.shape[0], *block.shape)}")
            target = self._leaf_view(out, block)
            for shard in leaf.addressable_shards:
                if shard.replica_id == 0:
                    target[shard.index] = np.asarray(shard.data)
        return out

    def batch_sharding(self) -> NamedSharding:
        """The batch's examples (its arrays' first axis) split over the devices."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    def jit_block_product(self, product: Callable[[Any, Any, Any], Any], *, shard_batch: bool = False) -> Callable:
        """``product(params, tangents, batch) -> products`` jitted with the parameters'
        and the blocks' shardings, the products sharded as the tangents.

        The batch is replicated, or with ``shard_batch`` split over the devices by
        examples, as FSDP does: each device then computes its examples' share and XLA
        all-gathers the parameter shards it needs. A split batch's length must be a
        multiple of G, so a ragged last batch needs a replicated program of its own.
        """
        batch = self.batch_sharding() if shard_batch else self.replicated()
        return jax.jit(
            product,
            in_shardings=(self.param_shardings(), self.block_shardings(), batch),
            out_shardings=self.block_shardings(),
        )

    def jit_block_sum(self, add_products: Callable[[Any, Any, Any, Any, Any], Any]) -> Callable:
        """``add_products(total, size, params, tangents, batch) -> total + size · products``
        jitted with the shardings of :meth:`jit_block_product` (``total`` and the result
        sharded as the tangents, ``size`` and the batch replicated), ``total`` donated."""
        return jax.jit(
            add_products,
            in_shardings=(self.block_shardings(), self.replicated(), self.param_shardings(), self.block_shardings(), self.replicated()),
            out_shardings=self.block_shardings(),
            donate_argnums=0,
        )

    def bytes_per_device(self, tree: Any) -> dict[jax.Device, int]:
        """How many bytes of ``tree``'s arrays each device holds."""
        held = {device: 0 for device in self.devices}
        for leaf in jax.tree_util.tree_leaves(tree):
            for shard in leaf.addressable_shards:
                held[shard.device] += shard.data.nbytes
        return held

    def _leaf_view(self, block: np.ndarray, leaf: Any) -> np.ndarray:
        """The (B, *shape) view of a leaf's columns in a (B, n) block (a view: writes go through)."""
        return np.reshape(block[:, leaf.offset : leaf.offset + leaf.size], (block.shape[0], *leaf.shape), copy=False)

    def _check_block(self, block: np.ndarray, what: str) -> np.ndarray:
        n = self.layout.num_params
        if not isinstance(block, np.ndarray) or block.dtype != np.float64 or block.ndim != 2 or block.shape[1] != n:
            got = f"{block.dtype} {block.shape}" if isinstance(block, np.ndarray) else type(block).__name__
            raise ValueError(f"{what} must be a float64 numpy array of shape (B, {n}), got {got}")
        return block


def plan_placement(params: Any, devices: Sequence[jax.Device], rule: ShardingRule | None = None) -> Placement:
    """The :class:`Placement` of ``params`` over ``devices`` by ``rule`` (default :func:`fsdp_rule`).

    Each leaf's spec is checked (:func:`check_spec`); a rule that raises is reported
    with the leaf it failed on.
    """
    devices = list(devices)
    if not devices:
        raise ProblemError("a placement needs at least one device")
    rule = fsdp_rule if rule is None else rule
    layout = pytree_layout(params)
    specs = []
    for block in layout.blocks:
        try:
            spec = rule(block.name, block.shape, len(devices))
        except Exception as err:  # noqa: BLE001 - the user's rule, reported with the leaf
            raise ProblemError(
                f"param_sharding failed for {block.name!r} (shape {block.shape}): {type(err).__name__}: {err}"
            ) from err
        specs.append(check_spec(block.name, block.shape, spec, len(devices)))
    treedef = jax.tree_util.tree_structure(params)
    return Placement(Mesh(np.array(devices), (AXIS,)), treedef, layout, tuple(specs))


def _put(host: np.ndarray, sharding: NamedSharding, dtype: Any) -> jax.Array:
    """``host`` on the sharding's devices in ``dtype``: each device receives only its slice."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: np.asarray(host[index], dtype=dtype))


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes per device of a compiled program, from XLA's memory analysis
    (``jax.jit(f).lower(...).compile().memory_analysis()``).

    On a CPU (jaxlib 0.10), the analysis has ``argument_size_in_bytes``,
    ``output_size_in_bytes``, ``alias_size_in_bytes``, ``temp_size_in_bytes``,
    ``generated_code_size_in_bytes`` (0 there), their ``host_*`` twins (0) and
    ``peak_memory_in_bytes``, which there counted the arguments and outputs but not the
    temporaries. So :attr:`peak` is the larger of XLA's peak and the sum
    arguments + outputs − aliased + temporaries + code: an upper bound of what the
    program holds at once. With sharded arguments, every figure is per device.
    """

    arguments: int
    outputs: int
    aliased: int
    temporaries: int
    code: int
    xla_peak: int

    @property
    def peak(self) -> int:
        total = self.arguments + self.outputs - self.aliased + self.temporaries + self.code
        return max(self.xla_peak, total)


def compiled_memory(compiled: Any) -> DeviceMemory:
    """The :class:`DeviceMemory` of a ``jax.stages.Compiled`` program."""
    stats = compiled.memory_analysis()
    if stats is None:
        raise ValueError("XLA gave no memory analysis for this compiled program")
    return DeviceMemory(
        arguments=int(stats.argument_size_in_bytes),
        outputs=int(stats.output_size_in_bytes),
        aliased=int(stats.alias_size_in_bytes),
        temporaries=int(stats.temp_size_in_bytes),
        code=int(stats.generated_code_size_in_bytes),
        xla_peak=int(getattr(stats, "peak_memory_in_bytes", 0) or 0),
    )


def device_memory_limit(device: jax.Device) -> int | None:
    """The bytes a device can hold (``memory_stats()["bytes_limit"]``), or None where the
    device reports none (a CPU)."""
    stats = device.memory_stats()
    limit = (stats or {}).get("bytes_limit")
    return int(limit) if limit else None


class DeviceMemoryError(ProblemError):
    """The compiled product needs more memory per device than a device has."""


def check_fits(memory: DeviceMemory, limit: int | None, devices: int, *, worker: str = "the worker") -> None:
    """``DeviceMemoryError`` when ``memory.peak`` exceeds ``limit`` bytes (None: no limit
    known), naming both figures and suggesting more devices per worker."""
    if limit is None or memory.peak <= limit:
        return
    raise DeviceMemoryError(
        f"{worker}'s product needs {memory.peak / 2**30:.2f} GiB per device with {devices} device(s) per worker, "
        f"but a device holds {limit / 2**30:.2f} GiB; use --devices-per-worker {2 * devices} or more"
    )


class ShardedJaxBackend(JaxBackend):
    """A :class:`~raylanczos.backends.jax.JaxBackend` whose model is sharded over G devices.

    The parameters are placed by the problem's ``param_sharding`` rule (default
    :func:`fsdp_rule`), each batch is replicated on the G devices, a block of tangents
    goes to them leaf by leaf (:meth:`Placement.put_block`), and the Hessian and
    Gauss–Newton products are jitted with those shardings (:meth:`Placement.jit_block_product`,
    :meth:`Placement.jit_block_sum`); the float64 sums Σ_b |b| · C_b V stay sharded on the
    devices and reach the host shard by shard (:meth:`Placement.gather_block`). The loop
    over the batches, their weighting and the float64 sums are the base class's, as for
    one device.

    The products are the one-device products up to the order of XLA's sums (its
    collectives add partial sums of the split contractions): equal to rounding, not
    bit for bit.

    Args:
      problem, arrays, compute_dtype, operator: as :class:`~raylanczos.backends.jax.JaxBackend`.
      devices: G > 1, the first G of ``jax.local_devices()``; fewer is a ``ProblemError``
        naming G and what the process sees.

    Attributes:
      placement: the :class:`Placement` of the parameters over the G devices.
    """

    placement: Placement

    def __init__(self, problem: Problem, arrays: Batch, *, compute_dtype: str | None = None, operator: str = "hessian", devices: int):
        self._devices = worker_devices(devices)
        self.devices = devices
        super().__init__(problem, arrays, compute_dtype=compute_dtype, operator=operator)

    def _placed_params(self, problem: Problem, flat: jax.Array, unravel: Callable) -> tuple[Any, Callable]:
        """The parameter pytree sharded over the devices; the products take it as it is."""
        tree = unravel(flat)
        self.placement = plan_placement(tree, self._devices, problem.param_sharding)
        return self.placement.put_params(tree, self.dtype), _as_is

    def _put_batch(self, batch: Batch) -> Batch:
        return jax.device_put(batch, self.placement.replicated())

    def _jit_product(self, block_product: Callable) -> Callable:
        return self.placement.jit_block_product(block_product)

    def _jit_adding(self, add_products: Callable) -> Callable:
        return self.placement.jit_block_sum(add_products)

    def _tangents(self, block: np.ndarray) -> Any:
        return self.placement.put_block(block, self.dtype)

    def _zero_sums(self, shape: tuple[int, int]) -> Any:
        return self.placement.put_block(np.zeros(shape), np.float64)

    def _to_host(self, products: Any) -> np.ndarray:
        return self.placement.gather_block(products)

    def device_memory(self, block_size: int) -> dict[str, Any]:
        """The compiled product of a block of ``block_size`` tangents on the first (largest)
        batch, as one pass runs it (summing on the device or not): its peak bytes per device
        (:func:`compiled_memory`) and the device's limit (None where the device reports
        none, a CPU). ``DeviceMemoryError`` (:func:`check_fits`) when it does not fit. The
        program compiled here is the one the passes run (JAX keeps it)."""
        block = np.zeros((block_size, self.num_params))
        if self.accumulates_on_device:
            with self._summing_scope():
                arguments = (self._zero_sums(block.shape), np.float64(self.batch_sizes[0]), self._params, self._tangents(block))
                compiled = self._add_products.lower(*arguments, self._batches[0]).compile()
        else:
            with self._product_scope():
                compiled = self._block_product.lower(self._params, self._tangents(block), self._batches[0]).compile()
        memory = compiled_memory(compiled)
        limit = device_memory_limit(self.placement.devices[0])
        check_fits(memory, limit, self.devices)
        return {"devices": self.devices, "platform": self.placement.devices[0].platform, "peak_bytes": memory.peak, "limit_bytes": limit}


def _as_is(params: Any) -> Any:
    return params
