"""The lifting task's commands: ``chiral lifting generate | convert | train | evaluate | demo |
experiment | limited-data | infer``, in the vocabulary of :mod:`chiral_tasks.common.cli`."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from chiral_jax.skeletons import SKELETONS
from chiral_tasks.common.cli import (
    UsageError,
    add_command,
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
    generate_if_missing,
    positive_float,
    positive_int,
    probability,
    rate,
    seeds_of,
    train_record,
    variants_of,
)
from chiral_tasks.common.compare import TRAINED
from chiral_tasks.common.files import refuse_existing
from chiral_tasks.common.results import read_results, write_results
from chiral_tasks.common.run import (
    RUN_FILE,
    check_output,
    environment,
    fingerprint,
    open_run,
    read_run_config,
)
from chiral_tasks.lifting import experiments
from chiral_tasks.lifting.animation import FORMATS, animate_lifting, check_writer
from chiral_tasks.lifting.cameras import load_cameras_json
from chiral_tasks.lifting.data import camera_sequences, default_split, load_dataset
from chiral_tasks.lifting.dataset import LiftingDataset
from chiral_tasks.lifting.evaluate import evaluate
from chiral_tasks.lifting.infer import load_lifter, model_folder, read_and_lift, write_lifted
from chiral_tasks.lifting.keypoints import SUFFIXES
from chiral_tasks.lifting.synth import DETECTOR, SynthConfig, write_dataset
from chiral_tasks.lifting.train import ARCHS, LENGTH_KEYS, ModelConfig, defaults, load_model
from chiral_tasks.lifting.videopose3d import convert_videopose3d

TASK = "lifting"
OURS = ("h36m.npz", "humaneva15.npz")
"""Our dataset files, looked for in a ``--data`` folder."""


# -- arguments ---------------------------------------------------------------------------


def _add_dataset_args(parser: argparse.ArgumentParser, *, generated: bool = False) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument(
        "--data",
        default=default_data(TASK),
        help="a folder holding our h36m.npz (or humaneva15.npz), our .npz itself, or "
        "VideoPose3D's data_3d_<ds>.npz together with --data-2d and --cameras"
        + ("; the default folder is generated when missing" if generated else ""),
    )
    group.add_argument("--data-2d", help="VideoPose3D's data_2d_<ds>_<detector>.npz")
    group.add_argument("--cameras", help="cameras JSON for VideoPose3D files (see docs)")
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="trust and load VideoPose3D's pickled .npz files (loading runs code in the file)",
    )


def _add_split_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("split")
    group.add_argument("--train-subjects", nargs="+", help="default: the protocol's")
    group.add_argument("--test-subjects", nargs="+", help="default: the protocol's")


def _add_model_args(parser: argparse.ArgumentParser, *, one_model: bool) -> None:
    """The model options; ``--even-activation`` only for one model (an experiment's
    models set their own)."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--arch",
        choices=ARCHS,
        default="temporal",
        help="temporal: VideoPose3D's temporal conv net; transformer: a spatial-temporal "
        "transformer (MixSTE-style, sequence to sequence)",
    )
    group.add_argument(
        "--filter-widths",
        type=positive_int,
        nargs="+",
        help="conv net: kernel widths (quick: 3 3 3 = 27 frames; --paper: 3 3 3 3 3 = 243)",
    )
    group.add_argument(
        "--channels",
        type=positive_int,
        help="conv net: hidden width (quick 128, --paper 1024; chiral: rounded down to a "
        "multiple of J); transformer: channels per token (quick 32, --paper 512)",
    )
    group.add_argument("--dropout", type=rate, help="dropout rate (conv 0.25, transformer 0.1)")
    group.add_argument("--causal", action="store_true", help="conv net: causal (real-time)")
    if one_model:
        add_even_activation_arg(group, channels="conv net's hidden channels")
    group.add_argument(
        "--frames", type=positive_int, help="transformer: clip length (quick 27, --paper 243)"
    )
    group.add_argument(
        "--depth",
        type=positive_int,
        help="transformer: pairs of spatial and temporal blocks (quick 2, --paper 8)",
    )
    group.add_argument(
        "--heads", type=positive_int, help="transformer: attention heads (quick 4, --paper 8)"
    )
    group.add_argument(
        "--impl",
        choices=("auto", "dense", "even_odd"),
        help="chiral: the form the model runs in (auto: by width; dense: assembled kernels "
        "on joint-basis activations; even_odd: two half-size convs per layer; same function)",
    )


