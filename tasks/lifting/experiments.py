"""The lifting experiments: chiral vs plain (with and without flip TTA), and limited data.

:func:`compare` trains, per seed and on the same data, the variants of
:func:`trained_variants` on the protocol's training subjects and scores them on the
test subjects: chiral (one pass), chiral with mixed activations (conv net), plain
trained with flip augmentation (VideoPose3D's default) with one pass and with flip
test-time augmentation (two passes), and plain trained without augmentation. Chiral
with TTA must equal chiral (the model is exactly equivariant; the largest difference
is recorded). Per-seed differences of MPJPE come with a paired bootstrap interval
(:data:`DIFFERENCES`). :func:`limited_data` repeats the chiral/plain pair on growing
training sets (the paper's Fig. 4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.cli import for_run, train_record
from chiral_tasks.common.results import (
    format_table,
    mean_std_over_seeds,
    paired_difference,
    plot_curves,
)
from chiral_tasks.common.run import Run, grid, run_experiment
from chiral_tasks.common.train import TrainConfig
from chiral_tasks.lifting.data import Sequences, camera_sequences, default_split
from chiral_tasks.lifting.dataset import LiftingDataset
from chiral_tasks.lifting.evaluate import evaluate, predict_sequences
from chiral_tasks.lifting.plots import plot_pose
from chiral_tasks.lifting.train import (
    LENGTH_KEYS,
    ModelConfig,
    TrainedModel,
    load_model,
    save_model,
    train,
)

TRAINED = ("chiral", "plain")
"""The models of the limited-data runs."""
REPORTED = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")
MIXED_EVEN_ACTIVATION = "relu"
"""The function of the chiral_mixed model's positive hidden channels (the plain one's)."""


def trained_variants(model_config: ModelConfig) -> dict[str, dict]:
    """The models :func:`compare` trains: name -> ``{"model": ModelConfig changes,
    "flip": flip augmentation}``. ``chiral_mixed`` (tanh on negated channels, ReLU on
    the others) is the conv net's; the transformer's chiral model is mixed already."""
    variants = {"chiral": {"model": {"chiral": True}, "flip": True}}
    if model_config.arch == "temporal":
        mixed = {"chiral": True, "even_activation": MIXED_EVEN_ACTIVATION}
        variants["chiral_mixed"] = {"model": mixed, "flip": True}
    variants["plain"] = {"model": {"chiral": False}, "flip": True}
    variants["plain_noflip"] = {"model": {"chiral": False}, "flip": False}
    return variants


DIFFERENCES = (
    ("chiral", "plain_tta"),
    ("chiral", "plain"),
    ("chiral", "plain_noflip"),
    ("chiral_mixed", "chiral"),
    ("chiral_mixed", "plain_tta"),
)
"""The paired MPJPE differences reported (where both variants ran, with 2+ seeds)."""


def fit(
    run: Run,
    sequences: Sequences,
    skeleton_2d: Skeleton,
    skeleton: Skeleton,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    label: str,
    flip: bool = True,
    max_steps: int | None = None,
) -> TrainedModel:
    """Train (or resume, per ``run.resume``) a model lifting ``skeleton_2d`` poses to
    ``skeleton`` ones in ``run``; save it to ``<run>/model``."""
    trained = train(
        sequences,
        skeleton_2d,
        skeleton,
        model_config,
        for_run(train_config, run, label),
        flip=flip,
        resume=run.resume,
        max_steps=max_steps,
    )
    save_model(trained, run.folder / "model")
    return trained


def score_model(trained: TrainedModel, test: Sequences) -> dict:
    """A trained model's scores on ``test``: one pass, and with flip TTA (for the plain
    model, a row of the table; for the chiral one, the equivariance check)."""
    one_pass = evaluate(trained.model, test)
    tta = evaluate(trained.model, test, tta=True)
    return {
        "test": one_pass,
        "test_tta": tta,
        "tta_minus_one_pass_mm": abs(tta["mpjpe"] - one_pass["mpjpe"]),
        "params": trained.model.num_params,
        "history": trained.history,
        "train_seconds": trained.seconds,
    }


def _rows(variants: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(row, trained variant, result key)``: each trained model, and plain with TTA
    after plain."""
    out = []
    for variant in variants:
        out.append((variant, variant, "test"))
        if variant == "plain":
            out.append(("plain_tta", "plain", "test_tta"))
    return out


def per_seed(cells: dict[str, dict], row: tuple[str, str, str], seeds: Sequence[int]):
    """One row's reported metrics for each seed."""
    _, source, key = row
    return [{k: cells[f"{source}_seed{s}"][key][k] for k in REPORTED} for s in seeds]


