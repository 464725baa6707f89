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

Multi-host runs: :func:`add_train_args` includes the options of
:func:`add_distributed_args` (``--coordinator``, ``--num-processes``,
``--process-id``), and :func:`config_from_args` joins the run they describe through
:func:`maybe_initialize`, which must come before any other JAX call; the ``chiral``
entry point may call it earlier, a second call is a no-op.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable

from chiral_tasks.common import distributed
from chiral_tasks.common.train import TrainConfig

Command = Callable[[argparse.Namespace], int | None]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one to show: not for unset options (None),
    flags (False) or help texts that already state their default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_command(
    subparsers: argparse._SubParsersAction, name: str, func: Command, help: str
) -> argparse.ArgumentParser:
    """Add the command ``name`` running ``func(args)``; return its parser for arguments."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=_HelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def add_train_args(parser: argparse.ArgumentParser, *, out: str = "runs") -> None:
    """Training options; unset ones keep the task's quick (or ``--paper``) defaults.

    Includes the multi-host options of :func:`add_distributed_args`.
    """
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
    group.add_argument(
        "--compute-dtype",
        choices=("float32", "bfloat16", "float16"),
        help="mixed precision: compute in this dtype, keep float32 parameters",
    )
    add_distributed_args(parser)


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

    Checkpoints go to ``<out>/checkpoints``. With ``--coordinator`` this process
    first joins the multi-process run (:func:`maybe_initialize`).
    """
    if hasattr(args, "coordinator"):
        maybe_initialize(args)
    if args.paper and paper is None:
        raise SystemExit("this command has no --paper configuration")
    base = paper if args.paper else quick
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "compute_dtype": getattr(args, "compute_dtype", None),
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    changes["checkpoint_dir"] = os.path.join(args.out, "checkpoints")
    changes["progress"] = base.progress and not args.no_progress
    return dataclasses.replace(base, **changes)


ENV_COORDINATOR = "CHIRAL_COORDINATOR"
ENV_NUM_PROCESSES = "CHIRAL_NUM_PROCESSES"
ENV_PROCESS_ID = "CHIRAL_PROCESS_ID"


def add_distributed_args(parser: argparse.ArgumentParser) -> None:
    """Multi-host options; each defaults to its ``CHIRAL_*`` environment variable."""
    group = parser.add_argument_group(
        "distributed", "run as one of several processes (one per host); omit for one host"
    )
    group.add_argument(
        "--coordinator",
        default=os.environ.get(ENV_COORDINATOR),
        metavar="HOST:PORT",
        help=f"address of process 0, the same for every process (env {ENV_COORDINATOR})",
    )
    group.add_argument(
        "--num-processes",
        type=int,
        default=os.environ.get(ENV_NUM_PROCESSES),
        help=f"number of processes in the run (env {ENV_NUM_PROCESSES})",
    )
    group.add_argument(
        "--process-id",
        type=int,
        default=os.environ.get(ENV_PROCESS_ID),
        help=f"this process's index, 0 .. num-processes - 1 (env {ENV_PROCESS_ID})",
    )


def maybe_initialize(args: argparse.Namespace) -> bool:
    """Join the multi-process run the arguments describe; return whether there is one.

    Without ``--coordinator`` this does nothing (a single-process run on all local
    devices). With it, ``--num-processes`` and ``--process-id`` are required.
    """
    if args.coordinator is None:
        if args.num_processes is not None or args.process_id is not None:
            raise SystemExit("--num-processes and --process-id need --coordinator")
        return False
    if args.num_processes is None or args.process_id is None:
        raise SystemExit("--coordinator needs --num-processes and --process-id")
    try:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    return True
