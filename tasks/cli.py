"""The ``chiral`` command: ``chiral <task> <command> [options]``.

Tasks are imported only when needed: ``chiral lifting ...`` imports just the lifting
task's ``cli`` module. A task whose module cannot be imported is listed as
unavailable, with the import error, instead of breaking the other tasks.

Errors are one line on stderr, ``chiral: error: <what>: <problem>``, with exit status 2
for a bad command line and 1 for anything else (data, run folder, training); the
traceback only with ``--debug``. SIGTERM is handled like Ctrl-C: training saves a
checkpoint, and the message names it; the same command resumes. Compiled steps are
cached between runs (:mod:`chiral_tasks.common.compile_cache`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence

TASKS = {
    "lifting": ("chiral_tasks.lifting.cli", "2D-to-3D pose lifting (Human3.6M, HumanEva)"),
    "forecasting": ("chiral_tasks.forecasting.cli", "2D pose forecasting (Penn Action)"),
    "recognition": ("chiral_tasks.recognition.cli", "skeleton action recognition (Kinetics)"),
}

EXTRA_MODULES = {
    "orbax.checkpoint": "orbax-checkpoint",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "PIL": "pillow",
}
"""What the ``tasks`` extra installs (``pip install 'chiral_jax[tasks]'``): module -> package."""


def missing_extra() -> list[str]:
    """The packages of the ``tasks`` extra that are not installed."""
    missing = []
    for module, package in EXTRA_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(package)
    return missing


def load_task(name: str) -> Callable[[argparse._SubParsersAction], None] | str:
    """The ``register`` function of task ``name``, or why it cannot be loaded."""
    module_name = TASKS[name][0]
    try:
        return importlib.import_module(module_name).register
    except (ImportError, AttributeError) as err:
        return f"task {name!r} is unavailable ({module_name}): {type(err).__name__}: {err}"


def build_parser(tasks: Sequence[str] = tuple(TASKS)) -> argparse.ArgumentParser:
    """The argument parser, with the commands of ``tasks`` registered."""
    from chiral_tasks.common.cli import ArgumentParser

    parser = ArgumentParser(
        prog="chiral",
        description="Chirality-equivariant pose networks: train, evaluate and demo the tasks.",
        epilog="Every command also takes --debug: show the traceback of an error.",
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


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"chiral: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if missing := missing_extra():
        print(
            "chiral: error: the tasks need the 'tasks' extra: pip install 'chiral_jax[tasks]' "
            f"(missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return 1
    from chiral_tasks.common import compile_cache
    from chiral_tasks.common.cli import UsageError, maybe_initialize
    from chiral_tasks.common.signals import Terminated, install

    restore_signals = install()
    args = None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            chosen = [argv[0]] if argv and argv[0] in TASKS else list(TASKS)
            parser = build_parser(chosen)
            if len(chosen) == 1 and isinstance(problem := load_task(chosen[0]), str):
                raise UsageError(problem)
            args = parser.parse_args(argv)
            if getattr(args, "coordinator", None):
                # Multi-host setup must precede every other JAX call (data loading included).
                maybe_initialize(args)
            compile_cache.enable()
            status = args.func(args)
        return 0 if status is None else int(status)
    except UsageError as err:
        if debug:
            raise
        print(f"chiral: error: {_one_line(err)} (see --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if debug:
            raise
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        saved = "; ".join(getattr(err, "__notes__", [])) or "no training steps were left unsaved"
        again = (
            "rerun the same command without --overwrite to resume"
            if getattr(args, "overwrite", False)
            else "rerun the same command to resume"
        )
        print(f"chiral: {what}: {saved}; {again}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except Exception as err:
        if debug:
            raise
        known = (ValueError, OSError, RuntimeError, FloatingPointError)
        prefix = "" if isinstance(err, known) else f"internal error: {type(err).__name__}: "
        hint = "" if isinstance(err, known) else " (rerun with --debug for the traceback)"
        print(f"chiral: error: {prefix}{_one_line(err)}{hint}", file=sys.stderr)
        return 1
    finally:
        restore_signals()
