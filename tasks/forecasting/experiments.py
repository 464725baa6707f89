"""The forecasting experiment: chiral vs plain (the paper's Table 3), PCK@0.05.

:func:`compare` trains, per seed and on the same samples, the models of
:data:`TRAINED` and scores them on the test samples in the shape of
:mod:`chiral_tasks.common.compare`: chiral, plain trained with flip augmentation (one
pass, and with flip TTA), and plain trained without it.

There is no ``chiral_mixed`` model here. The plain LSTM itself uses only odd tanh (and
sigmoid gates); the symmetry takes no activation away from it. What it constrains is
where the gates read from (the sign-keeping channels), and no choice of activation
changes that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chiral_tasks.common.cli import for_run, train_record
from chiral_tasks.common.compare import format_text, markdown, run_comparison
from chiral_tasks.common.results import plot_curves
from chiral_tasks.common.run import Run
from chiral_tasks.common.train import TrainConfig, count_params
from chiral_tasks.forecasting import plots
from chiral_tasks.forecasting import train as fc
from chiral_tasks.forecasting.penn import PENN_ACTIONS

TRAINED = ("chiral", "plain", "plain_noflip")
"""The models the comparison trains."""
AUGMENT = {"chiral": False, "plain": True, "plain_noflip": False}
"""Flip augmentation in training (the chiral model's loss is the same on a mirrored
sample, so flipping would change nothing but the time)."""
KEYS = (*(f"step_{s}" for s in range(1, 17)), "avg")
"""The reported metrics: PCK@0.05 (%) at each future step, and their average."""
TABLE_COLUMNS = {**{f"step_{s}": f"PCK {s}" for s in (1, 2, 4, 8, 12, 16)}, "avg": "PCK avg"}


def scores(results: dict) -> dict[str, float]:
    """:func:`fc.evaluate`'s PCK as the table's keys."""
    out = {f"step_{s + 1}": v for s, v in enumerate(results["pck"])}
    return {**out, "avg": results["pck_avg"]}


def compare(
    train: fc.ForecastSamples,
    test: fc.ForecastSamples,
    model_config: fc.ForecasterConfig,
    train_config: TrainConfig,
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
    (the rerun rule of :mod:`chiral_tasks.common.run`); writes ``pck.png``,
    ``learning_curves.png`` and ``forecast.gif`` there and returns the results."""
    config = {
        "task": "forecasting",
        "experiment": "compare",
        "data": data,
        "model": dataclasses.asdict(model_config),
        "train": train_record(train_config),
        "max_steps": max_steps,
    }

    def settings(name: str) -> dict:
        return {"model": {"chiral": name == "chiral"}, "augment": AUGMENT[name]}

    def run_one(run: Run, params: dict) -> dict:
        name, seed = params["variant"], params["seed"]
        model, history = fc.train_model(
            train, dataclasses.replace(model_config, chiral=name == "chiral"),
            for_run(dataclasses.replace(train_config, seed=seed), run, f"{name} seed {seed}"),
            augment=AUGMENT[name], resume=run.resume, max_steps=max_steps,
        )  # fmt: skip
        return {
            "test": scores(fc.evaluate(model, test)),
            "test_tta": scores(fc.evaluate(model, test, tta=True)),
            "params": count_params(model),
            "history": history,
        }

    def figures(folder: Path, cells: dict, summary: dict) -> list[str]:
        table = summary["table"]
        steps = np.arange(1, 17)
        plot_curves(
            folder / "pck.png",
            {row["model"]: (steps, [row[f"step_{s}"]["mean"] for s in steps]) for row in table},
            xlabel="future step",
            ylabel="PCK@0.05 (%)",
            title=f"Pose forecasting: PCK@0.05 per step, mean of {len(seeds)} seed(s)",
        )
        if not {"chiral", "plain"} <= set(variants):
            return ["pck.png"]
        draw_forecast(folder, seeds[0], test)
        return ["pck.png", "forecast.gif"]

    return run_comparison(
        out, config, seeds, variants, settings, run_one, keys=KEYS, metric="avg",
        curve=("loss", "training loss"), figures=figures,
        extra={"samples": {"train": len(train), "test": len(test)}},
        resume=resume, overwrite=overwrite,
    )  # fmt: skip


def draw_forecast(folder: Path, seed: int, test: fc.ForecastSamples) -> Path:
    """``forecast.gif``: the chiral and the plain forecast of one lively test sample."""
    models = {name: fc.load_run(folder / f"{name}_seed{seed}")[0] for name in ("chiral", "plain")}
    motion = np.linalg.norm(test.future[:, -1] - test.observed[:, -1], axis=-1).mean(-1)
    index = int(np.argsort(motion)[int(0.9 * (len(motion) - 1))])
    sample = fc.ForecastSamples(
        *(getattr(test, f.name)[index : index + 1] for f in dataclasses.fields(test))
    )
    forecasts = {name: fc.forecast(m, sample)[0] for name, m in models.items()}
    path = folder / "forecast.gif"
    plots.animate_forecast(
        path, sample.observed[0], sample.future[0], forecasts, sample.future_visible[0],
        title=PENN_ACTIONS[int(sample.action[0])],
    )  # fmt: skip
    return path


def format_comparison(results: dict) -> str:
    """The comparison table as text, then the paired differences of average PCK."""
    return format_text(results, TABLE_COLUMNS, label="PCK avg", unit="points")


def markdown_comparison(results: dict) -> str:
    """The results of :func:`compare` (a ``results.json``) as Markdown."""
    config = results["config"]
    train, model = config["train"], config["model"]
    setting = (
        f"LSTM width {model['hidden']}, {train['epochs']} epochs, batch "
        f"{train['batch_size']}; {results['samples']['test']:,} test samples"
    )
    return markdown(
        results, TABLE_COLUMNS, higher_is_better=True, label="average PCK@0.05",
        unit="points", setting=setting,
    )  # fmt: skip