_ARCH_OPTIONS = {
    "temporal": ("filter_widths", "causal", "impl", "even_activation"),
    "transformer": ("frames", "depth", "heads"),
}
"""The model options that only one architecture has."""


def _model_config(args: argparse.Namespace, *, chiral: bool = True) -> ModelConfig:
    base, _ = defaults(args.arch, args.paper)
    for arch, options in _ARCH_OPTIONS.items():
        given = [o for o in options if getattr(args, o, None) not in (None, False)]
        if arch != args.arch and given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} is an option of --arch {arch}, not {args.arch}")
    overrides = {
        "filter_widths": args.filter_widths,
        "channels": args.channels,
        "dropout": args.dropout,
        "causal": args.causal or None,
        "impl": args.impl,
        "even_activation": getattr(args, "even_activation", None),
        "frames": args.frames,
        "depth": args.depth,
        "heads": args.heads,
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    config = dataclasses.replace(base, chiral=chiral, **changes)
    if any(w % 2 == 0 for w in config.filter_widths):
        raise UsageError(f"--filter-widths must be odd, got {list(config.filter_widths)}")
    if config.arch == "transformer" and config.channels % config.heads:
        raise UsageError(
            f"--channels {config.channels} must split evenly into --heads {config.heads}"
        )
    return config


def _train_config(args: argparse.Namespace):
    """The training settings: the architecture's quick or ``--paper`` ones, overridden."""
    return config_from_args(args, defaults(args.arch, False)[1], defaults(args.arch, True)[1])


def _checked_model(config: ModelConfig, dataset: LiftingDataset) -> ModelConfig:
    """``config``, once its width is known to fit ``dataset``'s 2D skeleton (the input)."""
    try:
        config.width(dataset.skeleton_2d)
    except ValueError as err:
        raise UsageError(f"--channels: {err}") from err
    return config


def _dataset(args: argparse.Namespace, *, generate: bool = False):
    """The dataset of ``--data`` (generated first when it is the missing default folder),
    and its record for the run config: the files it was read from and their fingerprint."""
    if generate:
        generate_if_missing(
            args, TASK, lambda f: write_dataset(SynthConfig(), f), "the synthetic Human3.6M dataset"
        )
    path = Path(args.data)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset file or folder")
    if path.is_dir() and args.data_2d is None:
        found = [path / name for name in OURS if (path / name).is_file()]
        if len(found) != 1:
            raise FileNotFoundError(
                f"{path}: expected one of {', '.join(OURS)} in the folder, found "
                f"{[p.name for p in found] or 'none'} (chiral lifting generate writes one)"
            )
        path = found[0]
    dataset = load_dataset(
        path, path_2d=args.data_2d, cameras=args.cameras, allow_pickle=args.allow_pickle
    )
    files = [p for p in (path, args.data_2d, args.cameras) if p is not None]
    record = {"files": [Path(f).name for f in files], "fingerprint": fingerprint(files)}
    return dataset, record


def _split(args: argparse.Namespace, dataset: LiftingDataset):
    train_subjects, test_subjects = default_split(dataset)
    return args.train_subjects or train_subjects, args.test_subjects or test_subjects


def _print_metrics(name: str, result: dict) -> None:
    print(
        f"{name}: MPJPE {result['mpjpe']:.1f} mm, P-MPJPE {result['p_mpjpe']:.1f} mm, "
        f"N-MPJPE {result['n_mpjpe']:.1f} mm, MPJVE {result['mpjve']:.2f} mm"
    )


# -- commands ----------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> None:
    try:
        config = SynthConfig(
            dataset=args.dataset,
            frames=args.frames,
            trials=args.trials,
            seed=args.seed,
            keypoints=args.keypoints,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err
    paths = write_dataset(config, args.out, overwrite=args.overwrite)
    for role, path in paths.items():
        print(f"{role:8s} {path}")


def cmd_convert(args: argparse.Namespace) -> None:
    if not args.overwrite:
        refuse_existing(Path(args.out).parent, [args.out])
    dataset = convert_videopose3d(
        args.data_3d,
        args.data_2d,
        args.out,
        trust_pickle=args.allow_pickle,
        cameras=load_cameras_json(args.cameras),
    )
    frames = sum(r.num_frames for s in dataset.subjects.values() for r in s.recordings.values())
    print(f"wrote {args.out}: {len(dataset.subjects)} subjects, {frames} frames")


def cmd_train(args: argparse.Namespace) -> None:
    model_config = _model_config(args, chiral=args.model == "chiral")  # options first
    dataset, data = _dataset(args)
    train_subjects, test_subjects = _split(args, dataset)
    model_config = _checked_model(model_config, dataset)
    train_config = _train_config(args)
    sequences = camera_sequences(dataset, train_subjects)
    test = camera_sequences(dataset, test_subjects)
    config = {
        "task": TASK,
        "data": data,
        "train_subjects": train_subjects,
        "test_subjects": test_subjects,
        "model": dataclasses.asdict(model_config),
        "train": train_record(train_config),
        "flip": args.flip,
        "tta": args.tta,
        "max_steps": args.max_steps,
    }
    run = open_run(
        args.out, config, resume=args.resume, overwrite=args.overwrite, length_keys=LENGTH_KEYS
    )
    results = run.results
    if results is None:
        trained = experiments.fit(
            run, sequences, dataset.skeleton_2d, dataset.skeleton, model_config, train_config,
            label=args.model, flip=args.flip, max_steps=args.max_steps,
        )  # fmt: skip
        record = {
            "params": trained.model.num_params,
            "history": trained.history,
            "train_seconds": trained.seconds,
            "test": evaluate(trained.model, test, tta=args.tta),
        }
        results = run.finish(record, outputs=["model"])
    else:
        print(f"{run.folder}: finished earlier with these settings; its results:")
    _print_metrics(args.model + (" + flip TTA" if args.tta else ""), results["test"])
    print(
        f"parameters {results['params']:,}, {len(results['history'])} full epochs "
        f"trained in {results['train_seconds']:.0f} s; results in {run.folder / 'results.json'}"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    run_dir = Path(args.run)
    if not run_dir.is_dir() or (run_dir / RUN_FILE).is_file():
        read_run_config(run_dir, TASK)  # names a missing folder or another task's run
    # A folder with a saved model and no run record (save_model's) is evaluated too.
    model_dir = run_dir / "model"
    if not (model_dir / "model.json").is_file():
        raise FileNotFoundError(
            f"{args.run}: no trained model (no model/model.json): train one, or finish "
            "its training (rerun its train command)"
        )
    dataset, data = _dataset(args)
    trained = load_model(model_dir, dataset.skeleton, dataset.skeleton_2d)
    subjects = args.test_subjects or default_split(dataset)[1]
    sequences = camera_sequences(dataset, subjects)
    out = Path(args.out) if args.out else Path(args.run) / "evaluation.json"
    identity = {"run": str(args.run), "data": data, "subjects": subjects, "tta": args.tta}
    check_output(out, identity, overwrite=args.overwrite)
    started = time.perf_counter()
    result = evaluate(trained.model, sequences, tta=args.tta)
    kind = "chiral" if trained.config.chiral else "plain"
    _print_metrics(kind + (" + flip TTA" if args.tta else ""), result)
    print(
        f"parameters {trained.model.num_params:,}, {sequences.num_frames} frames in "
        f"{time.perf_counter() - started:.1f} s"
    )
    seconds = time.perf_counter() - started
    write_results(
        out, {**identity, "test": result, "wall_seconds": seconds, "environment": environment()}
    )
    print(f"wrote {out}")


def _experiment_inputs(args: argparse.Namespace):
    """The options checked first, then the dataset (generated when it is the missing
    default), then the sizes that depend on its skeleton."""
    model_config = _model_config(args)
    train_config = _train_config(args)
    dataset, data = _dataset(args, generate=True)
    return dataset, data, _checked_model(model_config, dataset), train_config


def _compare(args: argparse.Namespace, seeds: list[int]) -> None:
    variants = variants_of(args, TRAINED)
    if args.arch == "transformer" and "chiral_mixed" in variants:
        if args.variants != list(TRAINED):
            raise UsageError("the transformer's chiral model is mixed already: no chiral_mixed")
        variants = tuple(v for v in variants if v != "chiral_mixed")
    dataset, data, model_config, train_config = _experiment_inputs(args)
    results = experiments.compare(
        dataset, model_config, train_config, Path(args.out), seeds, data=data,
        variants=variants, resume=args.resume, overwrite=args.overwrite,
        max_steps=args.max_steps,
    )  # fmt: skip
    print(experiments.format_comparison(results))
    if results["max_chiral_tta_difference"] is not None:
        print(
            f"MPJPE of chiral + flip TTA differs from chiral's by at most "
            f"{results['max_chiral_tta_difference']:.2e} mm (exact equivariance)"
        )
    print(f"results in {Path(args.out) / 'results.json'}; figures lifting_pose.png and "
          "learning_curves.png there")  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> None:
    _compare(args, seeds_of(args))


def cmd_experiment(args: argparse.Namespace) -> None:
    _compare(args, seeds_of(args))


def cmd_limited(args: argparse.Namespace) -> None:
    dataset, data, model_config, train_config = _experiment_inputs(args)
    results = experiments.limited_data(
        dataset, model_config, train_config, Path(args.out), data=data,
        resume=args.resume, overwrite=args.overwrite, max_steps=args.max_steps,
    )  # fmt: skip
    print(experiments.format_limited(results))
    print(f"results in {Path(args.out) / 'results.json'}, figure {args.out}/limited_data.png")


def cmd_infer(args: argparse.Namespace) -> None:
    if not Path(args.keypoints).is_file():
        raise FileNotFoundError(f"{args.keypoints}: no such keypoints file")
    if args.animation != "none":
        check_writer(args.animation)
    skeleton = SKELETONS[args.input_skeleton] if args.input_skeleton else None
    lifter = load_lifter(
        args.model, input_skeleton=skeleton, causal=args.causal, allow_pickle=args.allow_pickle
    )
    tta = args.tta and not lifter.chiral
    if args.tta and lifter.chiral:
        print("--tta skipped: a chiral model is equivariant, flip averaging gives its own poses")
    out = Path(args.out)
    model_files = model_folder(args.model) or Path(args.model)
    options = {
        "threshold": args.threshold, "width": args.width, "height": args.height, "tta": tta,
        "person": args.person, "video": args.video, "input_skeleton": args.input_skeleton,
        "causal": args.causal,
    }  # fmt: skip
    identity = {
        "keypoints": {"file": str(args.keypoints), **fingerprint([args.keypoints])},
        "model": {"path": str(args.model), **fingerprint([model_files])},
        "options": options,
    }
    record_path = out / "inference.json"
    check_output(record_path, identity, overwrite=args.overwrite)
    animation = out / f"animation.{args.animation}" if args.animation != "none" else None
    outputs = [out / "poses_3d.npz", out / "poses_3d.json", animation]
    drawn = {"file": animation.name, "fps": args.fps} if animation is not None else None
    if not (args.overwrite or record_path.exists()):
        refuse_existing(out, [p for p in outputs if p is not None])
    elif not args.overwrite and _lifted_before(record_path, outputs, drawn):
        print(f"{out}: lifted earlier from these inputs; its files are there: " + ", ".join(
            p.name for p in [*outputs, record_path] if p is not None
        ))  # fmt: skip
        return
    started = time.perf_counter()
    lifted = read_and_lift(
        lifter, args.keypoints, allow_pickle=args.allow_pickle, person=args.person,
        video=args.video, threshold=args.threshold, width=args.width, height=args.height,
        tta=tta,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    paths = write_lifted(out, lifted, lifter.skeleton_3d)
    report = lifted.report
    frames, missing = report["frames"], report["missing_frames"]
    print(f"lifted {frames} frames with the {lifter.description} in {seconds:.1f} s")
    print(
        f"no person in {len(missing)} of {frames} frames"
        + (f" ({_frame_list(missing)}: interpolated)" if missing else "")
        + f"; {report['filled_joints']} joints interpolated in all (score below "
        f"{args.threshold} or no person)"
    )
    if animation is not None:
        animate_lifting(
            animation, lifted.keypoints.xy, lifter.skeleton_2d, lifted.poses_3d,
            lifter.skeleton_3d, title=lifter.description, fps=args.fps, interpolated=missing,
            progress=not args.no_progress,
        )  # fmt: skip
        paths["animation"] = animation
    files = {k: p.name for k, p in paths.items()}
    record = {**identity, "report": report, "files": files, "animation": drawn,
              "wall_seconds": seconds, "environment": environment()}  # fmt: skip
    write_results(record_path, record)
    print("wrote " + ", ".join(str(p) for p in [*paths.values(), record_path]))


def _lifted_before(record_path: Path, outputs: list[Path | None], drawn: dict | None) -> bool:
    """Whether ``record_path`` (already checked to be of the same inputs) records a
    finished run of this command: every requested output there, the animation (if one
    is asked for) drawn with the same settings."""
    try:
        record = read_results(record_path)
    except (OSError, ValueError):
        return False
    if drawn is not None and record.get("animation") != drawn:
        return False
    return all(p.is_file() for p in outputs if p is not None)


def _frame_list(frames: list[int], shown: int = 8) -> str:
    """``frames 3, 4, 9`` (the first ``shown``, then how many more)."""
    more = f" and {len(frames) - shown} more" if len(frames) > shown else ""
    return "frames " + ", ".join(str(f) for f in frames[:shown]) + more


# -- registration ------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the lifting commands to ``chiral lifting``."""
    p = add_command(
        subparsers, "generate", cmd_generate,
        "write a synthetic Human3.6M (or HumanEva-I) dataset in VideoPose3D's files and ours",
    )  # fmt: skip
    p.add_argument("--out", default=default_data(TASK), help="output folder")
    p.add_argument("--dataset", choices=["h36m", "humaneva15"], default="h36m")
    p.add_argument(
        "--frames", type=positive_int, default=SynthConfig.frames, help="frames per sequence"
    )
    p.add_argument(
        "--trials", type=positive_int, default=SynthConfig.trials, help="sequences per action"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keypoints",
        choices=["h36m", "coco"],
        default=SynthConfig.keypoints,
        help="the 2D views' joints: h36m (the 3D skeleton's) or coco (COCO-17, as "
        "Detectron's detections; --dataset h36m only)",
    )
    add_overwrite_arg(p)

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
    add_overwrite_arg(p)

    p = add_command(subparsers, "train", cmd_train, "train one lifting model and test it")
    _add_dataset_args(p)
    _add_split_args(p)
    add_model_choice(p)
    _add_model_args(p, one_model=True)
    add_flip_arg(p)
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    add_run_args(p, TASK, "train")
    add_train_args(p)

    p = add_command(
        subparsers, "evaluate", cmd_evaluate,
        "score a trained run (--run: the folder train wrote) on any lifting dataset",
    )  # fmt: skip
    p.add_argument("--run", required=True, help="the run folder written by train")
    _add_dataset_args(p)
    p.add_argument("--test-subjects", nargs="+", help="default: the protocol's")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--out", help="results JSON to write (default: <run>/evaluation.json)")
    add_overwrite_arg(p)

    for name, func, help_text in (
        ("demo", cmd_demo, "generate data if missing, train chiral and plain, compare them"),
        ("experiment", cmd_experiment, "chiral vs plain vs plain+TTA over several seeds"),
        ("limited-data", cmd_limited,
         "chiral vs plain on S1 10%%/50%%/100%%, S1+S5, S1+S5+S6 (the paper's Fig. 4)"),
    ):  # fmt: skip
        p = add_command(subparsers, name, func, help_text)
        _add_dataset_args(p, generated=True)
        _add_model_args(p, one_model=False)
        if name == "experiment":
            add_seeds_arg(p)
        if name != "limited-data":
            add_variants_arg(p, TRAINED)
        add_run_args(p, TASK, name)
        add_train_args(p)

    p = add_command(
        subparsers, "infer", cmd_infer,
        "lift one person's 2D keypoints (a detector's COCO JSON, VideoPose3D custom .npz, "
        ".npy or CSV) to 3D poses, with an animation",
    )  # fmt: skip
    p.add_argument("--keypoints", required=True, help=f"the keypoints file ({', '.join(SUFFIXES)})")
    p.add_argument(
        "--model",
        required=True,
        help="a run folder from train (or its model/ folder), or a VideoPose3D checkpoint "
        "(.bin; with --allow-pickle and --input-skeleton)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="trust pickled inputs: a VideoPose3D checkpoint (read by a restricted unpickler) "
        "or custom .npz",
    )
    p.add_argument(
        "--input-skeleton",
        choices=["h36m", "coco"],
        help="a checkpoint's 2D input joints: coco (pretrained_h36m_detectron_coco.bin) or "
        "h36m (pretrained_h36m_cpn.bin)",
    )
    p.add_argument("--causal", action="store_true", help="the checkpoint is a causal model")
    p.add_argument("--width", type=positive_int, help="image width in pixels (else the file's)")
    p.add_argument("--height", type=positive_int, help="image height in pixels (else the file's)")
    p.add_argument(
        "--threshold",
        type=probability,
        default=0.3,
        help="joints scored below it are interpolated over time",
    )
    p.add_argument(
        "--person", help="the track id to keep (COCO JSON with track_id/idx); default: the "
        "best-scoring person of each frame",
    )  # fmt: skip
    p.add_argument("--video", help="the video to read from a custom .npz holding several")
    p.add_argument("--tta", action="store_true", help="flip test-time averaging (plain models)")
    p.add_argument(
        "--animation", choices=[*FORMATS, "none"], default="gif", help="the animation to write"
    )
    p.add_argument("--fps", type=positive_float, default=25.0, help="animation frame rate")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_overwrite_arg(p)
