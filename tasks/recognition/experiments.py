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
    format_text,
    markdown,
    provenance,
    run_comparison,
)
from chiral_tasks.common.results import mean_std_over_seeds, paired_difference
from chiral_tasks.common.run import Run
from chiral_tasks.common.train import TrainConfig
from chiral_tasks.recognition.augment import Augment
from chiral_tasks.recognition.data import Split
from chiral_tasks.recognition.model import ModelConfig
from chiral_tasks.recognition.train import train_and_evaluate

FLIP = 0.5
"""The probability of mirroring a training clip, for every model but ``plain_noflip``
(an invariant model's loss is the same on the mirror, so for it the flips change
nothing). Each batch's crops and moves are drawn before its flips from the batch's
own generator, so every model sees the same crops in the same order."""
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

    clips = {"train": len(train_split.labels), "val": len(val_split.labels)}
    return run_comparison(
        out, config, seeds, variants, settings, run_one, keys=KEYS, metric="top1",
        curve=("loss", "training loss"), extra={"clips": clips},
        resume=resume, overwrite=overwrite,
    )  # fmt: skip


def format_comparison(results: dict) -> str:
    """The comparison table as text, then the paired differences of top-1."""
    return format_text(results, TABLE_COLUMNS, label="top-1", unit="points", scale=100)


def markdown_comparison(results: dict) -> str:
    """The results of :func:`compare` (a ``results.json``) as Markdown."""
    config = results["config"]
    train, model = config["train"], config["model"]
    setting = (
        f"widths {model['widths'][0]}-{model['widths'][-1]}, invariance layer in block "
        f"{model['invariant_block']} (0-based), {train['epochs']} epochs, batch "
        f"{train['batch_size']}, lr {train['lr']}; {results['clips']['val']} validation clips"
    )
    return markdown(
        results, TABLE_COLUMNS, higher_is_better=True, label="top-1", unit="points",
        setting=setting, scale=100,
    )  # fmt: skip


ABLATIONS: dict[str, tuple[str, dict, dict, tuple[str, ...]]] = {
    "baseline": ("the comparison's settings", {}, {}, ("chiral", "plain")),
    "mixed": ("ReLU on the sign-keeping channels before the invariance layer", {}, {},
              ("chiral_mixed",)),
    "invariant_block_1": ("invariance layer in block 1 instead of 3",
                          {"invariant_block": 1, "negated_fractions": (1 / 3,)}, {}, ("chiral",)),
    "negated_half": ("half of each joint's dims negated (shares 1/2, 1/2, 1/2)",
                     {"negated_fractions": (0.5, 0.5, 0.5)}, {}, ("chiral",)),
    "negated_first_only": ("negated dims in block 0 only (shares 1/3, 0, 0)",
                           {"negated_fractions": (1 / 3, 0.0, 0.0)}, {}, ("chiral",)),
    "lr_0.05": ("learning rate 0.05 instead of 0.1", {}, {"lr": 0.05}, ("chiral", "plain")),
    "epochs_60": ("60 epochs, lr x0.1 at 40 and 50 (instead of 30; 20, 25)", {},
                  {"epochs": 60, "lr_steps": (40, 50)}, ("chiral", "plain")),
}  # fmt: skip
"""What might move the chiral model's top-1: setting -> (description, ModelConfig
changes, TrainConfig changes, models trained)."""


def ablation(
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
    resume: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Every setting of :data:`ABLATIONS` as a :func:`compare` in ``out/<setting>`` (the
    rerun rule applies to each); returns the rows: per setting and model the top-1
    over ``seeds`` and its paired difference from the baseline's model of its kind
    (chiral or plain), and ``settings_seconds``, the wall time of the settings' runs."""
    summaries = {}
    for name, (_, model_changes_, train_changes, variants) in ABLATIONS.items():
        summaries[name] = compare(
            train_split, val_split, class_names,
            dataclasses.replace(model_config, **model_changes_),
            dataclasses.replace(train_config, **train_changes),
            augment, out / name, seeds, data=data, variants=variants,
            resume=resume, max_steps=max_steps,
        )  # fmt: skip
    baseline = summaries["baseline"]["per_seed"]
    rows = []
    for name, (description, *_, variants) in ABLATIONS.items():
        cells = summaries[name]["per_seed"]
        for variant in variants:
            top1 = [cells[f"{variant}_seed{s}"]["test"]["top1"] for s in seeds]
            reference = "plain" if variant == "plain" else "chiral"
            row = {"setting": name, "description": description, "model": variant,
                   "top1": mean_std_over_seeds([{"v": v} for v in top1])["v"]}  # fmt: skip
            if (name, variant) != ("baseline", reference) and len(seeds) > 1:
                base = [baseline[f"{reference}_seed{s}"]["test"]["top1"] for s in seeds]
                row["minus_baseline"] = paired_difference(top1, base)
                row["reference"] = reference
            rows.append(row)
    seconds = sum(summary["wall_seconds"] for summary in summaries.values())
    return {"seeds": list(seeds), "rows": rows, "settings": sorted(ABLATIONS),
            "settings_seconds": seconds}  # fmt: skip


def markdown_ablation(results: dict) -> str:
    """The results of :func:`ablation` as Markdown: top-1 (%) per setting and model, and
    the paired difference from the baseline's model of the same kind."""
    lines = ["| setting | model | top-1 % | − baseline (points, 95 % interval) |",
             "|---|---|---|---|"]  # fmt: skip
    for row in results["rows"]:
        top1 = row["top1"]
        text = f"{100 * top1['mean']:.1f} ± {100 * top1['std']:.1f}"
        diff = row.get("minus_baseline")
        if diff:
            low, high = (100 * v for v in diff["ci95"])
            change = f"{100 * diff['mean']:+.1f} [{low:+.1f}, {high:+.1f}] vs {row['reference']}"
        else:
            change = "-"
        lines.append(f"| {row['description']} | {row['model']} | {text} | {change} |")
    seeds = ", ".join(map(str, results["seeds"]))
    # The settings' runs may come from earlier invocations: their own times add up.
    seconds = results["settings_seconds"]
    lines += ["", f"Seeds {seeds}, paired by seed; " + provenance(results, seconds)]
    return "\n".join(lines)
