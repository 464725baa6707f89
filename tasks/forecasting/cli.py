"""``chiral forecasting generate|train|evaluate|demo|experiment``.

- ``generate``: write procedural Penn Action label files (``NNNN.mat``).
- ``train``: train one forecaster on a labels folder, then score it on the test split.
- ``evaluate``: score a trained run on a labels folder (optionally with test-time flip).
- ``experiment``: the paper's Table 3 over several seeds, in the shape every task's
  comparison has (:mod:`chiral_tasks.common.compare`): chiral, plain trained with
  flip augmentation (with and without test-time flips), plain without; prints the
  mean +- std table and the paired differences, and writes results JSON, a PCK plot,
  learning curves and an animated GIF.
- ``demo``: ``experiment`` with one seed (data generated when missing).

The options and the run folder's rerun rule are those of every task
(:mod:`chiral_tasks.common.cli`, :mod:`chiral_tasks.common.run`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from chiral_tasks.common.cli import (
    UsageError,
    add_command,
    add_flip_arg,
    add_model_choice,
    add_overwrite_arg,
    add_run_args,
    add_seeds_arg,
    add_train_args,
    add_variants_arg,
    config_from_args,
    default_data,
    for_run,
    generate_if_missing,
    positive_int,
    rate,
    seeds_of,
    train_record,
    variants_of,
)
from chiral_tasks.common.results import write_results
from chiral_tasks.common.run import (
    check_output,
    environment,
    fingerprint,
    open_run,
)
from chiral_tasks.forecasting import experiments, synth
from chiral_tasks.forecasting import train as fc

TASK = "forecasting"
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


def _print_pck(name: str, results: dict) -> None:
    steps = " ".join(f"{p:.1f}" for p in results["pck"])
    print(f"{name}: PCK@0.05 {results['pck_avg']:.1f}% on average; per future step (%): {steps}")


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
            "augment": args.flip,
            "max_steps": args.max_steps,
        },
        resume=args.resume,
        overwrite=args.overwrite,
    )
    results = run.results
    if results is None:
        model, history = fc.train_model(
            train, model_config, for_run(config, run, args.model), augment=args.flip,
            resume=run.resume, max_steps=args.max_steps,
        )  # fmt: skip
        results = run.finish({"history": history, **fc.evaluate(model, test)})
    else:
        print(f"{run.folder}: finished earlier with these settings; its results:")
    _print_pck(args.model, results)
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
    name = "chiral" if config["model"]["chiral"] else "plain"
    _print_pck(f"{name}{' + flip TTA' if args.tta else ''} ({args.run})", results)
    print(f"wrote {out}")


def run_experiment_command(args, seeds: list[int]) -> dict:
    """The comparison of :mod:`chiral_tasks.forecasting.experiments` in ``--out``;
    prints the table."""
    model_config = _model_config(args, chiral=True)
    config = _train_config(args)
    variants = variants_of(args, experiments.TRAINED)
    train, test, data = _samples(args, generate=True)
    print(f"{len(train)} train and {len(test)} test samples from {args.data}", flush=True)
    results = experiments.compare(
        train, test, model_config, config, Path(args.out), seeds, data=data,
        variants=variants, resume=args.resume, overwrite=args.overwrite,
        max_steps=args.max_steps,
    )  # fmt: skip
    print(experiments.format_comparison(results))
    print(f"results in {Path(args.out) / 'results.json'}; figures pck.png, "
          "learning_curves.png and forecast.gif there")  # fmt: skip
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
    add_flip_arg(p)
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
        ("demo", cmd_demo, "generate data if missing, train chiral and plain, compare them"),
        ("experiment", cmd_experiment, "chiral vs plain vs plain+TTA over several seeds"),
    ):
        p = add_command(subparsers, name, func, help)
        _add_data_args(p, generated=True)
        if name == "experiment":
            add_seeds_arg(p)
        add_variants_arg(p, experiments.TRAINED)
        _add_model_args(p)
        add_run_args(p, TASK, name)
        add_train_args(p)
