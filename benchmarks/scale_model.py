"""A model of one Lanczos pass on a cluster: step time, overhead against the HVP floor,
the driver's RAM for the bases and the run's total time, for the flat and the node reduction.

What one pass does (``raylanczos.run.loop``): the driver puts the (B, n) block once; every node
pulls it; each GPU computes its shard's partial products; with ``reduce="node"`` each
node's first worker sums its node's partials from the node's object store; the partials
(one per worker, or one per node) travel to the driver, which sums them and takes the
first half of the Lanczos step (``accept``). The next block is submitted at once, and the
driver's re-orthogonalisation sweeps the bases while the workers compute. So::

    chain = broadcast out + HVP + partial written to the object store
            + node sum and its result written (node reduction) + partials into the driver
    step  = block put + max(chain, re-orthogonalisation) + driver sum + accept

With the sharded state (:func:`predict_sharded`) keepers, one per node, hold slices of
every vector; the driver moves only scalars and references::

    chain = all-gather of the keepers' slices + HVP + node work (puts and the node sum)
    step  = publish + max(chain, keepers' re-orthogonalisation) + reduce-scatter
            + keepers' accept + the driver's round trips

Costs per byte come from ``benchmarks/scale.py`` (measured on the machine it runs on, in
the same run when it is given ``--model``); :data:`MEASURED_2026_12_01` and
:data:`SHARDED_MEASURED` hold the figures recorded in docs/scaling.md. Every other figure
is an input; :func:`resnet50_inputs` and :func:`transformer_inputs` state their sources.
Pure: the standard library only.

Usage::

    python benchmarks/scale_model.py                       # the ResNet-50 / ImageNet table
    python benchmarks/scale_model.py --sharded             # ResNet-50, 1B and 7B transformers: driver against sharded
    python benchmarks/scale_model.py --params 7050314 --examples 50000 --throughput 45872 --gpus 8 16 --nic-gbs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

REDUCTIONS = ("flat", "node")


@dataclass(frozen=True)
class DriverCosts:
    """Seconds per byte of the steps whose cost is measured (``benchmarks/scale.py``).

    ``reduce``: the driver's float64 sum and division, per byte of partials it receives;
    ``node_reduce``: a node's sum, per byte of the partials it adds (its own included);
    ``broadcast``: the driver's rounding of the block to float32 and its ``ray.put``, per
    byte of the float32 block; ``put``: ``ray.put`` of a float64 array, per byte (a worker
    returning its partial); ``accept``: the first half of a Lanczos step, per byte of one
    float64 vector (n·8), per draw; ``reorth``: re-orthogonalisation, per byte of basis
    read. ``source`` says where they were measured.
    """

    reduce: float
    node_reduce: float
    broadcast: float
    put: float
    accept: float
    reorth: float
    source: str

    def for_idle_nodes(self) -> "DriverCosts":
        """These costs with a node's sum as fast per byte as the driver's: the same numpy
        sum over the same arrays, on a host that runs nothing else meanwhile. (On the
        simulated cluster a node's sum shares the cores with the driver's
        re-orthogonalisation, and measures slower.)"""
        return dataclasses.replace(self, node_reduce=self.reduce)


#: What ``benchmarks/scale.py --model`` measured on the 2-core machine of docs/scaling.md.
MEASURED_2026_12_01 = DriverCosts(
    reduce=0.269e-9, node_reduce=0.389e-9, broadcast=1.12e-9, put=1.13e-9, accept=2.12e-9, reorth=0.436e-9,
    source="benchmarks/scale.py --model, 2026-12-01 11:41-11:54 UTC, 2-core AMD EPYC VM, docs/scaling.md",
)


@dataclass(frozen=True)
class ClusterInputs:
    """One configuration to predict.

    ``num_params``: n; ``num_examples``: N; ``nodes``: K; ``gpus_per_node``: G (one
    worker each); ``hvp_throughput``: examples/s of one GPU's HVP pass with one tangent;
    ``tangent_cost``: what each tangent beyond the first adds to a pass, as a fraction of
    a one-tangent pass (1: B tangents cost B passes); ``nic_gbs``: GB/s (10⁹ B/s) of each
    node's network interface, the driver's included; ``driver_bandwidth_gbs``: GB/s at
    which the driver's re-orthogonalisation reads the bases; ``order``: m; ``draws``: D;
    ``draws_per_pass``: B; ``broadcast_itemsize``: bytes per entry of the broadcast block
    (4 for float32 models); ``head_ram_gb``: GB of the driver's RAM the bases may use;
    ``node_ram_gb``: GB of a worker node's RAM its keeper's slices may use (sharded state);
    ``gpu_node_sum_gbs``: not built, a design to weigh: a node's GPUs reduce-scatter their
    partials among themselves at this many GB/s per GPU (NCCL over NVLink) and each puts
    its 1/G of the node sum's pieces, instead of the host's puts and sum (None: the host's,
    as built; sharded state only).
    """

    num_params: int
    num_examples: int
    nodes: int
    gpus_per_node: int
    hvp_throughput: float
    nic_gbs: float
    driver_bandwidth_gbs: float
    order: int = 90
    draws: int = 10
    draws_per_pass: int = 1
    tangent_cost: float = 1.0
    broadcast_itemsize: int = 4
    head_ram_gb: float = 2048.0
    node_ram_gb: float = 2048.0
    gpu_node_sum_gbs: float | None = None

    @property
    def workers(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class Prediction:
    """Seconds per pass, bytes per pass, and the run's totals, for one reduction."""

    reduce: str
    hvp: float
    broadcast_out: float
    partials_in: float
    node_reduce: float
    driver_reduce: float
    reorth: float
    step: float
    bytes_out: int
    bytes_in: int
    bases_bytes: int
    passes: int
    total: float
    driver_bound: bool

    @property
    def overhead(self) -> float:
        """Step time over the HVP floor (1 is no overhead)."""
        return self.step / self.hvp


