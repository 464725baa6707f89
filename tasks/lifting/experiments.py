"""The lifting experiments: chiral vs plain (with and without flip TTA), and limited data.

:func:`compare` trains a chiral and a plain model per seed on the protocol's
training subjects and scores, on the test subjects: chiral (one pass), plain (one
pass), plain with flip test-time augmentation (two passes), and chiral with TTA,
which must equal chiral (the model is exactly equivariant; the largest difference
is recorded). :func:`limited_data` repeats the chiral/plain pair on growing
training sets (the paper's Fig. 4).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chiral_tasks.common.results import format_table, mean_std_over_seeds, plot_curves
from chiral_tasks.common.train import TrainConfig
from chiral_tasks.lifting import formats
from chiral_tasks.lifting.data import Sequences, camera_sequences, default_split
from chiral_tasks.lifting.evaluate import evaluate, predict_sequences
from chiral_tasks.lifting.plots import plot_pose
from chiral_tasks.lifting.train import ModelConfig, TrainedModel, save_model, train

VARIANTS = ("chiral", "plain", "plain_tta")
REPORTED = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")


def _run_config(train_config: TrainConfig, out: Path, name: str, seed: int) -> TrainConfig:
    return dataclasses.replace(
        train_config, seed=seed, checkpoint_dir=str(out / f"{name}_seed{seed}" / "checkpoints")
    )


def train_pair(
    dataset: formats.LiftingDataset,
    train_subjects: Sequence[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    seed: int,
    *,
    fraction: float = 1.0,
    repeats: int = 1,
    resume: bool = False,
    max_steps: int | None = None,
) -> dict[str, TrainedModel]:
    """Train the chiral and the plain model (both with flip augmentation) on the subjects.

    ``fraction`` of each recording is kept (:func:`camera_sequences`), and the
    sequences are listed ``repeats`` times per epoch.
    """
    sequences = camera_sequences(dataset, train_subjects, fraction=fraction, seed=seed)
    sequences = Sequences(
        sequences.inputs * repeats, sequences.targets * repeats, sequences.keys * repeats
    )
    models = {}
    for name, chiral in (("chiral", True), ("plain", False)):
        config = dataclasses.replace(model_config, chiral=chiral)
        run = _run_config(train_config, out, name, seed)
        models[name] = train(
            sequences, dataset.skeleton, config, run, resume=resume, max_steps=max_steps
        )
        save_model(models[name], out / f"{name}_seed{seed}" / "model")
    return models


def score_pair(models: dict[str, TrainedModel], test) -> dict:
    """The four scores of a trained pair (chiral, plain, plain_tta, chiral_tta difference)."""
    out = {
        "chiral": evaluate(models["chiral"].model, test),
        "plain": evaluate(models["plain"].model, test),
        "plain_tta": evaluate(models["plain"].model, test, tta=True),
    }
    chiral_tta = evaluate(models["chiral"].model, test, tta=True)
    out["chiral_tta_minus_chiral_mm"] = abs(chiral_tta["mpjpe"] - out["chiral"]["mpjpe"])
    for name in ("chiral", "plain"):
        out[name]["params"] = models[name].model.num_params
        out[name]["train_seconds"] = models[name].seconds
    return out


def summary_rows(per_seed: list[dict]) -> list[dict]:
    """Table rows ``{model, mpjpe, p_mpjpe, ...}`` as ``mean ± std`` strings over seeds
    (just the value for one seed)."""
    rows = []
    for variant in VARIANTS:
        runs = [{k: r[variant][k] for k in REPORTED} for r in per_seed]
        stats = mean_std_over_seeds(runs)
        row = {"model": variant, "seeds": len(runs)}
        for k in REPORTED:
            spread = f" ± {stats[k]['std']:.1f}" if len(runs) > 1 else ""
            row[k] = f"{stats[k]['mean']:.1f}{spread}"
        source = "plain" if variant == "plain_tta" else variant
        row["params"] = per_seed[0][source]["params"]
        row["passes"] = 2 if variant.endswith("tta") else 1
        rows.append(row)
    return rows


TABLE_COLUMNS = {
    "model": "model",
    "passes": "passes",
    "params": "params",
    "mpjpe": "MPJPE mm",
    "p_mpjpe": "P-MPJPE mm",
    "n_mpjpe": "N-MPJPE mm",
    "mpjve": "MPJVE mm/frame",
    "seeds": "seeds",
}


def draw_test_pose(models: dict[str, TrainedModel], dataset, test_subjects, path: Path) -> None:
    """A test frame: 2D input, 3D truth, chiral prediction, and the chiral prediction for
    the mirrored input, mirrored back (equal to the prediction: equivariance)."""
    test = camera_sequences(dataset, test_subjects[:1])
    model = models["chiral"].model
    # A one-sided action shows equivariance best; any sequence does for other datasets.
    index = next((i for i, (_, a, _) in enumerate(test.keys) if a.startswith("Box")), 0)
    x = test.inputs[index]
    frame = len(x) // 2
    mirrored = np.asarray(model.layout_in.transform(x))
    predicted = predict_sequences(model, [x, mirrored])
    unmirrored = np.asarray(model.layout_out.transform(predicted[1][frame]))
    subject, action, camera = test.keys[index]
    plot_pose(
        path,
        dataset.skeleton,
        x[frame],
        {
            "3D truth": test.targets[index][frame],
            "chiral": predicted[0][frame],
            "chiral(mirrored input), un-mirrored": unmirrored,
        },
        title=f"{subject} {action}, camera {camera}, frame {frame}",
    )


def compare(
    dataset: formats.LiftingDataset,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    seeds: Sequence[int],
    *,
    resume: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Train and score chiral/plain for every seed; returns the results (also per seed)."""
    started = time.perf_counter()
    train_subjects, test_subjects = default_split(dataset)
    test = camera_sequences(dataset, test_subjects)
    per_seed = []
    for seed in seeds:
        models = train_pair(
            dataset, train_subjects, model_config, train_config, out, seed,
            resume=resume, max_steps=max_steps,
        )  # fmt: skip
        per_seed.append({"seed": seed, **score_pair(models, test)})
    draw_test_pose(models, dataset, test_subjects, out / "lifting_pose.png")
    rows = summary_rows(per_seed)
    return {
        "dataset": dataset.name,
        "train_subjects": train_subjects,
        "test_subjects": test_subjects,
        "model_config": dataclasses.asdict(model_config),
        "train_config": {
            k: v for k, v in dataclasses.asdict(train_config).items() if k != "checkpoint_dir"
        },
        "table": rows,
        "per_seed": per_seed,
        "max_chiral_tta_difference_mm": max(r["chiral_tta_minus_chiral_mm"] for r in per_seed),
        "wall_seconds": time.perf_counter() - started,
    }