def summary_rows(cells: dict[str, dict], variants: Sequence[str], seeds: Sequence[int]):
    """Table rows ``{model, passes, params, seeds, <metric>: {"mean", "std", "n"}}``."""
    rows = []
    for row in _rows(variants):
        runs = per_seed(cells, row, seeds)
        name, source, key = row
        entry = {"model": name, "passes": 2 if key == "test_tta" else 1}
        entry["params"] = cells[f"{source}_seed{seeds[0]}"]["params"]
        entry["seeds"] = len(runs)
        rows.append({**entry, **mean_std_over_seeds(runs)})
    return rows


def differences(cells: dict[str, dict], variants: Sequence[str], seeds: Sequence[int]):
    """``{"a - b": paired_difference of MPJPE}`` for :data:`DIFFERENCES` (2+ seeds)."""
    rows = {name: row for name, *row in ((r[0], *r) for r in _rows(variants))}
    if len(seeds) < 2:
        return {}
    out = {}
    for a, b in DIFFERENCES:
        if a in rows and b in rows:
            mpjpe_a = [r["mpjpe"] for r in per_seed(cells, rows[a], seeds)]
            mpjpe_b = [r["mpjpe"] for r in per_seed(cells, rows[b], seeds)]
            out[f"{a} - {b}"] = paired_difference(mpjpe_a, mpjpe_b)
    return out


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


def draw_test_pose(chiral, plain, dataset, test_subjects, path: Path) -> None:
    """A test frame: the 2D input, the 3D truth, the chiral and the plain prediction, and
    the chiral prediction for the mirrored input mirrored back (equal to the chiral
    prediction: equivariance), each with its MPJPE against the truth."""
    test = camera_sequences(dataset, test_subjects[:1])
    # A one-sided action shows equivariance best; any sequence does for other datasets.
    index = next((i for i, (_, a, _) in enumerate(test.keys) if a.startswith("Box")), 0)
    x = test.inputs[index]
    frame = len(x) // 2
    mirrored = np.asarray(chiral.layout_in.transform(x))
    predicted = predict_sequences(chiral, [x, mirrored])
    unmirrored = np.asarray(chiral.layout_out.transform(predicted[1][frame]))
    (plain_predicted,) = predict_sequences(plain, [x])
    subject, action, camera = test.keys[index]
    plot_pose(
        path,
        dataset.skeleton,
        x[frame],
        {
            "3D truth": test.targets[index][frame],
            "chiral": predicted[0][frame],
            "plain": plain_predicted[frame],
            "chiral, mirrored input,\nmirrored back": unmirrored,
        },
        title=f"Lifting one test frame: {subject} {action}, camera {camera}, frame {frame}",
        skeleton_2d=dataset.skeleton_2d,
        truth="3D truth",
    )


