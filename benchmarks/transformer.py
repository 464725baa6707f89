"""Transformer cases: the lifting task's spatial-temporal transformer, chiral against plain,
in inference (with and without test-time flip augmentation) and in a training step.

The models are :class:`chiral_tasks.lifting.transformer.PoseTransformer` (MixSTE-style,
sequence to sequence: ``[B, T, 17, 2] -> [B, T, 17, 3]``). The chiral model is exactly
equivariant, so flip augmentation would not change its answer: its one pass stands
against the plain model's two (:func:`chiral_jax.flip_average`, the mirrored copy
stacked on the batch: one call on twice the batch).
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from benchmarks.temporal import eval_fn, time_against_flip, time_train_steps
from benchmarks.timing import flops
from chiral_jax import flip_average
from chiral_jax.skeletons import H36M_17
from chiral_tasks.lifting.transformer import PoseTransformer


@dataclasses.dataclass(frozen=True)
class TransformerCase:
    """``batch`` clips of ``frames`` frames through a transformer of ``depth`` (spatial,
    temporal) block pairs, ``dims`` channels per token and ``heads`` heads; both models
    have the same shapes (the chiral one about half the parameters). The defaults are
    the model's own (the quick size); :data:`MIXSTE` is the published one."""

    batch: int
    frames: int = 27
    dims: int = 32
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 2

    @property
    def size(self) -> str:
        return f"f{self.frames} d{self.dims}x{self.depth}"

    @property
    def name(self) -> str:
        return f"transformer {self.size} b{self.batch}"

    def models(self) -> dict[str, PoseTransformer]:
        """``{"plain": ..., "chiral": ...}``, both initialised from seed 0."""
        shape = dict(frames=self.frames, dims=self.dims, depth=self.depth, heads=self.heads,
                     mlp_ratio=self.mlp_ratio)  # fmt: skip
        return {
            name: PoseTransformer(H36M_17, H36M_17, chiral=chiral, rngs=nnx.Rngs(0), **shape)
            for name, chiral in (("plain", False), ("chiral", True))
        }


MIXSTE = TransformerCase(batch=2, frames=243, dims=512, depth=8, heads=8)
"""MixSTE's published size (243 frames, 512 channels, 8 block pairs, 8 heads), two clips."""


def _params(models: dict[str, PoseTransformer]) -> dict[str, int]:
    return {name: model.num_params for name, model in models.items()}


def run_transformer_case(case: TransformerCase, rounds: int) -> dict:
    """Time ``plain``, ``plain_flip`` and ``chiral`` in evaluation mode on one batch; a
    JSON-ready record (seconds, ratios to plain and to plain with flip, parameters,
    FLOPs)."""
    models = case.models()
    plain_fn, plain_state = eval_fn(models["plain"])
    flipped = flip_average(plain_fn, H36M_17.layout(2), H36M_17.layout(3), argnum=1)
    fns = {
        "plain": (plain_fn, plain_state),
        "plain_flip": (flipped, plain_state),
        "chiral": eval_fn(models["chiral"]),
    }
    x = jax.random.normal(jax.random.key(0), (case.batch, case.frames, 17, 2))
    return {
        "case": case.name,
        **dataclasses.asdict(case),
        "size": case.size,
        **time_against_flip(fns, x, rounds),
        "params": _params(models),
        "flops": {name: flops(fn, state, x) for name, (fn, state) in fns.items()},
    }


def run_transformer_train_case(case: TransformerCase, rounds: int) -> dict:
    """Time the first call and the training step of ``plain`` and ``chiral`` on whole
    clips (dropout on); a JSON-ready record."""
    models = case.models()
    keys = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(keys[0], (case.batch, case.frames, 17, 2))
    y = jax.random.normal(keys[1], (case.batch, case.frames, 17, 3))
    return {
        "case": f"train step {case.name}",
        **dataclasses.asdict(case),
        "size": case.size,
        # At MixSTE's size one compilation takes 40 s: one first call per model there.
        **time_train_steps(models, x, y, rounds, first_calls=3 if case.frames <= 27 else 1),
        "params": _params(models),
    }
