"""The run lifecycle every task shares: one folder per run and one rerun rule.

A run folder holds

* ``run.json``: the run's full config (task, data fingerprint, model, training
  settings) and the environment that started it;
* ``checkpoints/``: the trainer's checkpoints (:class:`~chiral_tasks.common.train.Trainer`);
* the task's outputs (a saved model, figures) and, once finished, ``results.json``:
  the results with the config, the wall time, the environment and a manifest of the
  outputs (path -> SHA-256).

The rerun rule (:func:`open_run`), the same for every task and command:

* an empty or missing folder starts a new run;
* the same config again reuses a finished run (its ``results.json``) and resumes an
  unfinished one from its latest checkpoint;
* another config is refused with one line naming what differs, and nothing in the
  folder changes. ``resume=True`` continues the run when it only grows longer
  (:data:`LENGTH_KEYS`: more epochs, a higher step limit); ``overwrite=True`` deletes
  the run and starts afresh. A folder without ``run.json`` is never deleted. A run
  that stopped before its first checkpoint holds nothing to protect: it restarts with
  the new config.

An experiment (:func:`run_experiment`) is a run folder with one sub-run per cell (a
seed and variant, say), each under the same rule, so a rerun reuses every finished
model and trains only what is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chiral_tasks.common.files import atomic_path
from chiral_tasks.common.results import read_results, to_json, write_results

RUN_FILE = "run.json"
RESULTS_FILE = "results.json"
CHECKPOINTS = "checkpoints"

LENGTH_KEYS = frozenset({"train.epochs", "max_steps", "train.checkpoint_every"})
"""Config keys that ``resume=True`` may change, to longer runs only: they lengthen a run,
not alter what it already did. A task whose schedule depends on the epoch count takes
``train.epochs`` out (``length_keys=``)."""

_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "orbax-checkpoint", "chiral_jax")
_FINGERPRINT_HASH_LIMIT = 1 << 30  # bytes; bigger datasets are identified by size and mtime


class RunConflict(RuntimeError):
    """The output folder holds a different run (or files that are not a run)."""


def environment() -> dict[str, Any]:
    """Python, platform, JAX backend and devices, and the versions of the packages used."""
    import jax

    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    return {
        "versions": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "cpu_count": os.cpu_count(),
    }


def fingerprint(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """The identity of the data files under ``paths`` (files or folders, recursively).

    Files are hashed (SHA-256 over names and contents) when they total at most 1 GiB;
    a bigger dataset is identified by its file names, sizes and modification times,
    so touching it counts as a change.
    """
    files = []  # (path, name relative to the given folder)
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
            files += [(p, str(p.relative_to(path))) for p in found]
        elif path.is_file():
            files.append((path, path.name))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    total = sum(p.stat().st_size for p, _ in files)
    digest = hashlib.sha256()
    exact = total <= _FINGERPRINT_HASH_LIMIT
    for p, name in files:
        digest.update(f"{name}\0{p.stat().st_size}\0".encode())
        if exact:
            digest.update(_sha256(p).encode())
        else:
            digest.update(str(p.stat().st_mtime_ns).encode())
    return {
        "files": len(files),
        "bytes": total,
        ("sha256" if exact else "stat"): digest.hexdigest(),
    }


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (JSON values, so tuples become lists)."""
    out = {}
    for key, value in to_json(config).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (old value, new value)}`` for every flattened key whose value differs."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing)
    }


def _describe(diff: Mapping[str, tuple[Any, Any]], limit: int = 4) -> str:
    parts = [f"{k} was {a!r}, now {b!r}" for k, (a, b) in list(diff.items())[:limit]]
    if len(diff) > limit:
        parts.append(f"{len(diff) - limit} more")
    return "; ".join(parts)


def _has_checkpoint(folder: Path) -> bool:
    checkpoints = folder / CHECKPOINTS
    return checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())


@dataclasses.dataclass(frozen=True)
class Run:
    """An opened run folder (see :func:`open_run`).

    Attributes:
      folder: the run folder.
      config: the run's config (JSON values).
      resume: whether training continues from the folder's checkpoints.
      results: the finished run's results (``results.json``), or ``None`` while the
        run still has work to do.
    """

    folder: Path
    config: dict[str, Any]
    resume: bool
    results: dict[str, Any] | None
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def checkpoint_dir(self) -> str:
        return str(self.folder / CHECKPOINTS)

    @property
    def done(self) -> bool:
        return self.results is not None

    def finish(self, results: Mapping[str, Any], outputs: Sequence[str] = ()) -> dict[str, Any]:
        """Write ``results.json`` (atomically, last): the results, the config, the wall
        time, the environment and the SHA-256 of each of ``outputs`` (paths relative to
        the folder). Returns what was written."""
        record = {
            **results,
            "config": self.config,
            "wall_seconds": time.perf_counter() - self.started,
            "environment": environment(),
            "manifest": {name: _manifest_entry(self.folder / name) for name in outputs},
        }
        write_results(self.folder / RESULTS_FILE, record)
        return to_json(record)


