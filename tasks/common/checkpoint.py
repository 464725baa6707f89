"""Numbered training checkpoints: a pytree of arrays plus a JSON record, via orbax.

A checkpoint stores the leaves of a pytree (model state, optimizer state) in leaf
order, together with their key paths, shapes and dtypes, and a JSON-serialisable
``meta`` dict (step, epoch, data position, history). Restoring needs a template
pytree of the same structure (a freshly built model and optimizer state): its
paths, shapes and dtypes must match, else a :class:`CheckpointError` names the
difference. Typed PRNG key arrays are stored as their raw key data and rewrapped
with the template's key implementation.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model being restored."""


class _Unreadable(CheckpointError):
    """A checkpoint's files cannot be read (as opposed to not fitting the template)."""


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(x):
    """A leaf orbax can write: raw data for PRNG keys, an array for Python scalars."""
    if _is_key(x):
        return jax.random.key_data(x)
    return x if isinstance(x, jax.Array | np.ndarray) else np.asarray(x)


def _describe(tree) -> list[dict[str, Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = []
    for path, leaf in leaves:
        stored = _storable(leaf)
        out.append(
            {
                "path": jax.tree_util.keystr(path),
                "shape": list(stored.shape),
                "dtype": str(stored.dtype),
                "key": _is_key(leaf),
            }
        )
    return out


class Checkpointer:
    """Saves and restores numbered checkpoints in ``directory``, keeping the latest ``keep``.

    Args:
      directory: where checkpoints live (one sub-folder per step); created on save.
      keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"checkpoint path {self.directory} exists and is not a folder")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest saved step, or ``None`` when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, tree, meta: dict[str, Any]) -> None:
        """Write ``tree`` (any pytree of arrays) and the JSON-serialisable ``meta`` at ``step``."""
        leaves = jax.tree.leaves(tree)
        # Zero-size leaves (e.g. the empty free blocks of an invariance layer) hold no
        # data and orbax refuses them: the record keeps their shape, restore rebuilds them.
        arrays = {f"{i:06d}": _storable(leaf) for i, leaf in enumerate(leaves) if np.size(leaf)}
        record = {"meta": meta, "leaves": _describe(tree)}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                arrays=ocp.args.StandardSave(arrays), record=ocp.args.JsonSave(record)
            ),
        )
        self._manager.wait_until_finished()

    def restore(
        self, template, step: int | None = None, *, fallback: bool = True
    ) -> tuple[Any, dict[str, Any]]:
        """Read the checkpoint at ``step`` into ``template``'s structure.

        Without ``step``, read the latest checkpoint; if it is unreadable (a write cut
        short, a damaged file) and ``fallback`` is set, warn and fall back to the newest
        intact one, moving the damaged ones aside into ``<directory>.damaged/`` so their
        steps can be saved again.

        Returns:
          the restored pytree (same structure, shapes, dtypes and key types as
          ``template``) and the saved ``meta``.
        """
        if step is not None:
            return self._restore_step(template, step)
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        if not fallback:
            return self._restore_step(template, steps[0])
        damaged = []
        for candidate in steps:
            try:
                restored = self._restore_step(template, candidate)
            except _Unreadable as err:
                damaged.append(candidate)
                warnings.warn(f"{err}; trying the previous checkpoint", stacklevel=2)
                continue
            self._set_aside(damaged)
            return restored
        raise CheckpointError(f"no readable checkpoint in {self.directory} (steps {steps})")

    def _set_aside(self, steps: list[int]) -> None:
        if not steps:
            return
        aside = Path(self.directory + ".damaged")
        aside.mkdir(exist_ok=True)
        for step in steps:
            target = aside / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(os.path.join(self.directory, str(step)), target)
            warnings.warn(f"moved the unreadable checkpoint step {step} to {target}", stacklevel=3)
        self._manager.reload()

    def _restore_step(self, template, step: int) -> tuple[Any, dict[str, Any]]:
        where = f"checkpoint step {step} in {self.directory}"
        try:
            record = self._manager.restore(
                step, args=ocp.args.Composite(record=ocp.args.JsonRestore())
            )["record"]
            meta, saved = record["meta"], record["leaves"]
        except Exception as err:
            raise _Unreadable(f"cannot read {where}: {type(err).__name__}: {err}") from err
        leaves, treedef = jax.tree.flatten(template)
        expected = _describe(template)
        if len(saved) != len(expected):
            raise CheckpointError(
                f"{where} holds {len(saved)} arrays but the model and optimizer being "
                f"restored have {len(expected)}: the architecture or optimizer differs"
            )
        for got, want in zip(saved, expected, strict=True):
            if got != want:
                raise CheckpointError(f"{where} does not fit: saved {got}, expected {want}")
        abstract = {
            f"{i:06d}": ocp.utils.to_shape_dtype_struct(_storable(leaf))
            for i, leaf in enumerate(leaves)
            if np.size(leaf)
        }
        try:
            arrays = self._manager.restore(
                step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(abstract))
            )["arrays"]
        except Exception as err:
            raise _Unreadable(f"cannot read {where}: {type(err).__name__}: {err}") from err
        restored = [
            jax.random.wrap_key_data(arrays[f"{i:06d}"], impl=jax.random.key_impl(leaf))
            if _is_key(leaf)
            else arrays[f"{i:06d}"]
            if np.size(leaf)
            else jax.numpy.zeros(np.shape(leaf), leaf.dtype)
            for i, leaf in enumerate(leaves)
        ]
        return jax.tree.unflatten(treedef, restored), meta

    def close(self) -> None:
        self._manager.close()