def hvp_seconds(inputs: ClusterInputs) -> float:
    """One GPU's share of one pass: (N / (K·G)) / throughput, B tangents at the tangent cost."""
    b = inputs.draws_per_pass
    return inputs.num_examples / inputs.workers / inputs.hvp_throughput * (1 + (b - 1) * inputs.tangent_cost)


def basis_rows_read(step: int, order: int) -> int:
    """Basis vectors one draw's re-orthogonalisation reads at ``step`` (1 … m) of ``order``.

    At step k < m it projects against k vectors (two sweeps: V w, then Vᵀ c) and combines
    k + 1 (the look-ahead correction): 3k + 1; at step m the projection only, 2m
    (``raylanczos.lanczos.reorthogonalize``; conditional second passes not counted).
    """
    return 3 * step + 1 if step < order else 2 * order


def basis_bytes_per_draw(num_params: int, order: int) -> int:
    """Bytes of basis one draw's re-orthogonalisation reads over its m steps (float64)."""
    return sum(basis_rows_read(k, order) for k in range(1, order + 1)) * num_params * 8


def predict(inputs: ClusterInputs, costs: DriverCosts, reduce: str) -> Prediction:
    """The pass and the run of ``inputs`` under ``reduce`` (``"flat"`` or ``"node"``)."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    n, b = inputs.num_params, inputs.draws_per_pass
    nic = inputs.nic_gbs * 1e9
    block = b * n * inputs.broadcast_itemsize
    partial = b * n * 8
    hvp = hvp_seconds(inputs)
    bytes_out = inputs.nodes * block  # every node pulls the block from the driver's node
    senders = inputs.nodes if reduce == "node" else inputs.workers
    bytes_in = senders * partial
    grouped = reduce == "node" and inputs.gpus_per_node > 1  # a node of one worker sums nothing
    node_reduce = inputs.gpus_per_node * partial * costs.node_reduce if grouped else 0.0
    broadcast_out = bytes_out / nic
    partials_in = bytes_in / nic
    puts = 2 if grouped else 1  # a member's partial into its node's store, then the node's sum
    chain = broadcast_out + hvp + puts * partial * costs.put + node_reduce + partials_in
    reorth = b * basis_bytes_per_draw(n, inputs.order) / inputs.order / (inputs.driver_bandwidth_gbs * 1e9)
    driver_reduce = bytes_in * costs.reduce
    step = block * costs.broadcast + max(chain, reorth) + driver_reduce + b * n * 8 * costs.accept
    passes = math.ceil(inputs.draws / b) * inputs.order
    return Prediction(
        reduce=reduce, hvp=hvp, broadcast_out=broadcast_out, partials_in=partials_in, node_reduce=node_reduce,
        driver_reduce=driver_reduce, reorth=reorth, step=step, bytes_out=bytes_out, bytes_in=bytes_in,
        bases_bytes=b * n * (inputs.order + 1) * 8, passes=passes, total=passes * step, driver_bound=reorth > chain,
    )


def bases_fit(inputs: ClusterInputs) -> int:
    """The largest B whose bases (B·n·(m+1)·8 bytes) fit in ``head_ram_gb``; beyond it the
    bases would have to be sharded over the workers (DESIGN §9)."""
    return int(inputs.head_ram_gb * 1e9 // (inputs.num_params * (inputs.order + 1) * 8))


# ----------------------------------------------------------------------------- ResNet-50


#: DESIGN §7: one H200, JAX float32, the 7.05M-parameter conv net, 50,000 examples of
#: 32×32×3: one whole-data HVP in 1.09 s.
ANCHOR_EXAMPLES, ANCHOR_HVP_S = 50_000, 1.09

#: ResNet-50 at 224×224: 25,557,032 parameters and 4.09 G multiply-adds per image
#: (torchvision's ResNet50_Weights.IMAGENET1K_V1: ``num_params``, and ``GFLOPS``, which
#: counts a multiply-add once); ImageNet-1k (ILSVRC-2012) has 1,281,167 training images.
RESNET50_PARAMS, RESNET50_MACS, IMAGENET_EXAMPLES = 25_557_032, 4.09e9, 1_281_167

#: The driver's sweeps on the H200 host of DESIGN §7 (16 cores): two classical
#: Gram–Schmidt passes, four BLAS-2 sweeps of 90 × 7.05M float64, in 0.33 s.
ANCHOR_SWEEP_GBS = 4 * 90 * 7_050_314 * 8 / 0.33 / 1e9


#: DESIGN §7's conv net: its 3×3 SAME convolutions as (spatial side, channels in, out), a
#: 2×2 max-pool between the sides, then a global mean pool and a dense 512→10.
ANCHOR_CONVOLUTIONS = (
    (32, 3, 64), (32, 64, 64), (16, 64, 128), (16, 128, 128), (8, 128, 256), (8, 256, 256),
    (4, 256, 512), (4, 512, 512), (4, 512, 512),
)


def anchor_convnet_macs() -> int:
    """Multiply-adds per 32×32×3 example of DESIGN §7's conv net: 247,141,376."""
    return sum(side * side * 9 * cin * cout for side, cin, cout in ANCHOR_CONVOLUTIONS) + 512 * 10


