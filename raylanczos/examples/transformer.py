"""A small decoder-only transformer on Python's own documentation, character by character.

The text ships with Python: the documentation topics of the standard library's
``pydoc_data.topics`` (the ``topics`` dict's values, joined in sorted key order; about
465,000 characters and 103 distinct ones in Python 3.11), so nothing is downloaded. The
vocabulary is the text's distinct characters, in sorted order.

The model is pure JAX: learned token and position embeddings, pre-norm blocks of causal
multi-head self-attention and a GELU MLP (4 × d_model wide), each on a residual stream,
and an untied linear head. Its layer norms have no parameters (as in OLMo), so that every
parameter belongs to one of the blocks below. It is trained briefly by Adam (lr 3e-3,
16 random windows a step) from a fixed seed on the CPU, so every process rebuilds
bit-identical weights; the trained weights are then kept in the example cache
(``$RAYLANCZOS_CACHE``, default ``~/.cache/raylanczos``, as the digits example does), so
later processes load them as a real problem loads its checkpoint.

The Hessian is that of the mean next-character cross-entropy over a fixed set of windows
of the text, evenly spaced from its start to its end (not the training windows, which are
drawn at random from the same text): ``x`` int32 (windows, context), ``y`` = ``x``
shifted by one character.

Parameters (a dict; its top-level keys are the blocks ``--per-layer`` gives):
  ``embed``              ``token`` (vocabulary, d_model) and ``position`` (context, d_model)
  ``layer<i>_attn_q``    ``w`` (d_model, d_model), ``b`` (d_model,): the queries of layer i
  ``layer<i>_attn_k``    the keys, likewise
  ``layer<i>_attn_v``    the values, likewise
  ``layer<i>_attn_o``    the attention's output projection, likewise
  ``layer<i>_mlp``       ``w_in`` (d_model, mlp), ``b_in``, ``w_out`` (mlp, d_model), ``b_out``
  ``head``               ``w`` (d_model, vocabulary), ``b`` (vocabulary,): the logits

Factories (``raylanczos.examples.transformer:<name>``):
  ``problem``       d_model 128, 4 heads, 4 layers, context 64: 825,703 parameters (with
                    Python 3.11's 103 characters), trained 200 steps (mean loss 2.6 nats
                    a character, from 5.2 at step 0); 128 windows, batch 32
  ``at_step``       the same after ``step`` Adam steps (default 200, = ``problem``; 0 is
                    untrained), for sweeps: ``--sweep step=0,100,200``
  ``tiny_problem``  d_model 8, 2 heads, 1 layer, context 8, MLP 16: about 2,400
                    parameters, trained 200 steps; 32 windows, batch 16: small enough for
                    a dense float64 Hessian
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import raylanczos as rl
from raylanczos.examples.digits_data import cached_arrays

#: Adam steps of the trained ``problem`` (and ``at_step``'s default).
TRAIN_STEPS = 200
#: Training windows per Adam step.
TRAIN_BATCH = 16
LEARNING_RATE = 3e-3


@dataclass(frozen=True)
class TransformerShape:
    """A decoder-only transformer's sizes.

    Attributes:
      d_model: width of the residual stream.
      heads: attention heads per layer (each d_model / heads wide).
      layers: transformer blocks.
      context: characters per window (positions).
      mlp: hidden width of each block's MLP.
    """

    d_model: int
    heads: int
    layers: int
    context: int
    mlp: int

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")

    @property
    def name(self) -> str:
        return f"d{self.d_model}h{self.heads}l{self.layers}c{self.context}m{self.mlp}"


DEFAULT = TransformerShape(d_model=128, heads=4, layers=4, context=64, mlp=512)
TINY = TransformerShape(d_model=8, heads=2, layers=1, context=8, mlp=16)


def problem() -> rl.Problem:
    return make_problem(DEFAULT)


def at_step(step: int = TRAIN_STEPS) -> rl.Problem:
    """The ``problem`` transformer after ``step`` Adam steps from its initial weights (0:
    untrained). Each step's weights are trained once and cached."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise rl.ProblemError(f"step must be a non-negative integer (Adam steps), got {step!r}")
    return make_problem(DEFAULT, train_steps=int(step))


