"""``chiral forecasting generate|train|evaluate|demo|experiment``.

- ``generate``: write procedural Penn Action label files (``NNNN.mat``).
- ``train``: train one forecaster on a labels folder, then score it on the test split.
- ``evaluate``: score a trained run on a labels folder (optionally with test-time flip).
- ``experiment``: the paper's Table 3 over several seeds: plain without and with
  flip augmentation, plain with augmentation plus test-time flip, chiral; prints
  the mean +- std table and writes results JSON, a PCK plot and an animated GIF.
- ``demo``: a small ``experiment`` on freshly generated data (one seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from chiral_tasks.common.cli import add_command, add_train_args, config_from_args
from chiral_tasks.common.results import format_table, mean_std_over_seeds, read_results, write_results
from chiral_tasks.forecasting import plots, synth
from chiral_tasks.forecasting import train as fc
from chiral_tasks.forecasting.penn import PENN_ACTIONS

ROWS = {
    "plain": "plain w/o aug",
    "plain_aug": "plain w/ aug",
    "plain_aug_tta": "plain w/ aug + TTA",
    "chiral": "chiral",
}
"""Result rows: key -> label (Table 3 of the paper)."""
TABLE_STEPS = (1, 2, 4, 8, 12, 16)


# -- shared options -------------------------------------------------------------------


def _add_data_dir(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--data-dir",
        required=required,
        help="Penn Action labels folder (NNNN.mat files), real or generated"
        + ("" if required else "; generated into <out>/data when not given"),
    )
    parser.add_argument(
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
        type=int,
        help=f"LSTM width, a multiple of 13 (default {fc.QUICK_MODEL.hidden}; "
        f"--paper: {fc.PAPER_MODEL.hidden})",
    )
    group.add_argument("--dropout", type=float, help="dropout between the stacked LSTMs")


def _add_synth_args(parser: argparse.ArgumentParser, default_videos: int) -> None:
    group = parser.add_argument_group("generated data")
    group.add_argument("--num-videos", type=int, default=default_videos, help="videos to write")
    group.add_argument("--min-frames", type=int, default=synth.SynthConfig.min_frames)
    group.add_argument("--max-frames", type=int, default=synth.SynthConfig.max_frames)
    group.add_argument("--data-seed", type=int, default=0, help="seed of the generated data")


def _model_config(args, chiral: bool) -> fc.ForecasterConfig:
    base = fc.PAPER_MODEL if args.paper else fc.QUICK_MODEL
    changes = {"chiral": chiral}
    if args.hidden is not None:
        changes["hidden"] = args.hidden
    if args.dropout is not None:
        changes["dropout"] = args.dropout
    return dataclasses.replace(base, **changes)


def _train_config(args, out: Path, seed: int | None = None) -> fc.TrainConfig:
    config = config_from_args(args, fc.QUICK, fc.PAPER)
    changes = {"checkpoint_dir": str(out / "checkpoints")}
    if seed is not None:
        changes["seed"] = seed
    return fc.with_schedule(dataclasses.replace(config, **changes))


def _synth_config(args) -> synth.SynthConfig:
    return synth.SynthConfig(
        num_videos=args.num_videos,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        seed=args.data_seed,
    )


def _print_json(results: dict) -> None:
    print(json.dumps({k: results[k] for k in ("pck_avg", "pck")}, indent=None))


# -- commands -------------------------------------------------------------------------


def cmd_generate(args) -> None:
    paths = synth.generate(args.out, _synth_config(args), progress=not args.no_progress)
    print(f"wrote {len(paths)} label files to {args.out}")


def cmd_train(args) -> None:
    out = Path(args.out)
    train, test = fc.load_samples(args.data_dir, args.observed)
    model_config = _model_config(args, chiral=args.model == "chiral")
    config = _train_config(args, out)
    model, history = fc.train_model(
        train, model_config, config, augment=args.augment, resume=args.resume,
        max_steps=args.max_steps, out=out,
    )  # fmt: skip
    results = {"data_dir": str(args.data_dir), "history": history, **fc.evaluate(model, test)}
    write_results(out / "results.json", results)
    _print_json(results)


def cmd_evaluate(args) -> None:
    model, _ = fc.load_run(args.run)
    _, test = fc.load_samples(args.data_dir, args.observed)
    results = {"data_dir": str(args.data_dir), "tta": args.tta}
    results.update(fc.evaluate(model, test, tta=args.tta))
    out = Path(args.out) if args.out else Path(args.run) / "evaluation.json"
    write_results(out, results)
    _print_json(results)
    print(f"wrote {out}")


def _flat(results: dict) -> dict:
    out = {f"step_{s + 1}": v for s, v in enumerate(results["pck"])}
    out["avg"] = results["pck_avg"]
    return out


def _run_variants(args, data_dir: Path, out: Path, seed: int, train, test) -> dict:
    """Train (or reuse) the variants of one seed; return ``{row: results}``."""
    rows = {}
    for variant, (chiral, augment) in fc.VARIANTS.items():
        run = out / f"seed{seed}" / variant
        if (run / "results.json").is_file():
            print(f"seed {seed} {variant}: reusing {run / 'results.json'}")
            saved = read_results(run / "results.json")
        else:
            print(f"seed {seed} {variant}: training into {run}", flush=True)
            model, history = fc.train_model(
                train, _model_config(args, chiral), _train_config(args, run, seed),
                augment=augment, resume=args.resume and fc.run_dir_has_checkpoint(run),
                max_steps=args.max_steps, out=run,
            )  # fmt: skip
            saved = {"data_dir": str(data_dir), "history": history, **fc.evaluate(model, test)}
            if variant == "plain_aug":
                saved["tta"] = fc.evaluate(model, test, tta=True)
            write_results(run / "results.json", saved)
        rows[variant] = {"pck": saved["pck"], "pck_avg": saved["pck_avg"]}
        if variant == "plain_aug":
            rows["plain_aug_tta"] = saved["tta"]
    return {row: rows[row] for row in ROWS}


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


def _gif(args, out: Path, seed: int, test) -> Path:
    """Animate the chiral and augmented plain forecasts of one lively test sample."""
    models = {ROWS[v]: fc.load_run(out / f"seed{seed}" / v)[0] for v in ("chiral", "plain_aug")}
    motion = np.linalg.norm(test.future[:, -1] - test.observed[:, -1], axis=-1).mean(-1)
    index = int(np.argsort(motion)[int(0.9 * (len(motion) - 1))])
    sample = fc.ForecastSamples(
        *(getattr(test, f.name)[index : index + 1] for f in dataclasses.fields(test))
    )
    forecasts = {name: fc.forecast(m, sample)[0] for name, m in models.items()}
    path = out / "forecast.gif"
    plots.animate_forecast(
        path, sample.observed[0], sample.future[0], forecasts, sample.future_visible[0],
        title=PENN_ACTIONS[int(sample.action[0])],
    )  # fmt: skip
    return path


def run_experiment(args, seeds) -> dict:
    """Every variant for every seed; writes ``<out>/results.json``, PNG and GIF."""
    out = Path(args.out)
    if args.data_dir is None:
        data_dir = out / "data"
        if not any(data_dir.glob("*.mat")):
            print(f"generating {args.num_videos} videos into {data_dir}", flush=True)
            synth.generate(data_dir, _synth_config(args), progress=not args.no_progress)
    else:
        data_dir = Path(args.data_dir)
    train, test = fc.load_samples(data_dir, args.observed)
    print(f"{len(train)} train and {len(test)} test samples from {data_dir}", flush=True)
    runs = {str(seed): _run_variants(args, data_dir, out, seed, train, test) for seed in seeds}
    summary = mean_std_over_seeds(
        [{row: _flat(r) for row, r in runs[str(s)].items()} for s in seeds]
    )
    seed0 = str(seeds[0])
    results = {
        "task": "forecasting",
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
        "data_dir": str(data_dir),
        "generated": args.data_dir is None,
        "samples": {"train": len(train), "test": len(test)},
        "model": dataclasses.asdict(_model_config(args, chiral=True)),
        "train": dataclasses.asdict(_train_config(args, out / "seedN" / "variant", seeds[0])),
        "seeds": list(seeds),
        "rows": ROWS,
        "runs": runs,
        "summary": summary,
    }
    write_results(out / "results.json", results)
    curves = {
        ROWS[row]: (
            np.array([summary[row][f"step_{s + 1}"]["mean"] for s in range(len(r["pck"]))]),
            None,
        )
        for row, r in runs[seed0].items()
    }
    plots.plot_pck(out / "pck.png", curves)
    gif = _gif(args, out, seeds[0], test)
    print(_table(summary))
    print(f"wrote {out / 'results.json'}, {out / 'pck.png'} and {gif}")
    return results


def cmd_experiment(args) -> None:
    run_experiment(args, args.seeds)


def cmd_demo(args) -> None:
    run_experiment(args, [0 if args.seed is None else args.seed])


# -- registration ---------------------------------------------------------------------


def register(subparsers) -> None:
    """Add the forecasting commands to ``chiral forecasting``."""
    p = add_command(subparsers, "generate", cmd_generate, "write procedural Penn Action labels")
    p.add_argument("--out", default="data/penn_synth", help="folder for the NNNN.mat files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_synth_args(p, synth.SynthConfig.num_videos)

    p = add_command(subparsers, "train", cmd_train, "train one forecaster and score it")
    _add_data_dir(p, required=True)
    p.add_argument("--model", choices=("chiral", "plain"), default="chiral")
    p.add_argument("--augment", action="store_true", help="random flips in training")
    _add_model_args(p)
    add_train_args(p, out="runs/forecasting/train")

    p = add_command(subparsers, "evaluate", cmd_evaluate, "score a trained run (PCK@0.05)")
    p.add_argument("--run", required=True, help="the run folder written by train")
    _add_data_dir(p, required=True)
    p.add_argument("--tta", action="store_true", help="average with the mirrored forecast")
    p.add_argument("--out", help="results file (default: <run>/evaluation.json)")

    for name, func, help, videos, out in (
        ("experiment", cmd_experiment, "Table 3 over seeds: plain, plain+aug, +TTA, chiral",
         synth.SynthConfig.num_videos, "runs/forecasting/experiment"),
        ("demo", cmd_demo, "generate data, train plain and chiral (CPU-sized), compare",
         150, "runs/forecasting/demo"),
    ):  # fmt: skip
        p = add_command(subparsers, name, func, help)
        _add_data_dir(p, required=False)
        if name == "experiment":
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        _add_model_args(p)
        _add_synth_args(p, videos)
        add_train_args(p, out=out)
