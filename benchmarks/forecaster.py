"""Recurrent model cases: the chiral pose forecaster in one pass against the plain one,
alone and with test-time flip augmentation.

The models are the forecasting task's own :class:`tasks.forecasting.model.Forecaster`
(seq2seq, 2 + 2 stacked LSTMs, autoregressive decoding), in evaluation mode. The
chiral model's LSTM cells take their layers' ``impl="auto"`` path on flat activations:
their gates use unsigned layouts, and a gate times a signed vector is not diagonal in
the even/odd basis, so the structured form does not apply inside a cell. Flip
augmentation stacks the mirrored copy on the batch: one call on twice the batch. No
FLOP counts: XLA's cost analysis counts a ``scan`` body once, not once per step.
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from benchmarks.temporal import flip_average
from benchmarks.timing import Variant, time_variants
from tasks.forecasting.model import POSE_LAYOUT, Forecaster, ForecasterConfig


@dataclasses.dataclass(frozen=True)
class ForecasterCase:
    """``batch`` clips of ``observed`` poses forecast ``future`` steps ahead with LSTMs
    ``hidden`` wide (the paper: 1040 = 13 x 80, for both models)."""

    hidden: int = 1040
    batch: int = 256
    observed: int = 2
    future: int = 16

    @property
    def name(self) -> str:
        return f"forecaster h{self.hidden} b{self.batch} {self.observed}->{self.future}"


def _pure(model: Forecaster):
    model.eval()
    graphdef, state = nnx.split(model)
    return (lambda state, x: nnx.merge(graphdef, state)(x)), state


def run_forecaster_case(case: ForecasterCase, rounds: int) -> dict:
    """Time one case; returns a JSON-ready record (seconds, ratios, parameters)."""
    models = {
        chiral: Forecaster(
            ForecasterConfig(chiral=chiral, hidden=case.hidden, num_future=case.future),
            rngs=nnx.Rngs(0),
        )
        for chiral in (False, True)
    }
    plain_fn, plain_state = _pure(models[False])
    chiral_fn, chiral_state = _pure(models[True])
    fns = {
        "plain": (plain_fn, plain_state),
        "plain_flip": (flip_average(plain_fn, POSE_LAYOUT, POSE_LAYOUT), plain_state),
        "chiral": (chiral_fn, chiral_state),
    }
    x = jax.random.uniform(jax.random.key(0), (case.batch, case.observed, 13, 2))
    variants = [Variant(name, jax.jit(fn), (state, x)) for name, (fn, state) in fns.items()]
    timing = time_variants(variants, "plain_flip", rounds=rounds)
    single = timing.seconds["plain"]
    return {
        "case": case.name,
        **dataclasses.asdict(case),
        "seconds": timing.seconds,
        "ratio_to_plain_flip": timing.ratio,
        "ratio_to_plain": {k: v / single for k, v in timing.seconds.items()},
        "params": {
            "plain": sum(p.size for p in jax.tree.leaves(nnx.state(models[False], nnx.Param))),
            "chiral": sum(p.size for p in jax.tree.leaves(nnx.state(models[True], nnx.Param))),
        },
        "rounds": timing.rounds,
    }