def _manifest_entry(path: Path) -> str | dict[str, str]:
    if path.is_dir():
        return {
            str(p.relative_to(path)): _sha256(p) for p in sorted(path.rglob("*")) if p.is_file()
        }
    return _sha256(path)


def _check_manifest(folder: Path, results: Mapping[str, Any]) -> None:
    for name in results.get("manifest", {}):
        if not (folder / name).exists():
            raise RunConflict(
                f"{folder}: the finished run lacks {name}, listed in its {RESULTS_FILE}; "
                "pass --overwrite to run it again"
            )


def open_run(
    folder: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    length_keys: frozenset[str] = LENGTH_KEYS,
) -> Run:
    """Open ``folder`` for a run of ``config`` under the rerun rule (module docstring).

    Call it after every input has been validated: it is the first step that writes
    (``run.json`` of a new run, or the deletion of a run under ``overwrite``).

    Raises:
      RunConflict: the folder holds another run, or files that are not a run.
    """
    folder = Path(folder)
    config = to_json(dict(config))
    # run.json records the checkpoint format with the config, so that it takes part in
    # the rerun rule.
    recorded = {**config, "checkpoint_format": CHECKPOINT_FORMAT}
    run_file = folder / RUN_FILE
    if folder.exists() and not folder.is_dir():
        raise RunConflict(f"{folder}: exists and is not a folder; choose another --out")
    if folder.is_dir() and any(folder.iterdir()) and not run_file.is_file():
        raise RunConflict(
            f"{folder}: holds files but no {RUN_FILE}, so it is not a run folder; "
            "choose another --out"
        )
    if run_file.is_file() and overwrite:
        _delete(folder)
    elif run_file.is_file():
        try:
            saved = json.loads(run_file.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RunConflict(
                f"{run_file}: unreadable run record ({err}); pass --overwrite to replace "
                "the run, or choose another --out"
            ) from err
        diff = differences(saved, recorded)
        if not diff:
            results = _finished_results(folder, config)
            if results is not None:
                return Run(folder, config, resume=False, results=results)
            return Run(folder, config, resume=_has_checkpoint(folder), results=None)
        if _nothing_saved(folder):
            pass  # a run stopped before its first checkpoint: nothing to protect
        elif resume and _lengthens(diff, length_keys):
            (folder / RESULTS_FILE).unlink(missing_ok=True)  # the longer run has none yet
            _write_run_file(run_file, recorded)
            return Run(folder, config, resume=_has_checkpoint(folder), results=None)
        else:
            if _lengthens(diff, length_keys):
                ways = "rerun with --resume to continue it with the new length, "
            elif resume:
                ways = f"--resume does not apply ({_why_not_longer(diff, length_keys)}); "
            else:
                ways = ""
            raise RunConflict(
                f"{folder}: holds a run with another config ({_describe(diff)}); {ways}"
                "choose another --out, or pass --overwrite to replace it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    _write_run_file(run_file, recorded)
    return Run(folder, config, resume=False, results=None)


def _finished_results(folder: Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The results of a finished run of ``config`` in ``folder``, else ``None``."""
    path = folder / RESULTS_FILE
    if not path.is_file():
        return None
    results = read_results(path)
    if differences(results.get("config", {}), config):
        return None  # written by an earlier length of the run: it must finish again
    _check_manifest(folder, results)
    return results


def _nothing_saved(folder: Path) -> bool:
    """Whether ``folder`` holds only its run record (and an empty checkpoint folder)."""
    for entry in folder.iterdir():
        if entry.name == RUN_FILE or entry.name.startswith("."):
            continue
        if entry.name == CHECKPOINTS and entry.is_dir() and not any(entry.iterdir()):
            continue
        return False
    return True


def _why_not_longer(diff: Mapping[str, tuple[Any, Any]], length_keys: frozenset[str]) -> str:
    """Why ``diff`` is not a longer run of the same config, for ``--resume``'s refusal."""
    fixed = sorted(set(diff) - length_keys)
    if fixed:
        which = ", ".join(sorted(length_keys - {"cells"}))
        return f"it cannot change {', '.join(fixed)}; here it may change {which}"
    return "it only lengthens a run, and these settings shorten it"


def _lengthens(diff: Mapping[str, tuple[Any, Any]], length_keys: frozenset[str]) -> bool:
    """Whether ``diff`` changes only length keys, none of them to a shorter run."""
    if not set(diff) <= length_keys:
        return False
    for key, (old, new) in diff.items():
        if key == "cells":
            if not set(old or ()) <= set(new or ()):
                return False
        elif key != "train.checkpoint_every":
            longest = float("inf")
            if (longest if new is None else new) < (longest if old is None else old):
                return False
    return True


def _delete(folder: Path) -> None:
    """Remove a run folder: first renamed aside (one atomic step), then deleted."""
    aside = folder.with_name(f".{folder.name}.deleting-{os.getpid()}")
    os.replace(folder, aside)
    shutil.rmtree(aside)


def check_output(
    path: str | os.PathLike, identity: Mapping[str, Any], *, overwrite: bool = False
) -> None:
    """Refuse to replace a results file that was written for other inputs.

    ``identity`` holds the entries that say what a results file is of (the run, the
    data, the options); an existing file with the same entries is the same command's
    output and may be rewritten, one with others only under ``overwrite``.
    """
    path = Path(path)
    if overwrite or not path.exists():
        return
    try:
        old = read_results(path)
    except (OSError, ValueError):
        old = {}
    diff = differences({k: old.get(k) for k in identity}, identity)
    if diff:
        raise RunConflict(
            f"{path}: holds results of other inputs ({_describe(diff)}); pass --overwrite to "
            "replace it, or choose another --out"
        )


CHECKPOINT_FORMAT = 2
"""The layout of the model state in checkpoints; a run of another layout is another
config (refused, not resumed into a failing restore). 2: tied layers store their free
blocks packed in one vector (``free_kernel``, ``free_bias``, ...)."""


def read_run_config(folder: str | os.PathLike, task: str) -> dict[str, Any]:
    """The config a run folder of ``task`` was trained with (its ``run.json``).

    Raises ``FileNotFoundError`` naming what is missing (the folder, or its run record)
    and ``ValueError`` for a record that cannot be read or belongs to another task.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such run folder")
    path = folder / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {RUN_FILE}, so not a {task} run folder")
    try:
        config = json.loads(path.read_text())["config"]
        found = config.get("task", task)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a {task} run record ({err})") from err
    if found != task:
        raise ValueError(f"{folder}: a {found} run, not a {task} run")
    return config


def _write_run_file(path: Path, config: Mapping[str, Any]) -> None:
    record = {"config": config, "environment": environment()}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(to_json(record), indent=2) + "\n")


RunOne = Callable[[Run, Mapping[str, Any]], Mapping[str, Any]]


def grid(
    seeds: Sequence[int],
    variants: Sequence[str],
    settings: Callable[[str], Mapping[str, Any]] = lambda variant: {},
) -> dict[str, dict[str, Any]]:
    """The cells of a seeds x variants experiment: ``{"<variant>_seed<k>": params}``.

    A cell's params name its variant and seed, set the seed of its training config
    (``train.seed``), and add ``settings(variant)`` (e.g. ``{"model": {"chiral": True}}``),
    so that each cell's run config holds its own model and training settings (and
    ``evaluate --run <cell>`` rebuilds the right model).
    """
    if not seeds or not variants:
        raise ValueError("an experiment needs at least one seed and one variant")
    if len(set(seeds)) != len(seeds) or len(set(variants)) != len(variants):
        raise ValueError(f"seeds and variants must not repeat, got {list(seeds)}, {list(variants)}")
    return {
        f"{v}_seed{s}": merge({"variant": v, "seed": s, "train": {"seed": s}}, settings(v))
        for s in seeds
        for v in variants
    }


def merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied, nested dicts merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def run_experiment(
    out: str | os.PathLike,
    config: Mapping[str, Any],
    cells: Mapping[str, Mapping[str, Any]],
    run_one: RunOne,
    *,
    resume: bool = False,
    overwrite: bool = False,
    length_keys: frozenset[str] = LENGTH_KEYS,
) -> tuple[Run, dict[str, dict[str, Any]]]:
    """Run every cell of an experiment, each in its own sub-run ``<out>/<cell name>``.

    Args:
      out: the experiment's folder.
      config: everything the cells share.
      cells: ``{name: params}``, e.g. :func:`grid`; a cell's run config is
        ``merge(config, params)``.
      run_one: ``run_one(run, params) -> results`` trains and scores one cell
        (``run.resume`` says whether to continue its checkpoints) and returns its
        results, with an optional ``"outputs"`` list of files it wrote; the driver
        records them with :meth:`Run.finish`. A finished cell is not run again: its
        stored results are used.
      resume, overwrite, length_keys: as for :func:`open_run`; under ``resume`` the
        experiment may also gain cells (more seeds).

    Returns:
      the experiment's run (finished when a rerun found it done) and ``{name:
      results}`` of every cell (empty when the experiment was finished).
    """
    top = open_run(
        out,
        {**config, "cells": list(cells)},
        resume=resume,
        overwrite=overwrite,
        length_keys=length_keys | {"cells"},
    )
    if top.done:
        return top, {}
    results = {}
    for name, params in cells.items():
        cell = open_run(
            top.folder / name, merge(config, params), resume=resume, length_keys=length_keys
        )
        if cell.done:
            print(f"{name}: finished earlier, reusing {cell.folder}", flush=True)
            results[name] = cell.results
            continue
        print(f"{name}: {'resuming' if cell.resume else 'training'} in {cell.folder}", flush=True)
        record = dict(run_one(cell, params))
        outputs = record.pop("outputs", ())
        results[name] = cell.finish(record, outputs)
    return top, results
