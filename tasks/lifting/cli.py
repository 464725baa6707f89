"""The lifting task's commands: ``chiral lifting generate | convert | train | evaluate | demo |
experiment | limited-data``."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from chiral_tasks.common.cli import add_command, add_data_args, add_train_args, config_from_args
from chiral_tasks.common.results import write_results
from chiral_tasks.lifting import experiments, formats
from chiral_tasks.lifting.cameras import load_cameras_json
from chiral_tasks.lifting.data import camera_sequences, default_split, load_dataset
from chiral_tasks.lifting.evaluate import evaluate
from chiral_tasks.lifting.synth import DETECTOR, SynthConfig, write_dataset
from chiral_tasks.lifting.train import (
    PAPER_MODEL,
    PAPER_TRAIN,
    QUICK_MODEL,
    QUICK_TRAIN,
    ModelConfig,
    load_model,
    save_model,
    train,
)

DATA_DIR = "data/lifting"


# -- arguments ---------------------------------------------------------------------------


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument(
        "--data",
        required=True,
        help="our pickle-free .npz, or VideoPose3D's data_3d_<ds>.npz together with --data-2d",
    )
    group.add_argument("--data-2d", help="VideoPose3D's data_2d_<ds>_<detector>.npz")
    group.add_argument("--cameras", help="cameras JSON for VideoPose3D files (see docs)")
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="trust and load VideoPose3D's pickled .npz files (loading runs code in the file)",
    )
    group.add_argument("--train-subjects", nargs="+", help="default: the protocol's")
    group.add_argument("--test-subjects", nargs="+", help="default: the protocol's")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--filter-widths",
        type=int,
        nargs="+",
        help="kernel widths (quick: 3 3 3 = 27 frames; --paper: 3 3 3 3 3 = 243)",
    )
    group.add_argument(
        "--channels",
        type=int,
        help="hidden width (quick 128, --paper 1024; chiral: rounded down to a multiple of J)",
    )
    group.add_argument("--dropout", type=float, help="dropout rate (0.25 if unset)")
    group.add_argument("--causal", action="store_true", help="causal (real-time) model")
    group.add_argument(
        "--flat",
        action="store_true",
        help="chiral: joint-basis activations between layers (default: the even/odd form "
        "when the hidden convs are wide enough; same function)",
    )


def _model_config(args: argparse.Namespace) -> ModelConfig:
    base = PAPER_MODEL if args.paper else QUICK_MODEL
    overrides = {
        "filter_widths": args.filter_widths,
        "channels": args.channels,
        "dropout": args.dropout,
        "causal": args.causal or None,
        "structured": False if args.flat else None,
    }
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _dataset(args: argparse.Namespace) -> formats.LiftingDataset:
    return load_dataset(
        args.data, path_2d=args.data_2d, cameras=args.cameras, allow_pickle=args.allow_pickle
    )


def _split(args: argparse.Namespace, dataset: formats.LiftingDataset):
    if args.train_subjects and args.test_subjects:
        return args.train_subjects, args.test_subjects
    train_subjects, test_subjects = default_split(dataset)
    return args.train_subjects or train_subjects, args.test_subjects or test_subjects


def _synthetic(data_dir: str, seed: int) -> formats.LiftingDataset:
    """The synthetic Human3.6M stand-in in ``data_dir``, generated first if missing."""
    path = Path(data_dir) / "h36m.npz"
    if not path.is_file():
        print(f"generating the synthetic dataset into {data_dir} ...")
        write_dataset(SynthConfig(seed=seed), data_dir)
    return formats.load_npz(path)


def _print_metrics(name: str, result: dict) -> None:
    print(
        f"{name}: MPJPE {result['mpjpe']:.1f} mm, P-MPJPE {result['p_mpjpe']:.1f} mm, "
        f"N-MPJPE {result['n_mpjpe']:.1f} mm, MPJVE {result['mpjve']:.2f} mm"
    )


# -- commands ----------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> None:
    config = SynthConfig(
        dataset=args.dataset, frames=args.frames, trials=args.trials, seed=args.seed
    )
    paths = write_dataset(config, args.out)
    for role, path in paths.items():
        print(f"{role:8s} {path}")


def cmd_convert(args: argparse.Namespace) -> None:
    dataset = formats.convert_videopose3d(
        args.data_3d,
        args.data_2d,
        args.out,
        trust_pickle=args.allow_pickle,
        cameras=load_cameras_json(args.cameras),
    )
    frames = sum(r.num_frames for s in dataset.subjects.values() for r in s.recordings.values())
    print(f"wrote {args.out}: {len(dataset.subjects)} subjects, {frames} frames")


def cmd_train(args: argparse.Namespace) -> None:
    dataset = _dataset(args)
    train_subjects, test_subjects = _split(args, dataset)
    model_config = dataclasses.replace(_model_config(args), chiral=not args.plain)
    train_config = config_from_args(args, QUICK_TRAIN, PAPER_TRAIN)
    sequences = camera_sequences(dataset, train_subjects)
    trained = train(
        sequences,
        dataset.skeleton,
        model_config,
        train_config,
        flip=not args.no_flip,
        resume=args.resume,
        max_steps=args.max_steps,
    )
    out = Path(args.out)
    save_model(trained, out / "model")
    result = evaluate(trained.model, camera_sequences(dataset, test_subjects), tta=args.tta)
    _print_metrics("chiral" if model_config.chiral else "plain", result)
    print(
        f"parameters {trained.model.num_params:,}, {len(trained.history)} full epochs "
        f"trained in {trained.seconds:.0f} s"
    )
    write_results(
        out / "results.json",
        {
            "model_config": dataclasses.asdict(model_config),
            "params": trained.model.num_params,
            "history": trained.history,
            "test_subjects": test_subjects,
            "tta": args.tta,
            "test": result,
        },
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    dataset = _dataset(args)
    subjects = args.test_subjects or _split(args, dataset)[1]
    trained = load_model(args.model, dataset.skeleton)
    sequences = camera_sequences(dataset, subjects)
    started = time.perf_counter()
    result = evaluate(trained.model, sequences, tta=args.tta)
    kind = "chiral" if trained.config.chiral else "plain"
    _print_metrics(kind + (" + flip TTA" if args.tta else ""), result)
    print(
        f"parameters {trained.model.num_params:,}, {sequences.num_frames} frames in "
        f"{time.perf_counter() - started:.1f} s"
    )
    if args.out:
        write_results(
            args.out,
            {"model": str(args.model), "subjects": subjects, "tta": args.tta, "test": result},
        )


def _compare(args: argparse.Namespace, seeds: list[int]) -> None:
    dataset = _synthetic(args.data_dir, seed=0) if args.data is None else _dataset(args)
    train_config = config_from_args(args, QUICK_TRAIN, PAPER_TRAIN)
    out = Path(args.out)
    results = experiments.compare(
        dataset, _model_config(args), train_config, out, seeds,
        resume=args.resume, max_steps=args.max_steps,
    )  # fmt: skip
    print(experiments.format_comparison(results))
    print(
        f"MPJPE of chiral + flip TTA differs from chiral's by at most "
        f"{results['max_chiral_tta_difference_mm']:.2e} mm (exact equivariance)"
    )
    print(f"wall time {results['wall_seconds']:.0f} s")
    write_results(out / "results.json", results)
    print(f"wrote {out / 'results.json'} and {out / 'lifting_pose.png'}")


def cmd_demo(args: argparse.Namespace) -> None:
    _compare(args, [0 if args.seed is None else args.seed])


def cmd_experiment(args: argparse.Namespace) -> None:
    _compare(args, args.seeds)


def cmd_limited(args: argparse.Namespace) -> None:
    dataset = _synthetic(args.data_dir, seed=0) if args.data is None else _dataset(args)
    train_config = config_from_args(args, QUICK_TRAIN, PAPER_TRAIN)
    out = Path(args.out)
    results = experiments.limited_data(
        dataset, _model_config(args), train_config, out, seed=train_config.seed
    )
    print(experiments.format_limited(results))
    write_results(out / "results.json", results)
    print(f"wrote {out / 'results.json'} and {out / 'limited_data.png'}")


# -- registration ------------------------------------------------------------------------


def _add_optional_dataset(parser: argparse.ArgumentParser) -> None:
    add_data_args(parser, data_dir=DATA_DIR)
    group = parser.add_argument_group("own dataset (instead of the synthetic one)")
    group.add_argument("--data", help="our .npz, or VideoPose3D's data_3d file with --data-2d")
    group.add_argument("--data-2d", help="VideoPose3D's data_2d_<ds>_<detector>.npz")
    group.add_argument("--cameras", help="cameras JSON for VideoPose3D files")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the lifting commands to ``chiral lifting``."""
    p = add_command(
        subparsers, "generate", cmd_generate,
        "write a synthetic Human3.6M (or HumanEva-I) dataset in VideoPose3D's files and ours",
    )  # fmt: skip
    p.add_argument("--out", default=DATA_DIR, help="output folder")
    p.add_argument("--dataset", choices=["h36m", "humaneva15"], default="h36m")
    p.add_argument("--frames", type=int, default=SynthConfig.frames, help="frames per sequence")
    p.add_argument("--trials", type=int, default=SynthConfig.trials, help="sequences per action")
    p.add_argument("--seed", type=int, default=0)

    p = add_command(
        subparsers, "convert", cmd_convert,
        "convert VideoPose3D's pickled data_3d/data_2d pair (+ cameras JSON) to our .npz",
    )  # fmt: skip
    p.add_argument("--data-3d", required=True, help="data_3d_<ds>.npz")
    p.add_argument(
        "--data-2d", required=True, help=f"data_2d_<ds>_<detector>.npz (e.g. {DETECTOR})"
    )
    p.add_argument("--cameras", required=True, help="cameras JSON (schema in the docs)")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="trust and load the pickled inputs (loading runs code stored in them)",
    )

    p = add_command(subparsers, "train", cmd_train, "train one lifting model and test it")
    _add_dataset_args(p)
    _add_model_args(p)
    p.add_argument("--plain", action="store_true", help="plain model instead of chiral")
    p.add_argument("--no-flip", action="store_true", help="no flip augmentation")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    add_train_args(p, out="runs/lifting")

    p = add_command(
        subparsers, "evaluate", cmd_evaluate,
        "score a trained model (--model <out>/model) on any lifting dataset",
    )  # fmt: skip
    _add_dataset_args(p)
    p.add_argument("--model", required=True, help="folder written by train (<out>/model)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--out", help="results JSON to write")

    for name, func, help_text in (
        ("demo", cmd_demo, "generate data if missing, train chiral and plain, compare them"),
        ("experiment", cmd_experiment, "chiral vs plain vs plain+TTA over several seeds"),
    ):
        p = add_command(subparsers, name, func, help_text)
        _add_optional_dataset(p)
        _add_model_args(p)
        add_train_args(p, out=f"runs/lifting_{name}")
        if name == "experiment":
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])

    p = add_command(
        subparsers, "limited-data", cmd_limited,
        "chiral vs plain on S1 10%%/50%%/100%%, S1+S5, S1+S5+S6 (the paper's Fig. 4)",
    )  # fmt: skip
    _add_optional_dataset(p)
    _add_model_args(p)
    add_train_args(p, out="runs/lifting_limited")
