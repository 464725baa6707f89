"""``chiral recognition <command>``: skeleton action recognition (Kinetics-skeleton).

Commands: ``generate`` (the procedural dataset), ``train``, ``evaluate``, ``demo``
(generate if missing, train chiral and plain, compare) and ``experiment`` (the same
over several seeds: the comparison of :mod:`chiral_tasks.recognition.experiments`).
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
    add_data_args,
    add_even_activation_arg,
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
    probability,
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
from chiral_tasks.recognition import data as data_io
from chiral_tasks.recognition import experiments
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

TASK = "recognition"


# -- arguments -------------------------------------------------------------------------


def _add_format_args(parser: argparse.ArgumentParser, *, generated: bool = False) -> None:
    add_data_args(
        parser,
        TASK,
        help="Kinetics-skeleton folder (per-clip JSON + label index, or the .npy split)"
        + ("; the default folder is generated when missing" if generated else ""),
    )
    parser.add_argument(
        "--format",
        choices=data_io.FORMATS,
        default="auto",
        help="dataset layout: per-clip JSON + label index, or the preprocessed .npy split "
        "(auto: .npy when present)",
    )


def _add_model_args(parser: argparse.ArgumentParser, *, one_model: bool) -> None:
    """The model and augmentation options; ``--even-activation`` and ``--flip`` only
    for one model (an experiment's models set their own)."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--widths",
        type=positive_int,
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
        type=probability,
        nargs="+",
        default=(1 / 3, 1 / 6, 1 / 12),
        help="share of negated dims per joint in each block before the invariance layer",
    )
    if one_model:
        add_even_activation_arg(group, channels="channels before the invariance layer")
    group.add_argument(
        "--window",
        type=positive_int,
        help=f"training crop in frames (default {QUICK_WINDOW}; {PAPER_WINDOW} with --paper)",
    )
    if one_model:
        add_flip_arg(group)


