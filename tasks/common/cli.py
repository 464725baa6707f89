"""Command-line helpers shared by the tasks' ``chiral <task> <command>`` commands.

Every task speaks one vocabulary, built here:

* ``--data PATH`` (default ``data/<task>``) and ``--allow-pickle``: the dataset;
* ``--out DIR`` (default ``runs/<task>/<command>``), ``--resume``, ``--overwrite``: the
  run folder and its rerun rule (:mod:`chiral_tasks.common.run`);
* ``--model chiral|plain`` for ``train``; ``--run DIR`` for ``evaluate``;
* the training options of :func:`add_train_args` (``--epochs``, ``--paper``, ...).

A task's ``cli`` module exposes ``register(subparsers)``, which adds its commands
with :func:`add_command`; each command's function receives the parsed arguments
and returns an exit status (``None`` counts as 0). A value that cannot work raises
:class:`UsageError` (exit status 2); the ``chiral`` entry point prints every error as
one line.

>>> parser = ArgumentParser()
>>> add_train_args(parser)
>>> args = parser.parse_args(["--epochs", "3"])
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chiral_tasks.common import distributed
from chiral_tasks.common.train import TrainConfig

Command = Callable[[argparse.Namespace], int | None]


class UsageError(ValueError):
    """A command-line value that cannot work; ``chiral`` exits with status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors raise :class:`UsageError` instead of exiting,
    so the entry point reports them as one line. Options must be spelled out in full:
    an abbreviation (``--epoch`` for ``--epochs``) is an error, not a guess."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(message)


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


# -- value types: checked when parsed, so a bad value never starts a run -----------------


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def rate(text: str) -> float:
    """A dropout rate: 0 <= value < 1."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {value}")
    return value


def probability(text: str) -> float:
    """A probability: 0 <= value <= 1."""
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


# -- option groups -----------------------------------------------------------------------


def add_data_args(parser: argparse.ArgumentParser, task: str, *, help: str) -> None:
    """``--data`` (default ``data/<task>``) and ``--allow-pickle``."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", default=default_data(task), help=help)
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="trust and load pickled files (loading runs code stored in the file)",
    )


def default_data(task: str) -> str:
    return os.path.join("data", task)


def generate_if_missing(
    args: argparse.Namespace, task: str, generate: Callable[[Path], object], what: str
) -> None:
    """Write the generated dataset into ``--data`` when that is the task's default folder
    and it is missing, so ``demo`` and ``experiment`` run out of the box; a folder the
    user named is never generated into."""
    folder = Path(args.data)
    if args.data == default_data(task) and not folder.exists():
        print(f"generating {what} into {folder} ...", flush=True)
        generate(folder)


def add_run_args(parser: argparse.ArgumentParser, task: str, command: str) -> None:
    """``--out`` (default ``runs/<task>/<command>``), ``--resume``, ``--overwrite``."""
    group = parser.add_argument_group(
        "run folder",
        "the same command again reuses a finished run and resumes an unfinished one; "
        "a run with other settings is refused unless --resume or --overwrite",
    )
    group.add_argument("--out", default=os.path.join("runs", task, command), help="run folder")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out for longer (a higher --max-steps; more --epochs where "
        "the task's schedule allows)",
    )
    group.add_argument(
        "--overwrite", action="store_true", help="delete the run in --out and start afresh"
    )


def add_overwrite_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing files of the same names"
    )


def add_even_activation_arg(group, *, channels: str) -> None:
    """``--even-activation``: the function of a chiral model's ``channels`` that keep their
    sign (tanh stays on the negated ones); default tanh everywhere, as in the paper."""
    from chiral_jax.activations import ACTIVATIONS, ODD_ACTIVATIONS

    group.add_argument(
        "--even-activation",
        choices=sorted(set(ACTIVATIONS) - set(ODD_ACTIVATIONS)),
        help=f"chiral: the function of the {channels} that keep their sign (tanh stays on "
        "the negated ones); default: tanh everywhere, as in the paper",
    )


def add_flip_arg(parser: argparse.ArgumentParser) -> None:
    """``--flip`` / ``--no-flip``: flip augmentation when training one model (on by
    default: each training sample is mirrored with probability 1/2)."""
    parser.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=True,
        help="mirror a random half of the training samples (flip augmentation)",
    )  # fmt: skip


