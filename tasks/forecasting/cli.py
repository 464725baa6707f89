"""``chiral forecasting generate|train|evaluate|demo|experiment``.

- ``generate``: write procedural Penn Action label files (``NNNN.mat``).
- ``train``: train one forecaster on a labels folder, then score it on the test split.
- ``evaluate``: score a trained run on a labels folder (optionally with test-time flip).
- ``experiment``: the paper's Table 3 over several seeds: plain without and with
  flip augmentation, plain with augmentation plus test-time flip, chiral; prints
  the mean +- std table and writes results JSON, a PCK plot and an animated GIF.
- ``demo``: ``experiment`` with one seed (data generated when missing).

The options and the run folder's rerun rule are those of every task
(:mod:`chiral_tasks.common.cli`, :mod:`chiral_tasks.common.run`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from chiral_tasks.common.cli import (
    UsageError,
    add_command,
    add_model_choice,
    add_overwrite_arg,
    add_run_args,
    add_seeds_arg,
    add_train_args,
    config_from_args,
    default_data,
    for_run,
    generate_if_missing,
    positive_int,
    rate,
    seeds_of,
    train_record,
)
from chiral_tasks.common.results import format_table, mean_std_over_seeds, write_results
from chiral_tasks.common.run import (
    Run,
    check_output,
    environment,
    fingerprint,
    grid,
    open_run,
    run_experiment,
)
from chiral_tasks.forecasting import plots, synth
from chiral_tasks.forecasting import train as fc
from chiral_tasks.forecasting.penn import PENN_ACTIONS

TASK = "forecasting"
ROWS = {
    "plain": "plain w/o aug",
    "plain_aug": "plain w/ aug",
    "plain_aug_tta": "plain w/ aug + TTA",
    "chiral": "chiral",
}
"""Result rows: key -> label (Table 3 of the paper)."""
TABLE_STEPS = (1, 2, 4, 8, 12, 16)


# -- shared options -------------------------------------------------------------------


def _add_data_args(parser: argparse.ArgumentParser, *, generated: bool = False) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default=default_data(TASK),
        help="Penn Action labels folder (NNNN.mat files), real or generated"
        + ("; the default folder is generated when missing" if generated else ""),
    )
    group.add_argument(
        "--observed",
        type=int,
        choices=(1, 2),
        default=2,
        help="observed poses per sample: 2 = the initial-velocity protocol, 1 = pose only",
    )


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--hidden",
        type=positive_int,
        help=f"LSTM width, a multiple of 13 (default {fc.QUICK_MODEL.hidden}; "
        f"--paper: {fc.PAPER_MODEL.hidden})",
    )
    group.add_argument("--dropout", type=rate, help="dropout between the stacked LSTMs")


def _add_synth_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generated data")
    defaults = synth.SynthConfig
    group.add_argument(
        "--num-videos", type=positive_int, default=defaults.num_videos, help="videos to write"
    )
    group.add_argument("--min-frames", type=positive_int, default=defaults.min_frames)
    group.add_argument("--max-frames", type=positive_int, default=defaults.max_frames)
    group.add_argument("--seed", type=int, default=0, help="seed of the generated data")


def _model_config(args, chiral: bool) -> fc.ForecasterConfig:
    base = fc.PAPER_MODEL if args.paper else fc.QUICK_MODEL
    changes = {"chiral": chiral}
    if args.hidden is not None:
        changes["hidden"] = args.hidden
    if args.dropout is not None:
        changes["dropout"] = args.dropout
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as err:
        raise UsageError(str(err)) from err


def _train_config(args) -> fc.TrainConfig:
    return config_from_args(args, fc.QUICK, fc.PAPER)


def _samples(args, *, generate: bool = False):
    """The train and test samples of ``--data`` (the default folder generated first when
    missing) and the data's record for the run config."""
    if generate:
        videos = synth.SynthConfig.num_videos
        generate_if_missing(
            args, TASK, lambda f: synth.generate(f, progress=True), f"{videos} Penn Action videos"
        )
    data = Path(args.data)
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such labels folder")
    train, test = fc.load_samples(data, args.observed)
    mats = sorted(data.glob("*.mat"))
    record = {"observed": args.observed, "fingerprint": fingerprint(mats)}
    return train, test, record


