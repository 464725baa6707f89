"""The ``chiral`` command: ``chiral <task> <command> [options]``.

Tasks are imported only when needed: ``chiral lifting ...`` imports just the lifting
task's ``cli`` module. A task whose module cannot be imported is listed as
unavailable, with the import error, instead of breaking the other tasks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from chiral_tasks.common.cli import maybe_initialize

TASKS = {
    "lifting": ("chiral_tasks.lifting.cli", "2D-to-3D pose lifting (Human3.6M, HumanEva)"),
    "forecasting": ("chiral_tasks.forecasting.cli", "2D pose forecasting (Penn Action)"),
    "recognition": ("chiral_tasks.recognition.cli", "skeleton action recognition (Kinetics)"),
}


def load_task(name: str) -> Callable[[argparse._SubParsersAction], None] | str:
    """The ``register`` function of task ``name``, or why it cannot be loaded."""
    module_name = TASKS[name][0]
    try:
        return importlib.import_module(module_name).register
    except (ImportError, AttributeError) as err:
        return f"task {name!r} is unavailable ({module_name}): {type(err).__name__}: {err}"


def build_parser(tasks: Sequence[str] = tuple(TASKS)) -> argparse.ArgumentParser:
    """The argument parser, with the commands of ``tasks`` registered."""
    parser = argparse.ArgumentParser(
        prog="chiral",
        description="Chirality-equivariant pose networks: train, evaluate and demo the tasks.",
    )
    subparsers = parser.add_subparsers(dest="task", metavar="<task>", required=True)
    for name in tasks:
        summary = TASKS[name][1]
        register = load_task(name)
        if isinstance(register, str):
            subparsers.add_parser(name, help=f"{summary} [{register}]")
            continue
        task = subparsers.add_parser(name, help=summary, description=summary)
        register(task.add_subparsers(dest="command", metavar="<command>", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = [argv[0]] if argv and argv[0] in TASKS else list(TASKS)
    parser = build_parser(chosen)
    if len(chosen) == 1 and isinstance(problem := load_task(chosen[0]), str):
        parser.error(problem)
    args = parser.parse_args(argv)
    if getattr(args, "coordinator", None):
        # Multi-host setup must precede every other JAX call (data loading included).
        maybe_initialize(args)
    status = args.func(args)
    return 0 if status is None else int(status)