def tiny_problem() -> rl.Problem:
    return make_problem(TINY, train_steps=200, windows=32, batch_size=16)


def make_problem(
    shape: TransformerShape = DEFAULT,
    *,
    train_steps: int = TRAIN_STEPS,
    windows: int = 128,
    batch_size: int = 32,
    seed: int = 0,
) -> rl.Problem:
    """The transformer ``shape`` trained ``train_steps`` steps, over ``windows`` evenly spaced
    windows of the text, ``batch_size`` windows per product batch.

    The loss is also given as ``output_loss(predict(params, batch), batch)`` (logits, then
    the mean cross-entropy), so ``operator="ggn"`` works on it.
    """
    tokens = encoded_text()
    params = trained_params(shape, train_steps, seed)
    data = rl.ArrayDataset(evaluation_windows(tokens, windows, shape.context))
    predict = functools.partial(logits, heads=shape.heads)
    return rl.Problem.from_jax(params, None, data, batch_size, predict=predict, output_loss=next_token_cross_entropy)


@functools.cache
def text() -> str:
    """The documentation topics of ``pydoc_data.topics``, joined in sorted key order."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


@functools.cache
def vocabulary() -> str:
    """The text's distinct characters, sorted; a character's index is its token."""
    return "".join(sorted(set(text())))


@functools.cache
def encoded_text() -> np.ndarray:
    """The text as tokens, int32 (characters,)."""
    index = {char: i for i, char in enumerate(vocabulary())}
    return np.array([index[char] for char in text()], dtype=np.int32)


def text_digest() -> str:
    """The first 12 hex digits of the text's SHA-256: cached weights are those of this text."""
    return hashlib.sha256(text().encode()).hexdigest()[:12]


def evaluation_windows(tokens: np.ndarray, count: int, context: int) -> dict[str, np.ndarray]:
    """``count`` windows evenly spaced over ``tokens``: ``x`` int32 (count, context), ``y`` the next characters."""
    starts = np.linspace(0, tokens.size - context - 1, count).astype(np.int64)
    spans = tokens[starts[:, None] + np.arange(context + 1)]
    return {"x": spans[:, :-1], "y": spans[:, 1:]}


