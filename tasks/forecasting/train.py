"""Training and evaluation of the forecasters on Penn Action label files.

A run folder (:mod:`chiral_tasks.common.run`) holds ``run.json`` (the model and
training settings), the checkpoints of :class:`chiral_tasks.common.train.Trainer`
under ``checkpoints/`` and, once evaluated, ``results.json``. Test-time flip
augmentation is an evaluation option (``tta=True``).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from chiral_jax import flip_average
from chiral_jax.skeletons import PENN_ACTION_13
from chiral_tasks.common.augment import flip_batch
from chiral_tasks.common.data import Batcher
from chiral_tasks.common.distributed import process_shard
from chiral_tasks.common.train import TrainConfig, Trainer, load_trained, predict
from chiral_tasks.forecasting.metrics import pck
from chiral_tasks.forecasting.model import (
    POSE_LAYOUT,
    Forecaster,
    ForecasterConfig,
    forecast_loss,
)
from chiral_tasks.forecasting.penn import ForecastSamples, load_penn_action, make_samples

QUICK = TrainConfig(
    epochs=4, batch_size=256, lr=5e-3, lr_decay=0.95, lr_decay_every=2, clip_norm=5.0
)
"""CPU-sized training: the paper's optimiser for a few epochs."""
PAPER = dataclasses.replace(QUICK, epochs=30)
"""The paper's: Adam, lr 0.005 x 0.95 every 2 epochs, clip 5, batch 256, 30 epochs."""
QUICK_MODEL = ForecasterConfig(hidden=208)
PAPER_MODEL = ForecasterConfig(hidden=1040)

_VISIBLE_LAYOUT = PENN_ACTION_13.layout(1, negated=())
_PCK_THRESHOLD = 0.1  # PCK@0.05 of the box length, in normalised units


def load_samples(data_dir, observed: int = 2) -> tuple[ForecastSamples, ForecastSamples]:
    """The train and test forecasting samples of a Penn Action labels folder."""
    train, test = load_penn_action(data_dir)
    if not train or not test:
        raise ValueError(
            f"{data_dir} needs videos of both splits: {len(train)} train, {len(test)} test"
        )
    return make_samples(train, observed=observed), make_samples(test, observed=observed)


def sample_arrays(samples: ForecastSamples) -> dict[str, np.ndarray]:
    """Batch arrays: ``observed``, ``future`` and ``visible`` ``[N, S, 13, 1]`` float32 weights."""
    return {
        "observed": samples.observed,
        "future": samples.future,
        "visible": samples.future_visible[..., None].astype(np.float32),
    }


def flip_half(rng: np.random.Generator, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mirror each sample (inputs, targets and visibility) with probability 1/2."""
    layouts = {"observed": POSE_LAYOUT, "future": POSE_LAYOUT, "visible": _VISIBLE_LAYOUT}
    return flip_batch(rng, batch, layouts)[0]


def train_model(
    samples: ForecastSamples,
    model_config: ForecasterConfig,
    config: TrainConfig,
    *,
    augment: bool,
    resume: bool = False,
    max_steps: int | None = None,
) -> tuple[Forecaster, list[dict]]:
    """Train a forecaster; checkpoints go to ``config.checkpoint_dir``.

    Returns:
      the model in evaluation mode and the per-epoch history.
    """
    batcher = Batcher(
        sample_arrays(samples),
        config.batch_size,
        seed=config.seed,
        drop_last=len(samples) >= config.batch_size,
        transform=flip_half if augment else None,
        **process_shard(),  # each host reads its share of every global batch
    )
    model = Forecaster(model_config, rngs=nnx.Rngs(params=config.seed, dropout=config.seed + 1))
    trainer = Trainer(model, forecast_loss, config, len(batcher), resume=resume)
    try:
        history = trainer.fit(batcher, max_steps=max_steps)
        return trainer.model(), history
    finally:
        trainer.close()


def load_run(run_dir) -> tuple[Forecaster, dict]:
    """The latest checkpointed model of a run folder, and its run config."""
    return load_trained(
        run_dir,
        lambda config: Forecaster(ForecasterConfig(**config["model"]), rngs=nnx.Rngs(0)),
        forecast_loss,
        "forecasting",
    )


def _forecast(model: Forecaster, batch) -> jax.Array:
    return model(batch["observed"])


def _forecast_tta(model: Forecaster, batch) -> jax.Array:
    return flip_average(model, POSE_LAYOUT, POSE_LAYOUT)(batch["observed"])


def forecast(
    model: Forecaster, samples: ForecastSamples, *, tta: bool = False, batch_size: int = 2048
) -> np.ndarray:
    """Autoregressive forecasts ``[N, S, 13, 2]`` of every sample (eval mode, jitted)."""
    batches = Batcher({"observed": samples.observed}, batch_size, shuffle=False)
    return predict(model, batches, _forecast_tta if tta else _forecast)


def evaluate(model: Forecaster, samples: ForecastSamples, *, tta: bool = False) -> dict:
    """PCK@0.05 per future step and its average, in percent."""
    per_step, average = pck(
        forecast(model, samples, tta=tta), samples.future, samples.future_visible, _PCK_THRESHOLD
    )
    return {"pck": [100.0 * float(p) for p in per_step], "pck_avg": 100.0 * average}
