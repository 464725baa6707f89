"""The recognition experiment: chiral invariant vs plain classifiers, top-1 / top-5.

:func:`compare` trains, per seed and on the same clips in the same order, the models
of :data:`TRAINED` (:mod:`chiral_tasks.common.compare`) and scores them on the
validation split: chiral (tanh before the invariance layer), chiral with mixed
activations (tanh on the negated channels, ReLU on the others), plain trained with
random flips (one pass, and with the logits averaged over the clip and its mirror),
and plain trained without flips (ST-GCN's recipe).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from chiral_tasks.common.cli import for_run, train_record
from chiral_tasks.common.compare import (
    MIXED_EVEN_ACTIVATION,
    TRAINED,
    curves,
    format_text,
    markdown,
    summarise,
)
from chiral_tasks.common.results import plot_curves
from chiral_tasks.common.run import Run, grid, run_experiment
from chiral_tasks.common.train import TrainConfig
from chiral_tasks.recognition.augment import Augment
from chiral_tasks.recognition.data import Split
from chiral_tasks.recognition.model import ModelConfig
from chiral_tasks.recognition.train import train_and_evaluate

FLIP = 0.5
"""The probability of mirroring a training clip, for every model but ``plain_noflip``
(an invariant model's loss is the same on the mirror: for it, the flips change
nothing, and every model sees the same crops in the same order)."""
KEYS = ("top1", "top5")
TABLE_COLUMNS = {"top1": "top-1 %", "top5": "top-5 %"}


def model_changes(name: str) -> dict:
    """``ModelConfig`` changes of a trained model."""
    mixed = MIXED_EVEN_ACTIVATION if name == "chiral_mixed" else None
    return {"chiral": name.startswith("chiral"), "even_activation": mixed}


def compare(
    train_split: Split,
    val_split: Split,
    class_names: Sequence[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    augment: Augment,
    out: Path,
    seeds: Sequence[int],
    *,
    data: dict,
    variants: Sequence[str] = TRAINED,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Train and score ``variants`` for every seed in the experiment folder ``out``
    (the rerun rule of :mod:`chiral_tasks.common.run`); each cell folder holds its
    ``confusion.png``, the experiment folder ``learning_curves.png``."""
    config = {
        "task": "recognition",
        "experiment": "compare",
        "data": data,
        "classes": list(class_names),
        "model": dataclasses.asdict(model_config),
        "train": train_record(train_config),
        "max_steps": max_steps,
    }

    def augment_of(name: str) -> Augment:
        return dataclasses.replace(augment, flip=0.0 if name == "plain_noflip" else FLIP)

    def settings(name: str) -> dict:
        return {"model": model_changes(name), "augment": dataclasses.asdict(augment_of(name))}

    def run_one(run: Run, params: dict) -> dict:
        name, seed = params["variant"], params["seed"]
        results = train_and_evaluate(
            run, train_split, val_split,
            dataclasses.replace(model_config, **model_changes(name)),
            for_run(dataclasses.replace(train_config, seed=seed), run, f"{name} seed {seed}"),
            augment_of(name), class_names=class_names, max_steps=max_steps,
        )  # fmt: skip
        return {**results, "test": {k: results[k] for k in KEYS}, "test_tta": results["tta"]}

    top, cells = run_experiment(
        out, config, grid(seeds, tuple(variants), settings), run_one,
        resume=resume, overwrite=overwrite,
    )  # fmt: skip
    if top.done:
        return top.results
    plot_curves(
        top.folder / "learning_curves.png",
        curves(cells, variants, seeds[0], "loss"),
        xlabel="epoch",
        ylabel="training loss",
        title=f"Training loss, seed {seeds[0]}",
    )
    summary = summarise(cells, variants, seeds, keys=KEYS, metric="top1")
    results = {"clips": {"train": len(train_split.labels), "val": len(val_split.labels)}}
    results["seeds"] = list(seeds)
    return top.finish({**results, **summary, "per_seed": cells}, outputs=["learning_curves.png"])


def format_comparison(results: dict) -> str:
    """The comparison table as text, then the paired differences of top-1."""
    return format_text(results, TABLE_COLUMNS, label="top-1", unit="points", scale=100)


def markdown_comparison(results: dict) -> str:
    """The results of :func:`compare` (a ``results.json``) as Markdown."""
    config = results["config"]
    train, model = config["train"], config["model"]
    setting = (
        f"widths {model['widths'][0]}-{model['widths'][-1]}, invariance layer in block "
        f"{model['invariant_block']}, {train['epochs']} epochs, batch {train['batch_size']}, "
        f"lr {train['lr']}; {results['clips']['val']} validation clips"
    )
    return markdown(
        results, TABLE_COLUMNS, higher_is_better=True, label="top-1", unit="points",
        setting=setting, scale=100,
    )  # fmt: skip