def resnet50_throughput() -> float:
    """Examples/s of one GPU's ResNet-50 HVP, from the §7 anchor scaled by multiply-adds per
    example (assumed: the HVP costs the same multiple of the forward pass in both nets,
    and an H100 runs it as fast as the H200 did, both being GH100 chips of the same compute)."""
    return ANCHOR_EXAMPLES / ANCHOR_HVP_S * anchor_convnet_macs() / RESNET50_MACS


def resnet50_inputs(gpus: int, *, gpus_per_node: int = 8, nic_gbs: float = 12.5, **overrides) -> ClusterInputs:
    """ResNet-50 on ImageNet on ``gpus`` H100s, ``gpus_per_node`` to a node (fewer on one node).

    Assumed: a 100 Gb/s (12.5 GB/s) network interface per node, the driver's included,
    which Ray's transfers fill; the driver sweeps the bases as fast as the §7 host
    (:data:`ANCHOR_SWEEP_GBS`); B = 1, m = 90, D = 10; 2 TB of head RAM (a DGX H100's).
    """
    per_node = min(gpus, gpus_per_node)
    fields = dict(
        num_params=RESNET50_PARAMS, num_examples=IMAGENET_EXAMPLES, nodes=math.ceil(gpus / per_node),
        gpus_per_node=per_node, hvp_throughput=resnet50_throughput(), nic_gbs=nic_gbs,
        driver_bandwidth_gbs=ANCHOR_SWEEP_GBS,
    )
    return ClusterInputs(**{**fields, **overrides})


# ----------------------------------------------------------------------------- sharded state


#: Driver ↔ keepers round trips of one sharded pass (``raylanczos.run.stores.KeeperStore``):
#: the keepers' receiving of the products, the step's two rounds with sums, the publishing
#: of the next block, and the re-orthogonalisation's two rounds (a DGKS second pass adds two).
SHARDED_ROUND_TRIPS = 6
#: Bytes counted for an object reference in a message (``raylanczos.numerics.sharded.REFERENCE_BYTES``).
REFERENCE_BYTES = 28
#: Bytes of a worker's account of a pass (:class:`~raylanczos.operators.contract.NodeSumInfo`: five numbers).
INFO_BYTES = 40
#: Bytes of the step's operations (their scalar fields) one keeper receives per slot and
#: pass, beyond the coefficients: fitted to the bytes ``benchmarks/scale.py`` measured
#: (K = 1, 2, 4; B = 2, m = 10), which :func:`sharded_driver_bytes` then gives within 7%.
STEP_OP_BYTES = 400