def _model_config(args, num_classes: int, chiral: bool) -> ModelConfig:
    try:
        return ModelConfig(
            num_classes=num_classes,
            chiral=chiral,
            widths=tuple(args.widths or (PAPER_WIDTHS if args.paper else CPU_WIDTHS)),
            strides=tuple(args.strides),
            invariant_block=args.invariant_block,
            negated_fractions=tuple(args.negated_fractions),
            even_activation=getattr(args, "even_activation", None) if chiral else None,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err


def _augment(args) -> Augment:
    window = args.window or (PAPER_WINDOW if args.paper else QUICK_WINDOW)
    return Augment(window=window, flip=0.5 if getattr(args, "flip", False) else 0.0)


def _load(args, split: str) -> data_io.Split:
    return data_io.load_split(args.data, split, format=args.format, trust_pickle=args.allow_pickle)


def _dataset(args, *, generate_default: bool = False):
    """The train and val splits of ``--data`` (the default folder generated first when
    missing), the class names, and the data's record for the run config."""
    if generate_default:
        generate_if_missing(args, TASK, generate, "the procedural Kinetics-skeleton dataset")
    folder = Path(args.data)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such dataset folder")
    train_split, val_split = _load(args, "train"), _load(args, "val")
    top = max(int(train_split.labels.max()), int(val_split.labels.max())) + 1
    names = data_io.class_names(args.data, top)
    record = {"format": args.format, "fingerprint": fingerprint([folder])}
    return train_split, val_split, names, record


def _report(name: str, results: dict) -> None:
    print(f"{name}: top-1 {100 * results['top1']:.1f}%  top-5 {100 * results['top5']:.1f}%")
    print("  " + describe_mirror_check(name, results))


# -- commands --------------------------------------------------------------------------


def cmd_generate(args) -> None:
    config = SynthConfig(
        classes=tuple(args.classes),
        clips_per_class=args.clips_per_class,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    counts = generate(args.out, config, overwrite=args.overwrite)
    print(f"wrote {counts['train']} training and {counts['val']} validation clips to {args.out}")


def _run_config(args, data: dict, names, model_config: ModelConfig, config) -> dict:
    return {
        "task": TASK,
        "data": data,
        "classes": list(names),
        "model": dataclasses.asdict(model_config),
        "train": train_record(config),
        "augment": dataclasses.asdict(_augment(args)),
        "max_steps": args.max_steps,
    }


def cmd_train(args) -> None:
    train_split, val_split, names, data = _dataset(args)
    model_config = _model_config(args, len(names), args.model == "chiral")
    config = config_from_args(args, QUICK, PAPER)
    run = open_run(
        args.out,
        _run_config(args, data, names, model_config, config),
        resume=args.resume,
        overwrite=args.overwrite,
    )
    results = run.results
    if results is None:
        record = train_and_evaluate(
            run, train_split, val_split, model_config, for_run(config, run, args.model),
            _augment(args), class_names=names, max_steps=args.max_steps,
        )  # fmt: skip
        results = run.finish(record, record.pop("outputs"))
    else:
        print(f"{run.folder}: finished earlier with these settings; its results:")
    _report(args.model, results)
    print(f"results in {run.folder / 'results.json'}, confusion matrix confusion.png there")


def cmd_evaluate(args) -> None:
    model, run = load_run(args.run)
    split = _load(args, args.split)
    out = Path(args.out or Path(args.run) / f"eval_{args.split}.json")
    identity = {"run": str(args.run), "split": args.split, "format": args.format}
    identity["fingerprint"] = fingerprint([args.data])
    check_output(out, identity, overwrite=args.overwrite)
    started = time.perf_counter()
    results = evaluate(
        model,
        split,
        run["classes"],
        batch_size=args.batch_size,
        confusion_png=out.with_suffix(".png"),
    )
    name = "chiral" if model.config.chiral else "plain"
    seconds = time.perf_counter() - started
    write_results(
        out,
        {
            **identity,
            "model": name,
            **results,
            "wall_seconds": seconds,
            "environment": environment(),
        },
    )
    print(f"{name} on {args.split} ({results['clips']} clips):")
    _report(name, results)
    print(f"wrote {out} and {out.with_suffix('.png')}")


def _run_models(args, seeds: list[int]) -> dict:
    """The comparison of :mod:`chiral_tasks.recognition.experiments` in ``--out``;
    prints the table."""
    base = config_from_args(args, QUICK, PAPER)
    variants = variants_of(args, experiments.TRAINED)
    _model_config(args, 2, True)  # the options checked before any data is generated
    train_split, val_split, names, data = _dataset(args, generate_default=True)
    results = experiments.compare(
        train_split, val_split, names, _model_config(args, len(names), True), base,
        _augment(args), Path(args.out), seeds, data=data, variants=variants,
        resume=args.resume, overwrite=args.overwrite, max_steps=args.max_steps,
    )  # fmt: skip
    print(experiments.format_comparison(results))
    print(
        f"results in {Path(args.out) / 'results.json'}; learning_curves.png there, confusion "
        f"matrices in {args.out}/<model>_seed<k>/confusion.png"
    )
    return results


def cmd_demo(args) -> None:
    _run_models(args, seeds_of(args))


def cmd_experiment(args) -> None:
    _run_models(args, seeds_of(args))


def cmd_ablation(args) -> None:
    """What moves the chiral model's top-1 (:data:`experiments.ABLATIONS`)."""
    base = config_from_args(args, QUICK, PAPER)
    seeds = seeds_of(args)
    _model_config(args, 2, True)  # the options checked before any data is generated
    out = Path(args.out)
    identity = {"seeds": seeds, "settings": sorted(experiments.ABLATIONS)}
    check_output(out / "results.json", identity, overwrite=args.overwrite)
    train_split, val_split, names, data = _dataset(args, generate_default=True)
    started = time.perf_counter()
    results = experiments.ablation(
        train_split, val_split, names, _model_config(args, len(names), True), base,
        _augment(args), out, seeds, data=data, resume=args.resume, max_steps=args.max_steps,
    )  # fmt: skip
    results.update(wall_seconds=time.perf_counter() - started, environment=environment())
    write_results(out / "results.json", results)
    print(experiments.markdown_ablation(results))
    print(f"results in {out / 'results.json'}; each setting's comparison in {out}/<setting>/")


# -- registration ----------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the recognition commands to ``chiral recognition``."""
    p = add_command(
        subparsers, "generate", cmd_generate,
        "write the procedural Kinetics-skeleton dataset (per-clip JSON + label index, "
        "and the preprocessed .npy split)",
    )  # fmt: skip
    p.add_argument("--out", default=default_data(TASK), help="output folder")
    p.add_argument("--classes", nargs="+", default=SynthConfig.classes, help="action names")
    p.add_argument("--clips-per-class", type=positive_int, default=SynthConfig.clips_per_class)
    p.add_argument("--val-fraction", type=probability, default=SynthConfig.val_fraction)
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    add_overwrite_arg(p)

    p = add_command(
        subparsers, "train", cmd_train,
        "train a plain or chiral-invariant classifier, then evaluate it on the val split",
    )  # fmt: skip
    _add_format_args(p)
    add_model_choice(p)
    _add_model_args(p, one_model=True)
    add_run_args(p, TASK, "train")
    add_train_args(p)

    p = add_command(
        subparsers, "evaluate", cmd_evaluate,
        "top-1/top-5, confusion matrix and mirror check of a trained run on a split",
    )  # fmt: skip
    p.add_argument("--run", required=True, help="the run folder written by train")
    _add_format_args(p)
    p.add_argument("--split", default="val", help="split name (train, val)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="clips per forward pass")
    p.add_argument("--out", help="results JSON (default: <run>/eval_<split>.json)")
    add_overwrite_arg(p)

    for name, func, help_text in (
        ("demo", cmd_demo, "generate if missing, train chiral and plain, compare them"),
        ("experiment", cmd_experiment, "chiral vs plain vs plain+TTA over several seeds"),
        ("ablation", cmd_ablation, "what moves the chiral model's top-1 (block, shares, lr...)"),
    ):
        p = add_command(subparsers, name, func, help_text)
        _add_format_args(p, generated=True)
        if name != "demo":
            add_seeds_arg(p)
        if name != "ablation":
            add_variants_arg(p, experiments.TRAINED)
        _add_model_args(p, one_model=False)
        add_run_args(p, TASK, name)
        add_train_args(p)