def compare(
    dataset: LiftingDataset,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    seeds: Sequence[int],
    *,
    data: dict,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Train and score chiral and plain for every seed in the experiment folder ``out``
    (the rerun rule of :mod:`chiral_tasks.common.run`); return the results.

    ``data`` identifies the dataset in the run config (its fingerprint).
    """
    train_subjects, test_subjects = default_split(dataset)
    sequences = camera_sequences(dataset, train_subjects)
    test = camera_sequences(dataset, test_subjects)
    config = {
        "task": "lifting",
        "experiment": "compare",
        "data": data,
        "train_subjects": train_subjects,
        "test_subjects": test_subjects,
        "model": dataclasses.asdict(model_config),
        "train": train_record(train_config),
        "max_steps": max_steps,
    }

    variants = trained_variants(model_config)

    def run_one(run: Run, params: dict) -> dict:
        variant = variants[params["variant"]]
        trained = fit(
            run, sequences, dataset.skeleton_2d, dataset.skeleton,
            dataclasses.replace(model_config, **variant["model"]),
            dataclasses.replace(train_config, seed=params["seed"]),
            label=f"{params['variant']} seed {params['seed']}", flip=variant["flip"],
            max_steps=max_steps,
        )  # fmt: skip
        return {**score_model(trained, test), "outputs": ["model"]}

    cells = grid(seeds, tuple(variants), lambda name: variants[name])
    top, cells = run_experiment(
        out, config, cells, run_one, resume=resume, overwrite=overwrite, length_keys=LENGTH_KEYS
    )
    if top.done:
        return top.results
    chiral, plain = (load_model(top.folder / f"{v}_seed{seeds[0]}" / "model").model
                     for v in ("chiral", "plain"))  # fmt: skip
    draw_test_pose(chiral, plain, dataset, test_subjects, top.folder / "lifting_pose.png")
    plot_curves(
        top.folder / "learning_curves.png",
        {name: _curve(cells, name, seeds[0]) for name in variants},
        xlabel="epoch",
        ylabel="training MPJPE (mm)",
        title=f"Training loss, seed {seeds[0]}",
    )
    results = {
        "dataset": dataset.name,
        "seeds": list(seeds),
        "table": summary_rows(cells, tuple(variants), seeds),
        "differences": differences(cells, tuple(variants), seeds),
        "per_seed": cells,
        "max_chiral_tta_difference_mm": max(
            cells[f"chiral_seed{s}"]["tta_minus_one_pass_mm"] for s in seeds
        ),
    }
    return top.finish(results, outputs=["lifting_pose.png", "learning_curves.png"])


def _curve(cells: dict, variant: str, seed: int) -> tuple[list[int], list[float]]:
    """``(epochs, training MPJPE in mm)`` of one run's history."""
    history = cells[f"{variant}_seed{seed}"]["history"]
    return [h["epoch"] for h in history], [h["mpjpe_mm"] for h in history]


LIMITED_SETTINGS = (
    ("S1 10%", ("S1",), 0.1),
    ("S1 50%", ("S1",), 0.5),
    ("S1", ("S1",), 1.0),
    ("S1+S5", ("S1", "S5"), 1.0),
    ("S1+S5+S6", ("S1", "S5", "S6"), 1.0),
)
"""(label, training subjects, fraction of each recording) of the limited-data runs."""


def _setting_folder(label: str) -> str:
    return label.replace("%", "pct").replace("+", "_").replace(" ", "_")


def limited_data(
    dataset: LiftingDataset,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    *,
    data: dict,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Chiral vs plain MPJPE on growing training sets; writes ``limited_data.png``.

    Smaller sets are listed several times per epoch (``repeats``), so that every
    setting takes about as many steps as the largest: the small sets are not also
    under-trained, and every run has the same epochs (and compiled steps). Runs under
    the rerun rule of :mod:`chiral_tasks.common.run`, one cell per setting and model.
    """
    _, test_subjects = default_split(dataset)
    test = camera_sequences(dataset, test_subjects)
    seed = train_config.seed
    sets = {
        label: camera_sequences(dataset, subjects, fraction=fraction, seed=seed)
        for label, subjects, fraction in LIMITED_SETTINGS
    }
    largest = max(s.num_frames for s in sets.values())
    repeats = {label: max(1, round(largest / s.num_frames)) for label, s in sets.items()}
    config = {
        "task": "lifting",
        "experiment": "limited-data",
        "data": data,
        "model": dataclasses.asdict(model_config),
        "train": train_record(train_config),
        "max_steps": max_steps,
    }
    cells = {
        f"{_setting_folder(label)}_{variant}": {
            "setting": label,
            "variant": variant,
            "model": {"chiral": variant == "chiral"},
        }
        for label, _, _ in LIMITED_SETTINGS
        for variant in TRAINED
    }

    def run_one(run: Run, params: dict) -> dict:
        label, variant = params["setting"], params["variant"]
        sequences = sets[label]
        n = repeats[label]
        sequences = Sequences(sequences.inputs * n, sequences.targets * n, sequences.keys * n)
        trained = fit(
            run, sequences, dataset.skeleton_2d, dataset.skeleton,
            dataclasses.replace(model_config, chiral=variant == "chiral"), train_config,
            label=f"{variant} {label}", max_steps=max_steps,
        )  # fmt: skip
        result = evaluate(trained.model, test)
        return {"test": result, "history": trained.history, "outputs": ["model"]}

    top, results = run_experiment(
        out, config, cells, run_one, resume=resume, overwrite=overwrite, length_keys=LENGTH_KEYS
    )
    if top.done:
        return top.results
    rows = []
    for label, _, _ in LIMITED_SETTINGS:
        row = {"setting": label, "frames": sets[label].num_frames, "repeats": repeats[label]}
        for variant in TRAINED:
            test_result = results[f"{_setting_folder(label)}_{variant}"]["test"]
            row[f"{variant}_mpjpe"] = test_result["mpjpe"]
            row[f"{variant}_p_mpjpe"] = test_result["p_mpjpe"]
        rows.append(row)
    frames = [r["frames"] for r in rows]
    plot_curves(
        top.folder / "limited_data.png",
        {name: (frames, [r[f"{name}_mpjpe"] for r in rows]) for name in TRAINED},
        xlabel="training frames (all camera views)",
        ylabel="MPJPE (mm)",
        title="Limited training data",
    )
    return top.finish(
        {"dataset": dataset.name, "seed": seed, "rows": rows}, outputs=["limited_data.png"]
    )


LIMITED_COLUMNS = {
    "setting": "training set",
    "frames": "frames",
    "repeats": "repeats",
    "chiral_mpjpe": "chiral MPJPE",
    "plain_mpjpe": "plain MPJPE",
    "chiral_p_mpjpe": "chiral P-MPJPE",
    "plain_p_mpjpe": "plain P-MPJPE",
}


def _mean_std(stats: dict) -> str:
    spread = f" ± {stats['std']:.1f}" if stats["n"] > 1 else ""
    return f"{stats['mean']:.1f}{spread}"


def format_comparison(results: dict) -> str:
    """The comparison table as text (``mean ± std`` over seeds), then the paired
    differences of MPJPE with their 95 % bootstrap intervals."""
    rows = [{**row, **{k: _mean_std(row[k]) for k in REPORTED}} for row in results["table"]]
    lines = [format_table(rows, TABLE_COLUMNS)]
    for name, d in results.get("differences", {}).items():
        low, high = d["ci95"]
        lines.append(
            f"MPJPE {name}: {d['mean']:+.1f} mm (per-seed std {d['std']:.1f}, 95% bootstrap "
            f"interval [{low:+.1f}, {high:+.1f}], {d['n']} seeds)"
        )
    return "\n".join(lines)


_MARKDOWN_METRICS = {"mpjpe": "MPJPE mm", "p_mpjpe": "P-MPJPE mm", "n_mpjpe": "N-MPJPE mm",
                     "mpjve": "MPJVE mm/frame"}  # fmt: skip


def markdown_comparison(results: dict) -> str:
    """The results of :func:`compare` (a ``results.json``) as Markdown: the table (mean ±
    std over seeds, the best mean in bold), the paired MPJPE differences with their
    bootstrap intervals, and where the numbers come from."""
    table = results["table"]
    best = {k: min(row[k]["mean"] for row in table) for k in _MARKDOWN_METRICS}
    header = ["model", "passes", "params", *_MARKDOWN_METRICS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [row["model"], str(row["passes"]), f"{row['params']:,}"]
        for k in _MARKDOWN_METRICS:
            text = _mean_std(row[k])
            cells.append(f"**{text}**" if row[k]["mean"] == best[k] else text)
        lines.append("| " + " | ".join(cells) + " |")
    diffs = results.get("differences", {})
    if diffs:
        lines += ["", "Paired MPJPE differences (mm; mean over seeds, per-seed std, 95 % "
                  "bootstrap interval of the mean):", ""]  # fmt: skip
        for name, d in diffs.items():
            low, high = d["ci95"]
            lines.append(
                f"- {name.replace(' - ', ' − ')}: {d['mean']:+.1f} (std {d['std']:.1f}; "
                f"[{low:+.1f}, {high:+.1f}])"
            )
    config, env = results["config"], results["environment"]
    train, model = config["train"], config["model"]
    # Files written before the seeds were recorded name them in their cells.
    seeds = results.get("seeds") or sorted({int(c.rsplit("_seed", 1)[1]) for c in config["cells"]})
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "python")
    lines += ["", (
        f"Seeds {', '.join(map(str, seeds))}; {model.get('arch', 'temporal')} model, "
        f"{train['epochs']} epochs, batch {train['batch_size']}; chiral + TTA differs from "
        f"chiral by at most {results['max_chiral_tta_difference_mm']:.1e} mm. "
        f"{env['cpu_count']}-core {env['backend']} machine, {results['wall_seconds']:.0f} s "
        f"in all; {versions}."
    )]  # fmt: skip
    return "\n".join(lines)


def markdown_limited(results: dict) -> str:
    """The results of :func:`limited_data` as a Markdown table (MPJPE / P-MPJPE in mm)."""
    header = list(LIMITED_COLUMNS.values())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        cells = [row["setting"], f"{row['frames']:,}", str(row["repeats"])]
        cells += [f"{row[k]:.1f}" for k in list(LIMITED_COLUMNS)[3:]]
        lines.append("| " + " | ".join(cells) + " |")
    config = results.get("config")  # absent from files written before it was recorded
    arch = config["model"].get("arch", "temporal") if config else "temporal"
    epochs = config["train"]["epochs"] if config else results["epochs"]
    took = f"; {results['wall_seconds']:.0f} s in all" if "wall_seconds" in results else ""
    lines += ["", f"Seed {results['seed']}; {arch} model, {epochs} epochs{took}."]
    return "\n".join(lines)


def format_limited(results: dict) -> str:
    """The limited-data table as text."""
    return format_table(results["rows"], LIMITED_COLUMNS, floatfmt=".1f")