@dataclass(frozen=True)
class ShardedCosts:
    """Seconds per byte of a sharded pass's work on the nodes (``benchmarks/scale.py --model``).

    ``sum``: a float64 add in numpy, per byte added (a node's sum of its workers' partials,
    a keeper's sum of its pieces of the node sums); ``put``: ``ray.put`` of a float64 array,
    per byte (a member's partial, a node sum's pieces, a keeper's slice; also taken for a
    worker's concatenation of the slices, a copy of the block); ``accept``: the step's first
    half, per byte of one float64 vector's slice, per draw; ``sweep``: a keeper's
    re-orthogonalisation per byte of its slice of the basis read (as measured on the
    simulated cluster, its two round trips included); ``round_trip``: seconds of one message
    from the driver to the keepers and its answer. ``source`` says where they were measured.
    """

    sum: float
    put: float
    accept: float
    sweep: float
    round_trip: float
    source: str


#: What ``benchmarks/scale.py --model`` measured on the 2-core machine of docs/scaling.md
#: (the sharded state's section), and the driver state's costs of the same run.
SHARDED_MEASURED_2026_12_06 = ShardedCosts(
    sum=0.117e-9, put=0.418e-9, accept=1.352e-9, sweep=0.934e-9, round_trip=0.835e-3,
    source="benchmarks/scale.py --model, 2026-12-06 03:22-03:35 UTC, 2-core Xeon VM, docs/scaling.md",
)
MEASURED_2026_12_06 = DriverCosts(
    reduce=1.109e-9, node_reduce=0.862e-9, broadcast=1.757e-9, put=0.418e-9, accept=1.352e-9, reorth=0.970e-9,
    source=SHARDED_MEASURED_2026_12_06.source,
)


@dataclass(frozen=True)
class ShardedPrediction:
    """One sharded pass (seconds), the driver's bytes, the memory it needs, and the run.

    ``publish``: a keeper's putting its slice of the block; ``allgather``: a node's fetching
    the other slices over its NIC and a worker's concatenation; ``node_work``: a member's
    put, the node sum and the put of its pieces; ``scatter``: a keeper's fetching its pieces
    of the other nodes' sums over its NIC and adding them; ``accept``, ``reorth``: the
    keepers' step (reorth overlapped with the products); ``round_trips``: the driver's
    messages on the critical path; ``node_bytes``: one keeper's slices (B bases, pending
    vectors and work vectors); ``head_bytes``: the driver's scalars.
    """

    hvp: float
    publish: float
    allgather: float
    node_work: float
    scatter: float
    accept: float
    reorth: float
    round_trips: float
    step: float
    bytes_out: int
    bytes_in: int
    node_bytes: int
    head_bytes: int
    passes: int
    total: float

    @property
    def overhead(self) -> float:
        """Step time over the HVP floor (1 is no overhead)."""
        return self.step / self.hvp


def keeper_node_bytes(num_params: int, nodes: int, order: int, draws_per_pass: int) -> int:
    """Host bytes one keeper holds for its slice of n/K: B bases of m + 1 rows, two halves of
    each slot's pending vector and correction, four work vectors per slot, float64
    (``raylanczos.distributed.keepers.keeper_bytes``)."""
    b = draws_per_pass
    return (b * (order + 1) + 2 * b * 2 + 4 * b) * math.ceil(num_params / nodes) * 8


def sharded_driver_bytes(inputs: ClusterInputs) -> tuple[int, int]:
    """Bytes (out, in) the driver moves in one sharded pass, none of them n-sized: K slice
    references to every worker and the K + 1 slice bounds to every node, K pieces'
    references from every node, the workers' accounts, and per keeper the step's
    coefficients and operations out (B·(2k + 1) floats and B·:data:`STEP_OP_BYTES`) and
    partial sums back (B·(k + 5) floats), at the mean basis size k = m/2."""
    k, b, keepers = inputs.order // 2, inputs.draws_per_pass, inputs.nodes
    out = (
        inputs.workers * keepers * REFERENCE_BYTES + keepers * (keepers + 1) * 8
        + keepers * b * ((2 * k + 1) * 8 + STEP_OP_BYTES)
    )
    back = keepers * keepers * REFERENCE_BYTES + inputs.workers * INFO_BYTES + keepers * b * (k + 5) * 8
    return out, back