def init_params(shape: TransformerShape, vocabulary_size: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Float32 initial weights: embeddings N(0, 0.02²); weights N(0, 1/fan_in), the
    projections into the residual stream (``attn_o``, the MLP's ``w_out``) scaled by
    1/√(2·layers) as in GPT-2; zero biases."""
    rng = np.random.default_rng(seed)
    d, residual_scale = shape.d_model, 1.0 / np.sqrt(2 * shape.layers)

    def dense(fan_in: int, fan_out: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((fan_in, fan_out)) * scale / np.sqrt(fan_in)).astype(np.float32)

    params = {
        "embed": {
            "token": (0.02 * rng.standard_normal((vocabulary_size, d))).astype(np.float32),
            "position": (0.02 * rng.standard_normal((shape.context, d))).astype(np.float32),
        }
    }
    for i in range(shape.layers):
        for part in ("q", "k", "v", "o"):
            scale = residual_scale if part == "o" else 1.0
            params[f"layer{i}_attn_{part}"] = {"w": dense(d, d, scale), "b": np.zeros(d, np.float32)}
        params[f"layer{i}_mlp"] = {
            "w_in": dense(d, shape.mlp),
            "b_in": np.zeros(shape.mlp, np.float32),
            "w_out": dense(shape.mlp, d, residual_scale),
            "b_out": np.zeros(d, np.float32),
        }
    params["head"] = {"w": dense(d, vocabulary_size), "b": np.zeros(vocabulary_size, np.float32)}
    return params


def layer_norm(x: jax.Array) -> jax.Array:
    """Normalise the last axis to zero mean and unit variance (no gain or bias)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(variance + 1e-5)


def attention(params: dict, layer: int, x: jax.Array, heads: int) -> jax.Array:
    """Causal multi-head self-attention of layer ``layer`` on ``x`` (batch, positions, d_model)."""
    batch, positions, d = x.shape

    def project(part: str) -> jax.Array:
        p = params[f"layer{layer}_attn_{part}"]
        return (x @ p["w"] + p["b"]).reshape(batch, positions, heads, d // heads)

    q, k, v = project("q"), project("k"), project("v")
    scores = jnp.einsum("bqhe,bkhe->bhqk", q, k) / jnp.sqrt(jnp.asarray(d // heads, x.dtype))
    causal = jnp.tril(jnp.ones((positions, positions), dtype=bool))
    scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
    mixed = jnp.einsum("bhqk,bkhe->bqhe", jax.nn.softmax(scores, axis=-1), v).reshape(batch, positions, d)
    out = params[f"layer{layer}_attn_o"]
    return mixed @ out["w"] + out["b"]


def mlp(params: dict, layer: int, x: jax.Array) -> jax.Array:
    p = params[f"layer{layer}_mlp"]
    return jax.nn.gelu(x @ p["w_in"] + p["b_in"]) @ p["w_out"] + p["b_out"]


def forward(params: dict, tokens: jax.Array, heads: int) -> jax.Array:
    """Logits (batch, positions, vocabulary) for int ``tokens`` (batch, positions)."""
    embed = params["embed"]
    x = embed["token"][tokens] + embed["position"][: tokens.shape[1]]
    layers = sum(1 for key in params if key.endswith("_mlp"))
    for i in range(layers):
        x = x + attention(params, i, layer_norm(x), heads)
        x = x + mlp(params, i, layer_norm(x))
    return layer_norm(x) @ params["head"]["w"] + params["head"]["b"]


def logits(params: dict, batch: dict, heads: int) -> jax.Array:
    """The network's outputs on ``batch["x"]``: logits (batch, positions, vocabulary)."""
    return forward(params, batch["x"], heads)


def next_token_cross_entropy(outputs: jax.Array, batch: dict) -> jax.Array:
    """Mean cross-entropy of logits (batch, positions, vocabulary) against ``batch["y"]``
    over every position of every window (a scalar; the problem's ``output_loss``)."""
    log_probs = jax.nn.log_softmax(outputs)
    picked = jnp.take_along_axis(log_probs, batch["y"][..., None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked)


def mean_cross_entropy(params: dict, batch: dict, heads: int) -> jax.Array:
    """The loss: ``next_token_cross_entropy(logits(params, batch), batch)``."""
    return next_token_cross_entropy(logits(params, batch, heads), batch)


@functools.cache
def trained_params(shape: TransformerShape, train_steps: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """:func:`train_params`, kept in the example cache after the first training."""
    key = f"transformer-{shape.name}-adam{train_steps}-seed{seed}-text{text_digest()}-jax{jax.__version__}"
    return unflatten(cached_arrays(key, lambda: flatten(train_params(shape, train_steps, seed))))


def flatten(params: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{"embed": {"token": a}}`` → ``{"embed/token": a}``."""
    return {f"{group}/{name}": array for group, arrays in params.items() for name, array in arrays.items()}


def unflatten(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of :func:`flatten`."""
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        group, name = key.split("/", 1)
        params.setdefault(group, {})[name] = array
    return params


def train_params(shape: TransformerShape, train_steps: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Adam (lr 3e-3, β 0.9/0.999) on the CPU from :func:`init_params`, ``TRAIN_BATCH``
    windows a step, drawn from the whole text by a generator seeded with ``seed``:
    deterministic on every process."""
    tokens = encoded_text()
    rng = np.random.default_rng(seed + 1)
    b1, b2, eps = 0.9, 0.999, 1e-8
    loss = functools.partial(mean_cross_entropy, heads=shape.heads)

    @jax.jit
    def adam_step(t, params, m, v, batch):
        g = jax.grad(loss)(params, batch)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        scale = LEARNING_RATE * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), params, m, v)
        return params, m, v

    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        params = jax.device_put(init_params(shape, len(vocabulary()), seed), cpu)
        m = jax.tree_util.tree_map(jnp.zeros_like, params)
        v = jax.tree_util.tree_map(jnp.zeros_like, params)
        for t in range(1, train_steps + 1):
            starts = rng.integers(0, tokens.size - shape.context - 1, TRAIN_BATCH)
            spans = tokens[starts[:, None] + np.arange(shape.context + 1)]
            params, m, v = adam_step(jnp.float32(t), params, m, v, {"x": spans[:, :-1], "y": spans[:, 1:]})
    return jax.tree_util.tree_map(np.asarray, params)