def _print_json(results: dict) -> None:
    print(json.dumps({k: results[k] for k in ("pck_avg", "pck")}, indent=None))


# -- commands -------------------------------------------------------------------------


def cmd_generate(args) -> None:
    config = synth.SynthConfig(
        num_videos=args.num_videos,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        seed=args.seed,
    )
    paths = synth.generate(
        args.out, config, progress=not args.no_progress, overwrite=args.overwrite
    )
    print(f"wrote {len(paths)} label files to {args.out}")


def cmd_train(args) -> None:
    train, test, data = _samples(args)
    model_config = _model_config(args, chiral=args.model == "chiral")
    config = _train_config(args)
    run = open_run(
        args.out,
        {
            "task": TASK,
            "data": data,
            "model": dataclasses.asdict(model_config),
            "train": train_record(config),
            "augment": args.augment,
            "max_steps": args.max_steps,
        },
        resume=args.resume,
        overwrite=args.overwrite,
    )
    results = run.results
    if results is None:
        model, history = fc.train_model(
            train, model_config, for_run(config, run, args.model), augment=args.augment,
            resume=run.resume, max_steps=args.max_steps,
        )  # fmt: skip
        results = run.finish({"history": history, **fc.evaluate(model, test)})
    else:
        print(f"{run.folder}: finished earlier with these settings; its results:")
    _print_json(results)
    print(f"results in {run.folder / 'results.json'}")


def cmd_evaluate(args) -> None:
    model, config = fc.load_run(args.run)
    if config["data"]["observed"] != args.observed:
        raise UsageError(
            f"--observed {args.observed}, but the run in {args.run} was trained with "
            f"{config['data']['observed']}"
        )
    _, test, data = _samples(args)
    out = Path(args.out) if args.out else Path(args.run) / "evaluation.json"
    identity = {"run": str(args.run), "data": data, "tta": args.tta}
    check_output(out, identity, overwrite=args.overwrite)
    started = time.perf_counter()
    results = {**identity, **fc.evaluate(model, test, tta=args.tta)}
    results.update(wall_seconds=time.perf_counter() - started, environment=environment())
    write_results(out, results)
    _print_json(results)
    print(f"wrote {out}")


def _flat(results: dict) -> dict:
    out = {f"step_{s + 1}": v for s, v in enumerate(results["pck"])}
    out["avg"] = results["pck_avg"]
    return out


def _table(summary: dict) -> str:
    records = []
    for row, label in ROWS.items():
        stats = summary[row]
        record = {"model": label}
        for key in [f"step_{s}" for s in TABLE_STEPS] + ["avg"]:
            mean, std, n = stats[key]["mean"], stats[key]["std"], stats[key]["n"]
            record[key] = f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"
        records.append(record)
    columns = {"model": "model", **{f"step_{s}": str(s) for s in TABLE_STEPS}, "avg": "avg"}
    return format_table(records, columns)


def _gif(folder: Path, seed: int, test) -> Path:
    """Animate the chiral and augmented plain forecasts of one lively test sample."""
    models = {ROWS[v]: fc.load_run(folder / f"{v}_seed{seed}")[0] for v in ("chiral", "plain_aug")}
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


def _variant_settings(variant: str) -> dict:
    chiral, augment = fc.VARIANTS[variant]
    return {"model": {"chiral": chiral}, "augment": augment}