def node_work_seconds(inputs: ClusterInputs, costs: ShardedCosts) -> float:
    """A node's work from its workers' partials to its sum's pieces in its object store: on
    the host (a member's put, the sum of G partials, the pieces' put), or with
    ``gpu_node_sum_gbs`` a reduce-scatter on the GPUs and a put of 1/G per GPU."""
    partial, g = inputs.draws_per_pass * inputs.num_params * 8, inputs.gpus_per_node
    if inputs.gpu_node_sum_gbs is not None:
        return partial * (g - 1) / g / (inputs.gpu_node_sum_gbs * 1e9) + partial / g * costs.put
    if g == 1:
        return partial * costs.put
    return partial * costs.put + g * partial * costs.sum + partial * costs.put


def predict_sharded(inputs: ClusterInputs, costs: ShardedCosts) -> ShardedPrediction:
    """One pass with the vectors sliced over K keepers, one per node; the node reduction::

        chain = all-gather + HVP + node work        (the products, from the published slices)
        step  = publish + max(chain, reorth) + scatter + accept + round trips
    """
    n, b, k = inputs.num_params, inputs.draws_per_pass, inputs.nodes
    nic = inputs.nic_gbs * 1e9
    remote = (k - 1) / k  # the share of a vector a node fetches from, or sends to, the others
    block, partial = b * n * inputs.broadcast_itemsize, b * n * 8
    publish = block / k * costs.put
    allgather = block * remote / nic + block * costs.put
    node_work = node_work_seconds(inputs, costs)
    scatter = partial * remote / nic + partial * costs.sum
    accept = b * n / k * 8 * costs.accept
    reorth = b * basis_bytes_per_draw(n, inputs.order) / inputs.order / k * costs.sweep
    hvp = hvp_seconds(inputs)
    round_trips = (SHARDED_ROUND_TRIPS - 2) * costs.round_trip  # the two of the reorth are in its measured cost
    step = publish + max(allgather + hvp + node_work, reorth) + scatter + accept + round_trips
    passes = math.ceil(inputs.draws / b) * inputs.order
    out, back = sharded_driver_bytes(inputs)
    return ShardedPrediction(
        hvp=hvp, publish=publish, allgather=allgather, node_work=node_work, scatter=scatter, accept=accept,
        reorth=reorth, round_trips=round_trips, step=step, bytes_out=out, bytes_in=back,
        node_bytes=keeper_node_bytes(n, k, inputs.order, b), head_bytes=b * (inputs.order + 1) * 2 * 8,
        passes=passes, total=passes * step,
    )


def overhead_terms(prediction: ShardedPrediction) -> dict[str, float]:
    """The sharded pass's seconds beyond the HVP floor, by term (the re-orthogonalisation
    only for what it outlasts the products by)."""
    chain = prediction.allgather + prediction.hvp + prediction.node_work
    return {
        "publish": prediction.publish, "all-gather": prediction.allgather, "node work": prediction.node_work,
        "reorth beyond the products": max(prediction.reorth - chain, 0.0), "scatter": prediction.scatter,
        "accept": prediction.accept, "round trips": prediction.round_trips,
    }


def largest_term(prediction: ShardedPrediction) -> str:
    """The name of the largest of :func:`overhead_terms`."""
    terms = overhead_terms(prediction)
    return max(terms, key=terms.get)


def examples_for_overhead(inputs: ClusterInputs, costs: ShardedCosts, target: float) -> int:
    """Examples N enough for a sharded overhead of at most ``target`` (> 1), all else equal:
    the HVP grows with N, the vectors' terms do not (exact when the products, not the
    re-orthogonalisation, bound the pass)."""
    if not target > 1:
        raise ValueError(f"target must exceed 1, got {target}")
    per_example = hvp_seconds(dataclasses.replace(inputs, num_examples=1))
    fixed = predict_sharded(dataclasses.replace(inputs, num_examples=0), costs)
    serial = fixed.publish + fixed.scatter + fixed.accept + fixed.round_trips
    beside = fixed.allgather + fixed.node_work
    needed = max((serial + beside) / (target - 1), (serial + fixed.reorth) / target)
    return math.ceil(needed / per_example)


# ----------------------------------------------------------------------------- transformers


