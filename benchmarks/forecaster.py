"""Recurrent model cases: the chiral pose forecaster in one pass against the plain one,
alone and with test-time flip augmentation.

The models are the forecasting task's own :class:`chiral_tasks.forecasting.model.Forecaster`
(seq2seq, 2 + 2 stacked LSTMs, autoregressive decoding), in evaluation mode. The
chiral model's LSTM cells take their layers' ``impl="auto"`` path on flat activations:
their gates use unsigned layouts, and a gate times a signed vector is not diagonal in
the even/odd basis, so the even/odd form does not apply inside a cell. Flip
augmentation stacks the mirrored copy on the batch: one call on twice the batch. No
FLOP counts: XLA's cost analysis counts a ``scan`` body once, not once per step.
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from benchmarks.temporal import eval_fn, time_against_flip
from chiral_jax import flip_average
from chiral_tasks.forecasting.model import POSE_LAYOUT, Forecaster, ForecasterConfig


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


def _num_params(model: Forecaster) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def run_forecaster_case(case: ForecasterCase, rounds: int) -> dict:
    """Time one case; returns a JSON-ready record (seconds, ratios, parameters)."""
    models = {
        chiral: Forecaster(
            ForecasterConfig(chiral=chiral, hidden=case.hidden, num_future=case.future),
            rngs=nnx.Rngs(0),
        )
        for chiral in (False, True)
    }
    plain_fn, plain_state = eval_fn(models[False])
    fns = {
        "plain": (plain_fn, plain_state),
        "plain_flip": (flip_average(plain_fn, POSE_LAYOUT, POSE_LAYOUT, argnum=1), plain_state),
        "chiral": eval_fn(models[True]),
    }
    x = jax.random.uniform(jax.random.key(0), (case.batch, case.observed, 13, 2))
    return {
        "case": case.name,
        **dataclasses.asdict(case),
        **time_against_flip(fns, x, rounds),
        "params": {"plain": _num_params(models[False]), "chiral": _num_params(models[True])},
    }
