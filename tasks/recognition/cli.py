"""``chiral recognition <command>``: skeleton action recognition (Kinetics-skeleton).

Commands: ``generate`` (the procedural dataset), ``train``, ``evaluate``, ``demo``
(generate if missing, train chiral and plain, compare) and ``experiment`` (the same
over several seeds, mean +- std).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from chiral_tasks.common.cli import add_command, add_data_args, add_train_args, config_from_args
from chiral_tasks.common.results import format_table, mean_std_over_seeds, write_results
from chiral_tasks.recognition import data as data_io
from chiral_tasks.recognition.augment import Augment
from chiral_tasks.recognition.model import CPU_WIDTHS, PAPER_WIDTHS, ModelConfig
from chiral_tasks.recognition.synth import SynthConfig, generate
from chiral_tasks.recognition.train import (
    PAPER,
    PAPER_WINDOW,
    QUICK,
    QUICK_WINDOW,
    describe_mirror_check,
    evaluate,
    load_run,
    train_and_evaluate,
)

DEMO_DATA = os.path.join("runs", "recognition", "data")
SUMMARY_KEYS = ("top1", "top5", "mirror_max_abs_diff", "mirror_changed_fraction", "params")


# -- arguments -------------------------------------------------------------------------


def _add_format_args(parser: argparse.ArgumentParser, *, data_dir: str | None = None) -> None:
    add_data_args(parser, data_dir=data_dir)
    parser.add_argument(
        "--format",
        choices=data_io.FORMATS,
        default="auto",
        help="dataset layout: per-clip JSON + label index, or the preprocessed .npy split "
        "(auto: .npy when present)",
    )


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--widths",
        type=int,
        nargs="+",
        help=f"channels of each block (default {list(CPU_WIDTHS)}; with --paper "
        f"{list(PAPER_WIDTHS)})",
    )
    group.add_argument(
        "--strides",
        type=int,
        nargs="*",
        default=(4, 7),
        help="blocks (0-based) whose temporal conv strides by 2",
    )
    group.add_argument(
        "--invariant-block",
        type=int,
        default=3,
        help="block (0-based) holding the invariance layer in the chiral model",
    )
    group.add_argument(
        "--negated-fractions",
        type=float,
        nargs="+",
        default=(1 / 3, 1 / 6, 1 / 12),
        help="share of negated dims per joint in each block before the invariance layer",
    )
    group.add_argument(
        "--window",
        type=int,
        help=f"training crop in frames (default {QUICK_WINDOW}; {PAPER_WINDOW} with --paper)",
    )
    group.add_argument(
        "--flip", type=float, default=0.0, help="probability of mirroring a training clip"
    )


def _model_config(args, num_classes: int, chiral: bool) -> ModelConfig:
    return ModelConfig(
        num_classes=num_classes,
        chiral=chiral,
        widths=args.widths or (PAPER_WIDTHS if args.paper else CPU_WIDTHS),
        strides=tuple(args.strides),
        invariant_block=args.invariant_block,
        negated_fractions=tuple(args.negated_fractions),
    )


def _augment(args) -> Augment:
    window = args.window or (PAPER_WINDOW if args.paper else QUICK_WINDOW)
    return Augment(window=window, flip=args.flip)


def _load(args, split: str) -> data_io.Split:
    return data_io.load_split(
        args.data_dir, split, format=args.format, trust_pickle=args.allow_pickle
    )


def _splits_and_names(args) -> tuple[data_io.Split, data_io.Split, list[str]]:
    train_split, val_split = _load(args, "train"), _load(args, "val")
    top = max(int(train_split.labels.max()), int(val_split.labels.max())) + 1
    return train_split, val_split, data_io.class_names(args.data_dir, top)


def _summary_row(name: str, results: dict) -> dict:
    row = {"model": name}
    for key in SUMMARY_KEYS:
        value = results[key]
        row[key] = value["mean"] if isinstance(value, dict) else value
        if isinstance(value, dict) and key in ("top1", "top5"):
            row[key] = f"{100 * value['mean']:.1f} +- {100 * value['std']:.1f}"
        elif key in ("top1", "top5"):
            row[key] = f"{100 * value:.1f}"
    return row


TABLE_COLUMNS = {
    "model": "model",
    "params": "params",
    "top1": "top-1 %",
    "top5": "top-5 %",
    "mirror_max_abs_diff": "max|dlogits| mirror",
    "mirror_changed_fraction": "pred. changed by mirror",
}


# -- commands --------------------------------------------------------------------------


def cmd_generate(args) -> None:
    config = SynthConfig(
        classes=tuple(args.classes),
        clips_per_class=args.clips_per_class,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    counts = generate(args.out, config)
    print(f"wrote {counts['train']} training and {counts['val']} validation clips to {args.out}")


def cmd_train(args) -> None:
    train_split, val_split, names = _splits_and_names(args)
    config = config_from_args(args, QUICK, PAPER)
    results = train_and_evaluate(
        train_split,
        val_split,
        _model_config(args, len(names), args.model == "chiral"),
        config,
        _augment(args),
        args.out,
        class_names=names,
        resume=args.resume,
        max_steps=args.max_steps,
    )
    print(f"{args.model}: top-1 {100 * results['top1']:.1f}%  top-5 {100 * results['top5']:.1f}%")
    print(describe_mirror_check(args.model, results))
    print(f"results: {Path(args.out) / 'results.json'}")


def cmd_evaluate(args) -> None:
    model, run = load_run(args.run)
    split = _load(args, args.split)
    out = Path(args.out or args.run)
    out.mkdir(parents=True, exist_ok=True)
    results = evaluate(
        model,
        split,
        run["class_names"],
        batch_size=args.batch_size,
        confusion_png=out / f"confusion_{args.split}.png",
    )
    name = "chiral" if model.config.chiral else "plain"
    write_results(out / f"eval_{args.split}.json", {"model": name, "split": args.split, **results})
    print(f"{name} on {args.split} ({results['clips']} clips): top-1 {100 * results['top1']:.1f}%"
          f"  top-5 {100 * results['top5']:.1f}%")  # fmt: skip
    print(describe_mirror_check(name, results))
    print(f"results: {out / f'eval_{args.split}.json'}")


def _run_models(args, seeds: Sequence[int], models: Sequence[str]) -> dict:
    """Trains and evaluates each model at each seed under ``args.out``; returns the summary."""
    if not Path(args.data_dir).is_dir():
        print(f"generating the procedural dataset into {args.data_dir}")
        generate(args.data_dir, SynthConfig())
    train_split, val_split, names = _splits_and_names(args)
    base = config_from_args(args, QUICK, PAPER)
    runs: dict[str, list[dict]] = {m: [] for m in models}
    for seed in seeds:
        for name in models:
            out = Path(args.out) / f"{name}_seed{seed}"
            config = dataclasses.replace(base, seed=seed, checkpoint_dir=str(out / "checkpoints"))
            results = train_and_evaluate(
                train_split,
                val_split,
                _model_config(args, len(names), name == "chiral"),
                config,
                _augment(args),
                out,
                class_names=names,
                resume=args.resume and (out / "checkpoints").is_dir(),
                max_steps=args.max_steps,
            )
            print(f"seed {seed} {name}: top-1 {100 * results['top1']:.1f}%  "
                  f"top-5 {100 * results['top5']:.1f}%")  # fmt: skip
            print("  " + describe_mirror_check(name, results))
            runs[name].append({k: results[k] for k in SUMMARY_KEYS})
    summary = {
        name: mean_std_over_seeds(per_seed) if len(per_seed) > 1 else per_seed[0]
        for name, per_seed in runs.items()
    }
    rows = [_summary_row(name, summary[name]) for name in models]
    print(format_table(rows, TABLE_COLUMNS, floatfmt=".3g"))
    record = {
        "task": "recognition",
        "data": str(args.data_dir),
        "seeds": list(seeds),
        "config": {
            "train": dataclasses.asdict(base),
            "augment": dataclasses.asdict(_augment(args)),
            "model": dataclasses.asdict(_model_config(args, len(names), True)),
        },
        "summary": summary,
        "runs": runs,
    }
    write_results(Path(args.out) / "results.json", record)
    print(f"results: {Path(args.out) / 'results.json'}; confusion matrices: "
          f"{Path(args.out)}/<model>_seed<k>/confusion.png")  # fmt: skip
    return record


def cmd_demo(args) -> None:
    _run_models(args, [args.seed if args.seed is not None else 0], args.models)


def cmd_experiment(args) -> None:
    _run_models(args, args.seeds, args.models)


# -- registration ----------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the recognition commands to ``chiral recognition``."""
    p = add_command(
        subparsers, "generate", cmd_generate,
        "write the procedural Kinetics-skeleton dataset (per-clip JSON + label index, "
        "and the preprocessed .npy split)",
    )  # fmt: skip
    p.add_argument("--out", default=DEMO_DATA, help="output folder")
    p.add_argument("--classes", nargs="+", default=SynthConfig.classes, help="action names")
    p.add_argument("--clips-per-class", type=int, default=SynthConfig.clips_per_class)
    p.add_argument("--val-fraction", type=float, default=SynthConfig.val_fraction)
    p.add_argument("--seed", type=int, default=0, help="dataset seed")

    p = add_command(
        subparsers, "train", cmd_train,
        "train a plain or chiral-invariant classifier, then evaluate it on the val split",
    )  # fmt: skip
    _add_format_args(p)
    p.add_argument("--model", choices=("chiral", "plain"), default="chiral")
    _add_model_args(p)
    add_train_args(p, out=os.path.join("runs", "recognition", "train"))

    p = add_command(
        subparsers, "evaluate", cmd_evaluate,
        "top-1/top-5, confusion matrix and mirror check of a trained run on a split",
    )  # fmt: skip
    _add_format_args(p)
    p.add_argument("--run", required=True, help="the training run's --out folder")
    p.add_argument("--split", default="val", help="split name (train, val)")
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass")
    p.add_argument("--out", help="where results go (default: the run folder)")

    for name, func, help_text in (
        ("demo", cmd_demo, "generate if missing, train chiral and plain, print the table"),
        ("experiment", cmd_experiment, "train chiral and plain over seeds: mean +- std"),
    ):
        p = add_command(subparsers, name, func, help_text)
        _add_format_args(p, data_dir=DEMO_DATA)
        p.add_argument(
            "--models", nargs="+", choices=("chiral", "plain"), default=["chiral", "plain"]
        )
        if name == "experiment":
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        _add_model_args(p)
        add_train_args(p, out=os.path.join("runs", "recognition", name))