def add_model_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", choices=("chiral", "plain"), default="chiral", help="which network to train"
    )


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Training options; unset ones keep the task's quick (or ``--paper``) defaults.

    Includes the multi-host options of :func:`add_distributed_args`.
    """
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, help="training epochs (default: the task's)")
    group.add_argument(
        "--batch-size", type=positive_int, help="samples per step (default: the task's)"
    )
    group.add_argument(
        "--lr", type=positive_float, help="initial learning rate (default: the task's)"
    )
    group.add_argument("--seed", type=int, help="random seed (default: the task's)")
    group.add_argument(
        "--checkpoint-every", type=positive_int, help="also checkpoint every this many steps"
    )
    group.add_argument(
        "--max-steps", type=positive_int, help="stop after this many steps (smoke runs)"
    )
    group.add_argument(
        "--no-progress", action="store_true", help="no progress bar or per-epoch lines"
    )
    group.add_argument(
        "--paper", action="store_true", help="use the paper's full-size model and schedule"
    )
    group.add_argument(
        "--compute-dtype",
        choices=("float32", "bfloat16", "float16"),
        help="mixed precision: compute in this dtype, keep float32 parameters",
    )
    add_distributed_args(parser)


def config_from_args(
    args: argparse.Namespace, quick: TrainConfig, paper: TrainConfig | None = None
) -> TrainConfig:
    """The run's TrainConfig: ``paper`` under ``--paper`` else ``quick``, with CLI overrides.

    The checkpoint folder is set when the run folder is opened. With ``--coordinator``
    this process first joins the multi-process run (:func:`maybe_initialize`).
    """
    if hasattr(args, "coordinator"):
        maybe_initialize(args)
    if args.paper and paper is None:
        raise UsageError("this command has no --paper configuration")
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
    changes["progress"] = base.progress and not args.no_progress
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as err:
        raise UsageError(str(err)) from err


def add_seeds_arg(parser: argparse.ArgumentParser) -> None:
    """``--seeds`` of an experiment (``demo`` uses ``--seed``)."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])


def add_variants_arg(parser: argparse.ArgumentParser, trained: Sequence[str]) -> None:
    """``--variants`` of an experiment: the models it trains (default all of ``trained``;
    :mod:`chiral_tasks.common.compare` names them)."""
    parser.add_argument(
        "--variants", nargs="+", choices=trained, default=list(trained),
        help="the models to train (plain_tta is the trained plain model with flip TTA)",
    )  # fmt: skip


def variants_of(args: argparse.Namespace, trained: Sequence[str]) -> tuple[str, ...]:
    """The chosen ``--variants`` in table order (a repeated name is an error)."""
    if len(set(args.variants)) != len(args.variants):
        raise UsageError(f"--variants must not repeat, got {args.variants}")
    return tuple(name for name in trained if name in args.variants)


def seeds_of(args: argparse.Namespace) -> list[int]:
    """The seeds of a ``demo`` (``--seed``, default 0) or ``experiment`` (``--seeds``)."""
    if hasattr(args, "seeds"):
        if args.seed is not None:
            raise UsageError("experiment takes --seeds, not --seed")
        if len(set(args.seeds)) != len(args.seeds):
            raise UsageError(f"--seeds must not repeat, got {args.seeds}")
        return list(args.seeds)
    return [0 if args.seed is None else args.seed]


def train_record(config: TrainConfig) -> dict[str, Any]:
    """The settings of ``config`` that a run's results depend on (for its run config)."""
    skip = {"checkpoint_dir", "progress", "keep", "label"}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


def for_run(config: TrainConfig, run, label: str) -> TrainConfig:
    """``config`` checkpointing into the opened ``run``'s folder, labelled for progress."""
    return dataclasses.replace(config, checkpoint_dir=run.checkpoint_dir, label=label)


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
            raise UsageError("--num-processes and --process-id need --coordinator")
        return False
    if args.num_processes is None or args.process_id is None:
        raise UsageError("--coordinator needs --num-processes and --process-id")
    try:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return True