def run_experiment_command(args, seeds: list[int]) -> dict:
    """Every variant at every seed in the experiment folder ``--out``; writes its
    ``results.json``, ``pck.png`` and ``forecast.gif``; prints the table."""
    model_config = _model_config(args, chiral=True)
    config = _train_config(args)
    train, test, data = _samples(args, generate=True)
    print(f"{len(train)} train and {len(test)} test samples from {args.data}", flush=True)
    shared = {
        "task": TASK,
        "data": data,
        "model": dataclasses.asdict(model_config),
        "train": train_record(config),
        "augment": False,
        "max_steps": args.max_steps,
    }

    def run_one(run: Run, params: dict) -> dict:
        variant, seed = params["variant"], params["seed"]
        chiral, augment = fc.VARIANTS[variant]
        model, history = fc.train_model(
            train, dataclasses.replace(model_config, chiral=chiral),
            for_run(dataclasses.replace(config, seed=seed), run, f"{variant} seed {seed}"),
            augment=augment, resume=run.resume, max_steps=args.max_steps,
        )  # fmt: skip
        results = {"history": history, **fc.evaluate(model, test)}
        if variant == "plain_aug":
            results["tta"] = fc.evaluate(model, test, tta=True)
        return results

    top, cells = run_experiment(
        args.out, shared, grid(seeds, list(fc.VARIANTS), _variant_settings), run_one,
        resume=args.resume, overwrite=args.overwrite,
    )  # fmt: skip
    if top.done:
        results = top.results
    else:
        rows = {}
        for seed in seeds:
            per_variant = {v: cells[f"{v}_seed{seed}"] for v in fc.VARIANTS}
            per_variant["plain_aug_tta"] = per_variant["plain_aug"]["tta"]
            rows[str(seed)] = {row: _flat(per_variant[row]) for row in ROWS}
        summary = mean_std_over_seeds(list(rows.values()))
        plots.plot_pck(
            top.folder / "pck.png",
            {
                ROWS[row]: (
                    np.array([summary[row][f"step_{s + 1}"]["mean"] for s in range(16)]),
                    None,
                )
                for row in ROWS
            },
        )
        _gif(top.folder, seeds[0], test)
        results = top.finish(
            {"samples": {"train": len(train), "test": len(test)}, "rows": ROWS,
             "per_seed": rows, "summary": summary},
            outputs=["pck.png", "forecast.gif"],
        )  # fmt: skip
    print(_table(results["summary"]))
    print(f"results in {top.folder / 'results.json'}, figures pck.png and forecast.gif there")
    return results


def cmd_experiment(args) -> None:
    run_experiment_command(args, seeds_of(args))


def cmd_demo(args) -> None:
    run_experiment_command(args, seeds_of(args))


# -- registration ---------------------------------------------------------------------


def register(subparsers) -> None:
    """Add the forecasting commands to ``chiral forecasting``."""
    p = add_command(subparsers, "generate", cmd_generate, "write procedural Penn Action labels")
    p.add_argument("--out", default=default_data(TASK), help="folder for the NNNN.mat files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_synth_args(p)
    add_overwrite_arg(p)

    p = add_command(subparsers, "train", cmd_train, "train one forecaster and score it")
    _add_data_args(p)
    add_model_choice(p)
    p.add_argument("--augment", action="store_true", help="random flips in training")
    _add_model_args(p)
    add_run_args(p, TASK, "train")
    add_train_args(p)

    p = add_command(subparsers, "evaluate", cmd_evaluate, "score a trained run (PCK@0.05)")
    p.add_argument("--run", required=True, help="the run folder written by train")
    _add_data_args(p)
    p.add_argument("--tta", action="store_true", help="average with the mirrored forecast")
    p.add_argument("--out", help="results file (default: <run>/evaluation.json)")
    add_overwrite_arg(p)

    for name, func, help in (
        ("experiment", cmd_experiment, "Table 3 over seeds: plain, plain+aug, +TTA, chiral"),
        ("demo", cmd_demo, "generate data if missing, train plain and chiral, compare"),
    ):
        p = add_command(subparsers, name, func, help)
        _add_data_args(p, generated=True)
        if name == "experiment":
            add_seeds_arg(p)
        _add_model_args(p)
        add_run_args(p, TASK, name)
        add_train_args(p)
