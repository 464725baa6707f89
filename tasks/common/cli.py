"""Command-line helpers shared by the tasks' ``chiral <task> <command>`` commands.

A task's ``cli`` module exposes ``register(subparsers)``, which adds its commands
with :func:`add_command`; each command's function receives the parsed arguments
and returns an exit status (``None`` counts as 0).

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_train_args(parser)
>>> args = parser.parse_args(["--epochs", "3", "--out", "runs/x"])
>>> config_from_args(args, TrainConfig(epochs=10, lr=1e-3)).epochs
3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable

from tasks.common.train import TrainConfig

Command = Callable[[argparse.Namespace], int | None]


def add_command(
    subparsers: argparse._SubParsersAction, name: str, func: Command, help: str
) -> argparse.ArgumentParser:
    """Add the command ``name`` running ``func(args)``; return its parser for arguments."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def add_train_args(parser: argparse.ArgumentParser, *, out: str = "runs") -> None:
    """Training options; unset ones keep the task's quick (or ``--paper``) defaults."""
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, help="training epochs (default: the task's)")
    group.add_argument("--batch-size", type=int, help="samples per step (default: the task's)")
    group.add_argument("--lr", type=float, help="initial learning rate (default: the task's)")
    group.add_argument("--seed", type=int, help="random seed (default: the task's)")
    group.add_argument("--out", default=out, help="output folder for results and checkpoints")
    group.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --out"
    )
    group.add_argument("--checkpoint-every", type=int, help="also checkpoint every this many steps")
    group.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group.add_argument(
        "--paper", action="store_true", help="use the paper's full-size model and schedule"
    )


def add_data_args(parser: argparse.ArgumentParser, *, data_dir: str | None = None) -> None:
    """Dataset options: where the files are and whether pickled files may be loaded."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        default=data_dir,
        required=data_dir is None,
        help="folder holding the dataset files",
    )
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="trust and load pickled .npz files (loading runs code stored in the file)",
    )


def config_from_args(
    args: argparse.Namespace, quick: TrainConfig, paper: TrainConfig | None = None
) -> TrainConfig:
    """The run's TrainConfig: ``paper`` under ``--paper`` else ``quick``, with CLI overrides.

    Checkpoints go to ``<out>/checkpoints``.
    """
    if args.paper and paper is None:
        raise SystemExit("this command has no --paper configuration")
    base = paper if args.paper else quick
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    changes["checkpoint_dir"] = os.path.join(args.out, "checkpoints")
    changes["progress"] = base.progress and not args.no_progress
    return dataclasses.replace(base, **changes)
