"""Training and evaluating the skeleton classifiers, and the plain-vs-chiral experiment.

A training run (:mod:`chiral_tasks.common.run`) writes into its folder ``run.json``
(model and training settings, class names), ``checkpoints/`` (the shared trainer's,
resumable) and, once evaluated, ``results.json`` and ``confusion.png``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import optax

from chiral_tasks.common.data import Batcher
from chiral_tasks.common.distributed import process_shard
from chiral_tasks.common.run import Run
from chiral_tasks.common.train import TrainConfig, Trainer, count_params, load_trained, predict
from chiral_tasks.recognition.augment import Augment
from chiral_tasks.recognition.data import Split
from chiral_tasks.recognition.kinetics import mirror_clip
from chiral_tasks.recognition.metrics import confusion_matrix, plot_confusion, topk_accuracy
from chiral_tasks.recognition.model import ModelConfig, SkeletonClassifier, build

QUICK = TrainConfig(
    epochs=30,
    batch_size=32,
    optimizer="sgd",
    lr=0.1,
    lr_steps=(20, 25),
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
)
"""CPU-sized schedule: SGD + Nesterov, lr 0.1 x0.1 at epochs 20 and 25 of 30."""

PAPER = dataclasses.replace(QUICK, epochs=50, batch_size=256, lr_steps=(20, 30, 40))
"""ST-GCN's Kinetics schedule: batch 256, lr 0.1 x0.1 at epochs 20, 30, 40 of 50."""

QUICK_WINDOW = 100
PAPER_WINDOW = 150


def loss_fn(model: SkeletonClassifier, batch) -> tuple[jnp.ndarray, dict]:
    """Softmax cross-entropy of ``model(batch["data"])`` against ``batch["label"]``."""
    logits = model(batch["data"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == batch["label"])
    return loss, {"accuracy": accuracy}


def logits_fn(model: SkeletonClassifier, batch) -> jnp.ndarray:
    return model(batch["data"])


def predict_logits(
    model: SkeletonClassifier, data: np.ndarray, batch_size: int, *, mirrored: bool = False
) -> np.ndarray:
    """(N, classes) logits of ``data`` (or of its mirror images), in evaluation mode.

    The last batch is padded to ``batch_size`` so every batch compiles once.
    """
    n = len(data)
    size = min(batch_size, n)

    def fetch(indices):
        clips = np.asarray(data[np.minimum(indices, n - 1)], dtype=np.float32)
        return {"data": mirror_clip(clips) if mirrored else clips}

    batches = Batcher(-(-n // size) * size, size, fetch=fetch, shuffle=False)
    return predict(model, batches, logits_fn)[:n]


def train(
    split: Split,
    model_config: ModelConfig,
    config: TrainConfig,
    augment: Augment,
    *,
    resume: bool = False,
    max_steps: int | None = None,
) -> tuple[SkeletonClassifier, list[dict]]:
    """Trains a classifier on ``split``; checkpoints under ``config.checkpoint_dir``.

    Returns:
      the trained model (evaluation mode) and the per-epoch history.
    """
    labels = np.asarray(split.labels)
    if labels.size and not 0 <= labels.min() <= labels.max() < model_config.num_classes:
        raise ValueError(
            f"labels span [{labels.min()}, {labels.max()}] but the model has "
            f"{model_config.num_classes} classes"
        )
    batcher = Batcher(
        {"data": split.data, "label": labels},
        config.batch_size,
        seed=config.seed,
        drop_last=len(labels) >= config.batch_size,
        transform=augment,
        **process_shard(),  # each host reads its share of every global batch
    )
    model = build(model_config, seed=config.seed)
    trainer = Trainer(model, loss_fn, config, len(batcher), resume=resume)
    try:
        history = trainer.fit(batcher, max_steps=max_steps)
    finally:
        trainer.close()
    return trainer.model(), history


def load_run(run_dir) -> tuple[SkeletonClassifier, dict]:
    """The latest checkpointed model of a training run, and its run config."""
    return load_trained(
        run_dir, lambda config: build(ModelConfig(**config["model"])), loss_fn, "recognition"
    )


def evaluate(
    model: SkeletonClassifier,
    split: Split,
    class_names: Sequence[str],
    *,
    batch_size: int = 32,
    confusion_png=None,
) -> dict:
    """Top-1 / top-5 accuracy, the confusion matrix and the mirror check on ``split``.

    The mirror check runs every clip and its mirror image (``mirror_clip``):
    ``mirror_max_abs_diff`` is ``max |logits(x) - logits(mirror(x))|`` (0 up to float
    rounding for a chiral model) and ``mirror_changed_fraction`` the share of clips
    whose predicted class changes. ``tta`` holds top-1 / top-5 of the logits averaged
    over each clip and its mirror (test-time flip augmentation).
    """
    num_classes = model.config.num_classes
    logits = predict_logits(model, split.data, batch_size)
    mirrored = predict_logits(model, split.data, batch_size, mirrored=True)
    labels = np.asarray(split.labels)
    pred = logits.argmax(axis=1)
    matrix = confusion_matrix(pred, labels, num_classes)
    top1 = topk_accuracy(logits, labels, 1)
    if confusion_png is not None:
        kind = "chiral" if model.config.chiral else "plain"
        title = f"{kind} model: top-1 {100 * top1:.1f} % on {len(labels)} clips"
        plot_confusion(confusion_png, matrix, list(class_names), title=title)
    diff = np.abs(logits - mirrored)
    top = min(5, num_classes)
    averaged = (logits + mirrored) / 2
    return {
        "top1": top1,
        "top5": topk_accuracy(logits, labels, top),
        "tta": {
            "top1": topk_accuracy(averaged, labels, 1),
            "top5": topk_accuracy(averaged, labels, top),
        },
        "clips": len(labels),
        "mirror_max_abs_diff": float(diff.max()),
        "mirror_max_rel_diff": float(diff.max() / max(np.abs(logits).max(), 1e-30)),
        "mirror_changed_fraction": float(np.mean(pred != mirrored.argmax(axis=1))),
        "params": count_params(model),
        "confusion": matrix.tolist(),
    }


def describe_mirror_check(name: str, results: dict) -> str:
    """One line saying whether predictions survive mirroring."""
    return (
        f"{name}: mirror check: max |logits(x) - logits(mirror(x))| = "
        f"{results['mirror_max_abs_diff']:.3g} (relative {results['mirror_max_rel_diff']:.3g}); "
        f"predictions changed by mirroring: {100 * results['mirror_changed_fraction']:.1f}%"
    )


def train_and_evaluate(
    run: Run,
    train_split: Split,
    val_split: Split,
    model_config: ModelConfig,
    config: TrainConfig,
    augment: Augment,
    *,
    class_names: Sequence[str],
    max_steps: int | None = None,
) -> dict:
    """:func:`train` in ``run`` (resuming per ``run.resume``), then :func:`evaluate` on
    ``val_split`` with ``confusion.png`` in the run folder; returns the results."""
    model, history = train(
        train_split, model_config, config, augment, resume=run.resume, max_steps=max_steps
    )
    results = evaluate(
        model, val_split, class_names, batch_size=config.batch_size,
        confusion_png=run.folder / "confusion.png",
    )  # fmt: skip
    model_name = "chiral" if model_config.chiral else "plain"
    return {"model": model_name, **results, "history": history, "outputs": ["confusion.png"]}