LIMITED_SETTINGS = (
    ("S1 10%", ("S1",), 0.1),
    ("S1 50%", ("S1",), 0.5),
    ("S1", ("S1",), 1.0),
    ("S1+S5", ("S1", "S5"), 1.0),
    ("S1+S5+S6", ("S1", "S5", "S6"), 1.0),
)
"""(label, training subjects, fraction of each recording) of the limited-data runs."""


def limited_data(
    dataset: formats.LiftingDataset,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    *,
    seed: int = 0,
) -> dict:
    """Chiral vs plain MPJPE on growing training sets; writes ``limited_data.png``.

    Smaller sets are listed several times per epoch (``repeats``), so that every
    setting takes about as many steps as the largest: the small sets are not also
    under-trained, and every run has the same epochs (and compiled steps).
    """
    _, test_subjects = default_split(dataset)
    test = camera_sequences(dataset, test_subjects)
    sizes = {
        label: camera_sequences(dataset, subjects, fraction=fraction, seed=seed).num_frames
        for label, subjects, fraction in LIMITED_SETTINGS
    }
    largest = max(sizes.values())
    rows = []
    for label, subjects, fraction in LIMITED_SETTINGS:
        repeats = max(1, round(largest / sizes[label]))
        folder = out / label.replace("%", "pct").replace("+", "_").replace(" ", "_")
        models = train_pair(
            dataset, subjects, model_config, train_config, folder, seed,
            fraction=fraction, repeats=repeats,
        )  # fmt: skip
        row = {"setting": label, "frames": sizes[label], "repeats": repeats}
        for name, trained in models.items():
            result = evaluate(trained.model, test)
            row[f"{name}_mpjpe"], row[f"{name}_p_mpjpe"] = result["mpjpe"], result["p_mpjpe"]
        rows.append(row)
    frames = [r["frames"] for r in rows]
    plot_curves(
        out / "limited_data.png",
        {name: (frames, [r[f"{name}_mpjpe"] for r in rows]) for name in ("chiral", "plain")},
        xlabel="training frames (all camera views)",
        ylabel="MPJPE (mm)",
        title="Limited training data",
    )
    return {"dataset": dataset.name, "seed": seed, "epochs": train_config.epochs, "rows": rows}


LIMITED_COLUMNS = {
    "setting": "training set",
    "frames": "frames",
    "repeats": "repeats",
    "chiral_mpjpe": "chiral MPJPE",
    "plain_mpjpe": "plain MPJPE",
    "chiral_p_mpjpe": "chiral P-MPJPE",
    "plain_p_mpjpe": "plain P-MPJPE",
}


def format_comparison(results: dict) -> str:
    """The comparison table as text."""
    return format_table(results["table"], TABLE_COLUMNS)


def format_limited(results: dict) -> str:
    """The limited-data table as text."""
    return format_table(results["rows"], LIMITED_COLUMNS, floatfmt=".1f")
