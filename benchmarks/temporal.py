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

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.timing import Variant, flops, time_variants
from chiral_jax import ChiralLayout
from chiral_jax.skeletons import H36M_17
from chiral_tasks.lifting.model import TemporalModel


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """``filter_widths`` (receptive field = product), ``batch`` sequences of ``frames``
    output frames; the plain model has ``plain_channels`` (VideoPose3D: 1024), the chiral
    one ``chiral_channels`` (1020 = 17 joints x 60 dims, 20 negated: the paper's). ``impls``
    name the chiral variants: a layer ``impl`` on flat activations, or ``"structured"``
    (activations kept in the even/odd basis throughout: the model's default at this
    width)."""

    filter_widths: tuple[int, ...]
    batch: int
    frames: int = 243
    plain_channels: int = 1024
    chiral_channels: int = 1020
    impls: tuple[str, ...] = ("auto", "kernel", "eigen", "structured")

    @property
    def receptive_field(self) -> int:
        return math.prod(self.filter_widths)

    @property
    def name(self) -> str:
        return f"temporal rf{self.receptive_field} b{self.batch}x{self.frames}"


def flip_average(fn, layout_in: ChiralLayout, layout_out: ChiralLayout):
    """``fn(state, x)`` with flip augmentation: ``(f(x) + T_out f(T_in x)) / 2``, both
    halves in one call on twice the batch (poses ``[..., J, D]``)."""

    def averaged(state, x):
        y = fn(state, jnp.concatenate([x, layout_in.transform(x)], axis=0))
        y, y_flip = jnp.split(y, 2, axis=0)
        return (y + layout_out.transform(y_flip)) / 2

    return averaged


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
            H36M_17, H36M_17, chiral=True, channels=case.chiral_channels,
            impl="auto" if impl == "structured" else impl, structured=impl == "structured",
            **common,
        )
        for impl in case.impls
    }
    x = jax.random.normal(
        jax.random.key(0), (case.batch, case.frames + case.receptive_field - 1, 17, 2)
    )
    plain_fn, plain_state = eval_fn(plain)
    fns = {
        "plain": (plain_fn, plain_state),
        "plain_flip": (flip_average(plain_fn, layout_in, layout_out), plain_state),
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
    """One training step of the lifting model: ``batch`` windows of one receptive field
    (the strided path, as the task trains), train mode (batch statistics, dropout),
    ``value_and_grad`` of the MPJPE w.r.t. the parameters. Variants: ``plain``
    (``plain_channels``), ``chiral_flat`` (flat activations, ``impl="auto"``) and
    ``chiral_structured`` (the model's default at this width)."""

    filter_widths: tuple[int, ...]
    batch: int
    plain_channels: int = 1024
    chiral_channels: int = 1020

    @property
    def receptive_field(self) -> int:
        return math.prod(self.filter_widths)

    @property
    def name(self) -> str:
        return f"train step rf{self.receptive_field} b{self.batch}"


def _train_step(graphdef):
    """``(params, rest, x, y) -> (loss, grads)`` of the strided path in train mode."""

    def step(params, rest, x, y):
        def loss(params):
            model = nnx.merge(graphdef, params, rest, copy=True)
            return jnp.mean(jnp.linalg.norm(model(x, strided=True) - y, axis=-1))

        return jax.value_and_grad(loss)(params)

    return step


def run_train_case(case: TrainCase, rounds: int) -> dict:
    """Time one training step per variant; returns a JSON-ready record."""
    common = dict(filter_widths=case.filter_widths, rngs=nnx.Rngs(0))
    models = {
        "plain": TemporalModel(
            H36M_17, H36M_17, chiral=False, channels=case.plain_channels, **common
        ),
        "chiral_flat": TemporalModel(
            H36M_17, H36M_17, chiral=True, channels=case.chiral_channels, structured=False,
            **common,
        ),
        "chiral_structured": TemporalModel(
            H36M_17, H36M_17, chiral=True, channels=case.chiral_channels, structured=True,
            **common,
        ),
    }
    keys = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(keys[0], (case.batch, case.receptive_field, 17, 2))
    y = jax.random.normal(keys[1], (case.batch, 1, 17, 3))
    variants = []
    for name, model in models.items():
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        variants.append(Variant(name, jax.jit(_train_step(graphdef)), (params, rest, x, y)))
    timing = time_variants(variants, "plain", rounds=rounds)
    return {
        "case": case.name,
        **dataclasses.asdict(case),
        "receptive_field": case.receptive_field,
        "seconds": timing.seconds,
        "ratio": timing.ratio,
        "params": {"plain": models["plain"].num_params,
                   "chiral": models["chiral_flat"].num_params},
        "rounds": timing.rounds,
    }