#: NVIDIA H100 SXM: 989 TFLOP/s dense BF16 (NVIDIA H100 Tensor Core GPU datasheet, 2023).
H100_BF16_FLOPS = 989e12
#: Assumed model-FLOPs utilisation of the HVP: 40%, as large-model training reaches on H100s
#: (e.g. Llama 3's 38–43% BF16 MFU on 16K H100s: Dubey et al., "The Llama 3 Herd of Models", 2024).
HVP_MFU = 0.40
#: A training step's FLOPs per token: 6·n (Kaplan et al., "Scaling Laws for Neural Language
#: Models", 2020). Assumed: a forward-over-reverse HVP costs twice that (Pearlmutter, "Fast exact
#: multiplication by the Hessian", 1994: a small constant times a gradient; JAX's jvp of grad
#: carries a tangent through both passes), 12·n per token.
HVP_FLOPS_PER_TOKEN_PER_PARAM = 12
#: Tokens of data per pass: 2²⁷ (32,768 sequences of 4,096 tokens), an assumption.
TRANSFORMER_TOKENS = 2**27
#: 400 Gb/s per node (a DGX H100's InfiniBand NDR ports are 400 Gb/s each: NVIDIA DGX H100
#: user guide), assumed filled by Ray's object transfers.
IB_NIC_GBS = 50.0
#: NVLink 4: 900 GB/s per H100 both ways, 450 GB/s each way (NVIDIA H100 datasheet), for
#: the node sum on the GPUs (:attr:`ClusterInputs.gpu_node_sum_gbs`).
NVLINK_GBS = 450.0


def transformer_throughput(num_params: int) -> float:
    """Tokens/s of one H100's HVP: peak BF16 FLOP/s × MFU / (12·n FLOPs per token)."""
    return H100_BF16_FLOPS * HVP_MFU / (HVP_FLOPS_PER_TOKEN_PER_PARAM * num_params)


def transformer_inputs(num_params: int, gpus: int, *, tokens: int = TRANSFORMER_TOKENS, **overrides) -> ClusterInputs:
    """A decoder-only transformer of ``num_params`` on ``gpus`` H100s, 8 to a node, BF16
    (2-byte block), 400 Gb/s per node; B = 1, m = 90, D = 10; 2 TB of head RAM."""
    fields = {
        "num_params": num_params, "num_examples": tokens, "nodes": math.ceil(gpus / 8), "gpus_per_node": min(gpus, 8),
        "hvp_throughput": transformer_throughput(num_params), "nic_gbs": IB_NIC_GBS,
        "driver_bandwidth_gbs": ANCHOR_SWEEP_GBS, "broadcast_itemsize": 2,
    }
    return ClusterInputs(**{**fields, **overrides})


def projections() -> list[tuple[str, ClusterInputs]]:
    """The configurations of docs/scaling.md's sharded projections."""
    return [
        *((f"ResNet-50, {g} H100s", resnet50_inputs(g, nic_gbs=IB_NIC_GBS)) for g in (64, 512)),
        *((f"1B transformer, {g} H100s", transformer_inputs(10**9, g)) for g in (64, 256)),
        *((f"7B transformer, {g} H100s", transformer_inputs(7 * 10**9, g)) for g in (64, 256)),
    ]


# ----------------------------------------------------------------------------- tables


def label(gpus: int) -> str:
    return f"{gpus} GPU{'s' if gpus > 1 else ''}"


def gigabytes(count: float) -> str:
    return f"{count / 1e9:.2f}"


