"""Model-level cases: the chiral temporal model in one pass against the plain model,
alone and with test-time flip augmentation.

The models are the lifting task's own :class:`chiral_tasks.lifting.model.TemporalModel`
(VideoPose3D's architecture), in evaluation mode.

Flip augmentation (VideoPose3D's evaluation): mirror the input, predict, mirror the
prediction back, average with the prediction on the original. The mirrored copy is
stacked on the batch axis, so the plain model runs once on twice the batch: the same
work as two passes, done the fastest way. The chiral model needs no augmentation:
it is exactly equivariant, so the flipped prediction equals the original.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.timing import Variant, flops, time_variants
from chiral_jax import flip_average
from chiral_jax.skeletons import H36M_17
from chiral_tasks.lifting.model import TemporalModel


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """``filter_widths`` (receptive field = product), ``batch`` sequences of ``frames``
    output frames; the plain model has ``plain_channels`` (VideoPose3D: 1024), the chiral
    one ``chiral_channels`` (1020 = 17 joints x 60 dims, 20 negated: the paper's). ``impls``
    name the chiral variants by the model's ``impl``: ``"auto"`` (the default: the even/odd
    form at this width), ``"dense"`` (joint-basis activations, assembled kernels) and
    ``"even_odd"`` (activations in the even/odd basis throughout)."""

    filter_widths: tuple[int, ...]
    batch: int
    frames: int = 243
    plain_channels: int = 1024
    chiral_channels: int = 1020
    impls: tuple[str, ...] = ("auto", "dense", "even_odd")

    @property
    def receptive_field(self) -> int:
        return math.prod(self.filter_widths)

    @property
    def name(self) -> str:
        return f"temporal rf{self.receptive_field} b{self.batch}x{self.frames}"


def eval_fn(model: nnx.Module):
    """``(fn, state)``: the model in evaluation mode as a pure ``fn(state, x)``."""
    model.eval()
    graphdef, state = nnx.split(model)
    return (lambda state, x: nnx.merge(graphdef, state)(x)), state


def time_against_flip(fns: dict, x: jax.Array, rounds: int) -> dict:
    """Time ``fns`` (name -> ``(fn, state)``, with ``plain`` and ``plain_flip``) on ``x``:
    medians, ratios to ``plain_flip`` and to ``plain``, rounds."""
    variants = [Variant(name, jax.jit(fn), (state, x)) for name, (fn, state) in fns.items()]
    timing = time_variants(variants, "plain_flip", rounds=rounds)
    single = timing.seconds["plain"]
    return {
        "seconds": timing.seconds,
        "ratio_to_plain_flip": timing.ratio,
        "ratio_to_plain": {k: v / single for k, v in timing.seconds.items()},
        "rounds": timing.rounds,
    }


def run_model_case(case: ModelCase, rounds: int) -> dict:
    """Time one case; returns a JSON-ready record (seconds, ratios, parameters, FLOPs)."""
    layout_in, layout_out = H36M_17.layout(2), H36M_17.layout(3)
    common = dict(filter_widths=case.filter_widths, rngs=nnx.Rngs(0))
    plain = TemporalModel(
        H36M_17, H36M_17, chiral=False, channels=case.plain_channels, **common
    )
    models = {
        f"chiral_{impl}": TemporalModel(
            H36M_17, H36M_17, chiral=True, channels=case.chiral_channels, impl=impl, **common
        )
        for impl in case.impls
    }
    x = jax.random.normal(
        jax.random.key(0), (case.batch, case.frames + case.receptive_field - 1, 17, 2)
    )
    plain_fn, plain_state = eval_fn(plain)
    fns = {
        "plain": (plain_fn, plain_state),
        "plain_flip": (flip_average(plain_fn, layout_in, layout_out, argnum=1), plain_state),
    }
    for name, model in models.items():
        fns[name] = eval_fn(model)
    return {
        "case": case.name,
        **dataclasses.asdict(case),
        "receptive_field": case.receptive_field,
        **time_against_flip(fns, x, rounds),
        "params": {"plain": plain.num_params, "chiral": next(iter(models.values())).num_params},
        "flops": {name: flops(fn, state, x) for name, (fn, state) in fns.items()},
    }


@dataclasses.dataclass(frozen=True)
class TrainCase:
    """One training step of the lifting model, as the task trains it: ``batch`` windows of
    one receptive field (the strided path), train mode (batch statistics, dropout), the
    MPJPE's gradient and an Adam update. Variants: ``plain`` (``plain_channels``, ReLU)
    and the chiral model (``chiral_channels``, tanh) in each form: ``chiral_dense`` and
    ``chiral_even_odd``; ``auto_impl`` records which one the default picks. Besides the
    step time, the *first call* (trace, compile and one step, what a user waits for
    before training starts) is timed for each variant."""

    filter_widths: tuple[int, ...]
    batch: int
    plain_channels: int = 1024
    chiral_channels: int = 1020

    @property
    def receptive_field(self) -> int:
        return math.prod(self.filter_widths)

    @property
    def name(self) -> str:
        return f"train step rf{self.receptive_field} b{self.batch} c{self.plain_channels}"


def _train_step(graphdef, optimizer):
    """``(params, opt_state, rest, x, y) -> (loss, params, opt_state)``: one step."""

    def step(params, opt_state, rest, x, y):
        def loss(params):
            model = nnx.merge(graphdef, params, rest, copy=True)
            return jnp.mean(jnp.linalg.norm(model(x, strided=True) - y, axis=-1))

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return value, optax.apply_updates(params, updates), opt_state

    return step


def time_train_steps(
    models: dict[str, nnx.Module],
    x: jax.Array,
    y: jax.Array,
    rounds: int,
    *,
    warmup: int = 0,
    first_calls: int = 3,
) -> dict:
    """Time each model's first call (trace, compile and one step: what a user waits for
    before training starts), then its training step in interleaved rounds: train mode,
    the gradient of the MPJPE of ``model(x, strided=True)`` against ``y`` and an Adam
    update. Ratios are to ``models["plain"]``.

    The first call is measured ``first_calls`` times per model, in interleaved rounds,
    each tracing and compiling a new function; its time is the median, its ratio the
    median of the per-round ratios (one compilation moves by a quarter with the
    machine's load). The first call has compiled and run every step, so ``warmup`` more
    calls are rarely needed."""
    optimizer = optax.adam(1e-3)
    jax.block_until_ready(jax.jit(lambda a: a * 2)(x))  # the process's one-off start-up
    args, compiled = {}, {}
    for model in models.values():
        model.train()
    calls = {name: [] for name in models}
    for _ in range(first_calls):
        for name, model in models.items():
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            args[name] = (params, optimizer.init(params), rest, x, y)
            start = time.perf_counter()
            compiled[name] = jax.jit(_train_step(graphdef, optimizer)).lower(*args[name]).compile()
            jax.block_until_ready(compiled[name](*args[name]))
            calls[name].append(time.perf_counter() - start)
    variants = [Variant(name, compiled[name], args[name]) for name in models]
    timing = time_variants(variants, "plain", rounds=rounds, warmup=warmup)
    ratios = {
        name: statistics.median(t / p for t, p in zip(calls[name], calls["plain"], strict=True))
        for name in models
    }
    return {
        "seconds": timing.seconds,
        "ratio": timing.ratio,
        "first_call_seconds": {name: statistics.median(t) for name, t in calls.items()},
        "first_call_ratio": ratios,
        "first_call_all_seconds": calls,
        "rounds": timing.rounds,
    }


def run_train_case(case: TrainCase, rounds: int) -> dict:
    """Time the first call and then one training step per variant; a JSON-ready record."""
    common = dict(filter_widths=case.filter_widths, rngs=nnx.Rngs(0))
    chiral = dict(chiral=True, channels=case.chiral_channels, **common)
    models = {
        "plain": TemporalModel(H36M_17, H36M_17, chiral=False, channels=case.plain_channels,
                               **common),
        "chiral_dense": TemporalModel(H36M_17, H36M_17, impl="dense", **chiral),
        "chiral_even_odd": TemporalModel(H36M_17, H36M_17, impl="even_odd", **chiral),
    }
    keys = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(keys[0], (case.batch, case.receptive_field, 17, 2))
    y = jax.random.normal(keys[1], (case.batch, 1, 17, 3))
    steps = time_train_steps(models, x, y, rounds, warmup=1)
    auto = TemporalModel(H36M_17, H36M_17, impl="auto", **chiral).impl
    return {
        "case": case.name,
        **dataclasses.asdict(case),
        "receptive_field": case.receptive_field,
        **steps,
        "auto_impl": auto,
        "params": {"plain": models["plain"].num_params,
                   "chiral": models["chiral_dense"].num_params},
    }
