"""The lifting experiments: chiral vs plain (with and without flip TTA), and limited data.

:func:`compare` trains, per seed and on the same data, the variants of
:func:`trained_variants` on the protocol's training subjects and scores them on the
test subjects, in the shape of :mod:`chiral_tasks.common.compare` (the plain model is
trained with flip augmentation, VideoPose3D's default). :func:`limited_data` repeats
the chiral/plain pair on growing training sets (the paper's Fig. 4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.cli import for_run, train_record
from chiral_tasks.common.compare import (
    MIXED_EVEN_ACTIVATION,
    format_text,
    markdown,
    run_comparison,
)
from chiral_tasks.common.results import format_table, plot_curves
from chiral_tasks.common.run import Run, run_experiment
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

LIMITED_MODELS = ("chiral", "plain")
"""The models of the limited-data runs."""


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


TABLE_COLUMNS = {"mpjpe": "MPJPE mm", "p_mpjpe": "P-MPJPE mm", "n_mpjpe": "N-MPJPE mm",
                 "mpjve": "MPJVE mm/frame"}  # fmt: skip
"""The metrics of the comparison table (MPJPE is the headline)."""


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
    """A trained model's cell results (:mod:`chiral_tasks.common.compare`): its scores
    on ``test`` in one pass and with flip TTA."""
    return {
        "test": evaluate(trained.model, test),
        "test_tta": evaluate(trained.model, test, tta=True),
        "params": trained.model.num_params,
        "history": trained.history,
        "train_seconds": trained.seconds,
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
    variants: Sequence[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Train and score ``variants`` (default: all of :func:`trained_variants`) for every
    seed in the experiment folder ``out`` (the rerun rule of
    :mod:`chiral_tasks.common.run`); return the results.

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

    available = trained_variants(model_config)
    if variants is None:
        variants = tuple(available)
    unknown = [v for v in variants if v not in available]
    if unknown:
        raise ValueError(f"no {unknown[0]} model for the {model_config.arch} architecture")
    variants = {name: available[name] for name in variants}

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

    def figures(folder: Path, cells: dict, summary: dict) -> list[str]:
        if not {"chiral", "plain"} <= set(variants):
            return []
        chiral, plain = (load_model(folder / f"{v}_seed{seeds[0]}" / "model").model
                         for v in ("chiral", "plain"))  # fmt: skip
        draw_test_pose(chiral, plain, dataset, test_subjects, folder / "lifting_pose.png")
        return ["lifting_pose.png"]

    return run_comparison(
        out, config, seeds, tuple(variants), lambda name: variants[name], run_one,
        keys=tuple(TABLE_COLUMNS), metric="mpjpe", curve=("mpjpe_mm", "training MPJPE (mm)"),
        figures=figures, extra={"dataset": dataset.name}, resume=resume,
        overwrite=overwrite, length_keys=LENGTH_KEYS,
    )  # fmt: skip


LIMITED_SETTINGS = (
    ("S1 10%", ("S1",), 0.1),
    ("S1 50%", ("S1",), 0.5),
    ("S1", ("S1",), 1.0),
    ("S1+S5", ("S1", "S5"), 1.0),
    ("S1+S5+S6", ("S1", "S5", "S6"), 1.0),
)
"""(label, training subjects, fraction of each recording) of the limited-data runs."""


def fill_windows(sequences: Sequences, windows: int, chunk_length: int = 1) -> Sequences:
    """``sequences`` listed over and over, in order, until they hold at least ``windows``
    training windows of ``chunk_length`` output frames (a sequence of ``T`` frames holds
    ``ceil(T / chunk_length)``, as :class:`~chiral_tasks.common.data.WindowSampler` cuts
    it), and less than one sequence more: a set of exactly ``windows`` is listed once.

    >>> import numpy as np
    >>> s = Sequences([np.zeros((3, 1, 2)), np.zeros((2, 1, 2))], [None, None], ["a", "b"])
    >>> fill_windows(s, 12).keys, fill_windows(s, 12).num_frames
    (['a', 'b', 'a', 'b', 'a'], 13)
    >>> fill_windows(s, 5, chunk_length=2).keys  # 2 + 1 windows per listing
    ['a', 'b', 'a']
    """
    if sequences.num_frames == 0:
        raise ValueError("fill_windows needs at least one frame")
    index, total = [], 0
    while total < windows:
        i = len(index) % len(sequences.inputs)
        index.append(i)
        total += _windows_in(len(sequences.inputs[i]), chunk_length)
    return Sequences(
        [sequences.inputs[i] for i in index],
        [sequences.targets[i] for i in index],
        [sequences.keys[i] for i in index],
    )


def _windows_in(frames: int, chunk_length: int) -> int:
    """Training windows in a sequence of ``frames``: ``ceil(frames / chunk_length)``."""
    return -(-frames // chunk_length)


def _windows(sequences: Sequences, chunk_length: int) -> int:
    return sum(_windows_in(len(x), chunk_length) for x in sequences.inputs)


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

    Every setting's sequences are listed over and over, in order, until they hold as
    many training windows as the largest set (:func:`fill_windows`; ``repeats`` in the
    rows is how many times over), so every setting takes the same number of steps,
    within one sequence: the small sets are not also under-trained, and every run has
    the same epochs (and compiled steps). Runs under the rerun rule of
    :mod:`chiral_tasks.common.run`, one cell per setting and model.
    """
    _, test_subjects = default_split(dataset)
    test = camera_sequences(dataset, test_subjects)
    seed = train_config.seed
    sets = {
        label: camera_sequences(dataset, subjects, fraction=fraction, seed=seed)
        for label, subjects, fraction in LIMITED_SETTINGS
    }
    chunk = model_config.chunk_length
    largest = max(_windows(s, chunk) for s in sets.values())
    filled = {label: fill_windows(s, largest, chunk) for label, s in sets.items()}
    config = {
        "task": "lifting",
        "experiment": "limited-data",
        # Each setting is listed up to the largest set's windows (before: whole repeats).
        "fill": "windows",
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
        for variant in LIMITED_MODELS
    }

    def run_one(run: Run, params: dict) -> dict:
        label, variant = params["setting"], params["variant"]
        trained = fit(
            run, filled[label], dataset.skeleton_2d, dataset.skeleton,
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
        frames = sets[label].num_frames
        repeats = round(_windows(filled[label], chunk) / _windows(sets[label], chunk), 2)
        row = {"setting": label, "frames": frames, "repeats": repeats}
        for variant in LIMITED_MODELS:
            test_result = results[f"{_setting_folder(label)}_{variant}"]["test"]
            row[f"{variant}_mpjpe"] = test_result["mpjpe"]
            row[f"{variant}_p_mpjpe"] = test_result["p_mpjpe"]
        rows.append(row)
    frames = [r["frames"] for r in rows]
    plot_curves(
        top.folder / "limited_data.png",
        {name: (frames, [r[f"{name}_mpjpe"] for r in rows]) for name in LIMITED_MODELS},
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


def format_comparison(results: dict) -> str:
    """The comparison table as text, then the paired MPJPE differences."""
    return format_text(results, TABLE_COLUMNS, label="MPJPE", unit="mm")


def markdown_comparison(results: dict) -> str:
    """The results of :func:`compare` (a ``results.json``) as Markdown."""
    config = results["config"]
    train, model = config["train"], config["model"]
    setting = f"{model['arch']} model, {train['epochs']} epochs, batch {train['batch_size']}"
    return markdown(results, TABLE_COLUMNS, higher_is_better=False, label="MPJPE", unit="mm",
                    setting=setting)  # fmt: skip


def markdown_limited(results: dict) -> str:
    """The results of :func:`limited_data` as a Markdown table (MPJPE / P-MPJPE in mm)."""
    header = list(LIMITED_COLUMNS.values())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        cells = [row["setting"], f"{row['frames']:,}", f"{row['repeats']:g}"]
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