def table(rows: list[tuple[str, ClusterInputs]], costs: DriverCosts) -> str:
    """A markdown table: each configuration under both reductions."""
    lines = [
        "| configuration | reduce | HVP floor s | out s | in s | node sum s | driver sum s | reorth s | step s "
        "| overhead | GB in/pass | bases GB | total h |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, inputs in rows:
        for reduce in REDUCTIONS:
            p = predict(inputs, costs, reduce)
            lines.append(
                f"| {label} | {reduce} | {p.hvp:.2f} | {p.broadcast_out:.3f} | {p.partials_in:.3f} | {p.node_reduce:.3f} "
                f"| {p.driver_reduce:.3f} | {p.reorth:.3f}{' (bound)' if p.driver_bound else ''} | {p.step:.2f} "
                f"| {p.overhead:.3f} | {gigabytes(p.bytes_in)} | {gigabytes(p.bases_bytes)} | {p.total / 3600:.2f} |"
            )
    return "\n".join(lines)


def assumptions(inputs: ClusterInputs, costs: DriverCosts) -> str:
    """The inputs and costs a table rests on, one line each."""
    return "\n".join([
        f"per-byte costs ({costs.source}): driver sum {costs.reduce * 1e9:.3f} ns/B, "
        f"node sum {costs.node_reduce * 1e9:.3f} ns/B, broadcast {costs.broadcast * 1e9:.3f} ns/B, "
        f"put {costs.put * 1e9:.3f} ns/B, accept {costs.accept * 1e9:.3f} ns/B per draw "
        f"(re-orthogonalisation {costs.reorth * 1e9:.3f} ns/B there; here from the driver sweeps' GB/s)",
        f"HVP {inputs.hvp_throughput:,.0f} examples/s per GPU, tangent cost {inputs.tangent_cost:g}; "
        f"NIC {inputs.nic_gbs:g} GB/s per node; driver sweeps {inputs.driver_bandwidth_gbs:.1f} GB/s; "
        f"n = {inputs.num_params:,}, N = {inputs.num_examples:,}, m = {inputs.order}, D = {inputs.draws}, "
        f"B = {inputs.draws_per_pass}",
        f"bases fit the head's {inputs.head_ram_gb:g} GB up to B = {bases_fit(inputs)} "
        f"({gigabytes(inputs.num_params * (inputs.order + 1) * 8)} GB per draw in flight); beyond, shard them",
    ])


def report(rows: list[tuple[str, ClusterInputs]], costs: DriverCosts) -> str:
    """The assumptions, then the table twice: node sums at the driver's per-byte cost (the
    projection), and at the cost measured for them on the simulated cluster."""
    return "\n".join([
        assumptions(rows[0][1], costs),
        "node sums as fast per byte as the driver's sum (DriverCosts.for_idle_nodes):",
        table(rows, costs.for_idle_nodes()),
        "node sums as measured on the simulated cluster (sharing its cores with the driver):",
        table(rows, costs),
    ])


def state_table(rows: list[tuple[str, ClusterInputs]], driver: DriverCosts, sharded: ShardedCosts) -> str:
    """A markdown table: each configuration with the driver's state (node reduction) and
    sharded: the pass against the HVP floor, the driver's bytes, the memory and the run."""
    lines = [
        (
            "| configuration | state | HVP floor s | step s | overhead | driver MB out/in per pass | head GB "
            "| node GB (slices) | fits | total h |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, inputs in rows:
        p = predict(inputs, driver, "node")
        fits = "yes" if p.bases_bytes <= inputs.head_ram_gb * 1e9 else f"no: > {inputs.head_ram_gb:g} GB head"
        lines.append(
            f"| {name} | driver | {p.hvp:.2f} | {p.step:.2f} | {p.overhead:.3f} | {p.bytes_out / 1e6:,.0f} / "
            f"{p.bytes_in / 1e6:,.0f} | {gigabytes(p.bases_bytes)} | 0 | {fits} | {p.total / 3600:.1f} |"
        )
        q = predict_sharded(inputs, sharded)
        fits = "yes" if q.node_bytes <= inputs.node_ram_gb * 1e9 else f"no: > {inputs.node_ram_gb:g} GB node"
        lines.append(
            f"| {name} | sharded | {q.hvp:.2f} | {q.step:.2f} | {q.overhead:.3f} | {q.bytes_out / 1e6:.3f} / "
            f"{q.bytes_in / 1e6:.3f} | {q.head_bytes / 1e9:.6f} | {gigabytes(q.node_bytes)} | {fits} | {q.total / 3600:.1f} |"
        )
    return "\n".join(lines)


def split_table(rows: list[tuple[str, ClusterInputs]], costs: ShardedCosts, target: float = 1.10) -> str:
    """A markdown table: the sharded pass's terms beyond the HVP floor (seconds), the largest,
    and the examples N that would bring the overhead to ``target``."""
    lines = [
        (
            "| configuration | N | publish | all-gather | node work | scatter | accept | round trips | reorth (overlapped) "
            f"| largest term | N for {target:.2f}× | overhead, node sum on the GPUs | and keepers at "
            f"{ANCHOR_SWEEP_GBS:.1f} GB/s | then the largest term |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    threaded = dataclasses.replace(costs, sweep=1 / (ANCHOR_SWEEP_GBS * 1e9))
    for name, inputs in rows:
        q = predict_sharded(inputs, costs)
        on_gpus = dataclasses.replace(inputs, gpu_node_sum_gbs=NVLINK_GBS)
        both = predict_sharded(on_gpus, threaded)
        lines.append(
            f"| {name} | {inputs.num_examples:,} | {q.publish:.3f} | {q.allgather:.3f} | {q.node_work:.3f} "
            f"| {q.scatter:.3f} | {q.accept:.3f} | {q.round_trips:.3f} | {q.reorth:.3f} | {largest_term(q)} "
            f"| {examples_for_overhead(inputs, costs, target):,} | {predict_sharded(on_gpus, costs).overhead:.3f} "
            f"| {both.overhead:.3f} | {largest_term(both)} |"
        )
    return "\n".join(lines)


def report_all(driver: DriverCosts, sharded: ShardedCosts) -> str:
    """The costs, the driver's state against the sharded one for :func:`projections`, and the
    sharded pass's terms. Node sums run at the sum's cost per byte in both states."""
    rows = projections()
    driver = dataclasses.replace(driver, node_reduce=sharded.sum)
    costs = (
        f"sharded per-byte costs ({sharded.source}): sum {sharded.sum * 1e9:.3f} ns/B, put {sharded.put * 1e9:.3f} ns/B, "
        f"accept {sharded.accept * 1e9:.3f} ns/B per draw, keeper sweep {sharded.sweep * 1e9:.3f} ns/B, "
        f"round trip {sharded.round_trip * 1e3:.2f} ms; driver sum {driver.reduce * 1e9:.3f} ns/B, "
        f"broadcast {driver.broadcast * 1e9:.3f} ns/B ({driver.source})"
    )
    setting = (
        f"NIC {IB_NIC_GBS:g} GB/s per node; transformers: {TRANSFORMER_TOKENS:,} tokens per pass, "
        f"HVP {HVP_FLOPS_PER_TOKEN_PER_PARAM}·n FLOPs per token at {HVP_MFU:.0%} of {H100_BF16_FLOPS / 1e12:g} TFLOP/s; "
        "m = 90, D = 10, B = 1, 8 H100s per node, 2 TB per node and head"
    )
    return "\n".join([
        costs,
        setting,
        "",
        state_table(rows, driver, sharded),
        "",
        split_table(rows, sharded),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 64], help="GPUs in all, one row each (default 1 8 64)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="G (default 8)")
    parser.add_argument("--params", type=int, default=RESNET50_PARAMS, help="n (default ResNet-50's)")
    parser.add_argument("--examples", type=int, default=IMAGENET_EXAMPLES, help="N (default ImageNet-1k's)")
    parser.add_argument("--throughput", type=float, default=None,
                        help="examples/s of one GPU's one-tangent HVP (default: ResNet-50's, scaled from DESIGN §7)")
    parser.add_argument("--tangent-cost", type=float, default=1.0,
                        help="each tangent beyond the first, as a fraction of a one-tangent pass (default 1)")
    parser.add_argument("--nic-gbs", type=float, default=12.5, help="GB/s of each node's network interface (default 12.5)")
    parser.add_argument("--driver-gbs", type=float, default=ANCHOR_SWEEP_GBS,
                        help=f"GB/s at which the driver's sweeps read the bases (default {ANCHOR_SWEEP_GBS:.1f}, DESIGN §7)")
    parser.add_argument("--order", type=int, default=90, help="m (default 90)")
    parser.add_argument("--draws", type=int, default=10, help="D (default 10)")
    parser.add_argument("--draws-per-pass", type=int, default=1, help="B (default 1)")
    parser.add_argument("--head-ram-gb", type=float, default=2048.0, help="GB of driver RAM for the bases (default 2048)")
    parser.add_argument("--sharded", action="store_true",
                        help="instead: ResNet-50 and 1B/7B transformers, the driver's state against the sharded one")
    args = parser.parse_args()
    if args.sharded:
        print(report_all(MEASURED_2026_12_06, SHARDED_MEASURED_2026_12_06))
        return
    overrides = dict(
        num_params=args.params, num_examples=args.examples, tangent_cost=args.tangent_cost,
        driver_bandwidth_gbs=args.driver_gbs, order=args.order, draws=args.draws,
        draws_per_pass=args.draws_per_pass, head_ram_gb=args.head_ram_gb,
    )
    if args.throughput is not None:
        overrides["hvp_throughput"] = args.throughput
    rows = [
        (label(g), resnet50_inputs(g, gpus_per_node=args.gpus_per_node, nic_gbs=args.nic_gbs, **overrides))
        for g in args.gpus
    ]
    print(report(rows, MEASURED_2026_12_01))


if __name__ == "__main__":
    main()
