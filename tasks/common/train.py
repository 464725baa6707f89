"""A generic, exactly resumable training loop for Flax NNX models.

The model is split once into ``graphdef`` (static structure and settings) and two
state pytrees: the trainable ``nnx.Param`` leaves and the rest (BatchNorm
statistics, dropout RNG keys and counts). One jitted pure step

    (params, rest, opt_state, batch) -> (params, rest, opt_state, metrics)

merges them into a model in training mode, differentiates ``loss_fn(model, batch)``
with respect to the params only, applies the optax update, and returns the state
the forward pass left behind (new running statistics, advanced RNG counts).

Checkpoints hold the three pytrees plus the step, epoch, data position, history and
the partial sums of the running epoch, so a run interrupted anywhere and resumed
with ``resume=True`` continues bit for bit as if it had never stopped.

The step is data parallel over every device (:mod:`chiral_tasks.common.distributed`): the
state is replicated, each global batch is split along its leading axis, and XLA
reduces gradients and batch statistics over the whole batch, so ``D`` devices
compute the one-device step up to floating-point summation order. Batch sizes are
global; a checkpoint written on ``D`` devices restores on any other count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from chiral_tasks.common import distributed, signals
from chiral_tasks.common.checkpoint import Checkpointer, CheckpointError
from chiral_tasks.common.data import Batcher
from chiral_tasks.common.progress import progress_bar
from chiral_tasks.common.run import CHECKPOINT_FORMAT, CHECKPOINTS, RUN_FILE, read_run_config

LossFn = Callable[[nnx.Module, Any], tuple[jax.Array, Mapping[str, jax.Array]]]


_COMPUTE_DTYPES = (None, "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run.

    Args:
      epochs: passes over the training set.
      batch_size: samples per step: the global batch, split over all devices of all
        processes (with several devices it must be a multiple of the device count).
      seed: seed for model initialisation and data order (used by the tasks).
      optimizer: ``"adam"`` or ``"sgd"``.
      lr: initial learning rate.
      lr_decay: exponential factor per ``lr_decay_every`` epochs: epoch ``e`` uses
        ``lr * lr_decay**(e // lr_decay_every)`` (VideoPose3D: 0.95 every epoch).
      lr_decay_every: epochs between two decays (the forecasters: 2).
      lr_steps: epochs at which the rate is multiplied by ``lr_step_factor`` (a step
        schedule, e.g. ST-GCN's ``(20, 30, 40, 50)``); excludes ``lr_decay``.
      lr_step_factor: the factor applied at each of ``lr_steps``.
      amsgrad: Adam's AMSGrad variant.
      b1, b2, eps: Adam's moment decays and epsilon.
      momentum, nesterov: SGD momentum (PyTorch semantics) and Nesterov's variant.
      weight_decay: L2 penalty added to the gradients (PyTorch's ``weight_decay``).
      clip_norm: clip gradients to this global norm before the update.
      checkpoint_dir: where checkpoints go; ``None`` disables them.
      checkpoint_every: also checkpoint every this many steps (always at epoch end).
      keep: checkpoints kept on disk.
      progress: show progress on stderr: a bar on a terminal, and one line per epoch
        (label, epoch, loss, seconds) whether or not stderr is a terminal.
      label: names the run in the progress output (e.g. ``"chiral seed 0"``).
      compute_dtype: mixed precision: ``"bfloat16"`` (or ``"float16"``) runs the
        forward and backward pass on parameters and floating batch arrays cast to
        this dtype, while parameters, optimizer state and BatchNorm statistics stay
        float32 (the gradients reach the float32 parameters through the cast).
        ``None`` computes in the parameters' dtype.
    """

    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_decay_every: int = 1
    lr_steps: tuple[int, ...] = ()
    lr_step_factor: float = 0.1
    amsgrad: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_norm: float | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    keep: int = 3
    progress: bool = True
    label: str = ""
    compute_dtype: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "lr_steps", tuple(int(e) for e in self.lr_steps))
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            problems.append(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            problems.append(f"lr_decay must lie in (0, 1], got {self.lr_decay}")
        if self.lr_decay_every < 1:
            problems.append(f"lr_decay_every must be >= 1, got {self.lr_decay_every}")
        if self.lr_steps and self.lr_decay != 1.0:
            problems.append("use either lr_decay or lr_steps, not both")
        if list(self.lr_steps) != sorted(set(self.lr_steps)) or any(e < 1 for e in self.lr_steps):
            problems.append(f"lr_steps must be increasing epochs >= 1, got {self.lr_steps}")
        if self.optimizer == "adam" and (self.momentum or self.nesterov):
            problems.append("momentum and nesterov apply to sgd, not adam")
        if self.optimizer == "sgd" and self.amsgrad:
            problems.append("amsgrad applies to adam, not sgd")
        if self.nesterov and not self.momentum > 0:
            problems.append("nesterov needs momentum > 0")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            problems.append(f"clip_norm must be > 0, got {self.clip_norm}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            problems.append(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.keep < 1:
            problems.append(f"keep must be >= 1, got {self.keep}")
        if self.compute_dtype not in _COMPUTE_DTYPES:
            problems.append(
                f"compute_dtype must be one of {_COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate as a function of the global step (constant within an epoch)."""
    if config.lr_steps:
        boundaries = {e * steps_per_epoch: config.lr_step_factor for e in config.lr_steps}
        return optax.piecewise_constant_schedule(config.lr, boundaries)
    if config.lr_decay == 1.0:
        return optax.constant_schedule(config.lr)
    return optax.exponential_decay(
        config.lr,
        transition_steps=steps_per_epoch * config.lr_decay_every,
        decay_rate=config.lr_decay,
        staircase=True,
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Gradient clipping, then L2 weight decay, then Adam/AMSGrad/SGD on the schedule."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    lr = learning_rate(config, steps_per_epoch)
    if config.optimizer == "adam":
        adam = optax.amsgrad if config.amsgrad else optax.adam
        update = adam(lr, b1=config.b1, b2=config.b2, eps=config.eps)
    else:
        update = optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov)
    parts = []
    if config.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(config.clip_norm))
    if config.weight_decay:
        parts.append(optax.add_decayed_weights(config.weight_decay))
    return optax.chain(*parts, update)


def _optimizer_settings(config: TrainConfig) -> TrainConfig:
    """``config`` with the fields that do not change the update reset to fixed values.

    Runs that differ only in length, seed or checkpointing then share compiled steps.
    """
    return dataclasses.replace(
        config,
        epochs=1,
        batch_size=1,
        seed=0,
        checkpoint_dir=None,
        checkpoint_every=None,
        keep=1,
        progress=False,
        label="",
    )


_TRACES = [0]  # how many times _train_step was traced, for Trainer.trace_count


def _cast_floats(tree, dtype):
    """``tree`` with its floating leaves cast to ``dtype`` (other leaves unchanged)."""
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def _train_step(graphdef, loss_fn, settings, steps_per_epoch, params, rest, opt_state, batch):
    """One optimizer step on the model ``merge(graphdef, params, rest)`` in training mode."""
    _TRACES[0] += 1
    compute = settings.compute_dtype
    if compute is not None:
        batch = _cast_floats(batch, compute)

    def loss_of(params):
        if compute is not None:
            params = _cast_floats(params, compute)
        # Fresh Variables, owned by this trace, which the forward pass may update.
        model = nnx.merge(graphdef, params, rest, copy=True)
        loss, metrics = loss_fn(model, batch)
        return loss, (metrics, nnx.split(model, nnx.Param, ...)[2])

    (loss, (metrics, new_rest)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    if compute is not None:
        # Statistics keep their storage dtype, so the next step sees the same types.
        new_rest = jax.tree.map(
            lambda new, old: (
                new.astype(old.dtype) if jnp.issubdtype(old.dtype, jnp.floating) else new
            ),
            new_rest,
            rest,
        )
        metrics = _cast_floats(metrics, jnp.float32)
        loss = loss.astype(jnp.float32)
    tx = make_optimizer(settings, steps_per_epoch)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, new_rest, opt_state, {**metrics, "loss": loss}


@functools.cache
def _step_on(mesh: Mesh):
    """The jitted step for ``mesh``: inputs arrive placed, every output is replicated."""
    return jax.jit(
        _train_step, static_argnums=(0, 1, 2, 3), out_shardings=distributed.replicated(mesh)
    )


def with_mode(model: nnx.Module, *, train: bool) -> nnx.Module:
    """A copy of ``model`` (sharing its arrays) in training or evaluation mode."""
    copy = nnx.merge(*nnx.split(model))
    if train:
        copy.train()
    else:
        copy.eval()
    return copy


def _batch_size(batch) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError("a batch must hold at least one array with a leading batch axis")
    return int(np.shape(leaves[0])[0])


class _EpochMetrics:
    """Batch-size-weighted sums of the step metrics of the running epoch.

    Each step's metrics are read back one step late, so the host prepares the next
    batch while the device computes; ``flush`` reads the pending step and checks
    its loss is finite.
    """

    def __init__(self, sums: Mapping[str, float] | None = None, weight: float = 0.0):
        self.sums = dict(sums or {})
        self.weight = weight
        self.last: dict[str, float] = {}
        self._pending = None

    def push(self, metrics, size: int, where: str) -> None:
        self.flush()
        self._pending = (metrics, size, where)

    def flush(self) -> None:
        if self._pending is None:
            return
        metrics, size, where = self._pending
        self._pending = None
        values = {k: float(distributed.to_host(v)) for k, v in metrics.items()}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"the training loss is {values['loss']} at {where}")
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * size
        self.weight += size
        self.last = values

    def means(self) -> dict[str, float]:
        return {k: s / self.weight for k, s in self.sums.items()}


class Trainer:
    """Trains an NNX model with a jitted pure step, checkpoints, and resumes exactly.

    Args:
      model: the model (left untouched; the trainer works on a copy in training mode).
      loss_fn: ``loss_fn(model, batch) -> (loss, metrics)``: a scalar loss and a dict
        of scalar metrics, traced inside the step. Batches are pytrees of numeric
        arrays; every distinct batch shape (a short last batch) compiles once more.
      config: the run's settings.
      steps_per_epoch: batches per epoch (``len(train_batcher)``), for the schedule.
      resume: restore the latest checkpoint of ``config.checkpoint_dir``; an unreadable
        latest one is set aside with a warning and the newest intact one restored
        (unless ``fallback=False``: then it raises :class:`CheckpointError`, as a
        missing one does). Without ``resume`` a folder that already holds checkpoints
        is refused rather than overwritten.
      fallback: see ``resume``; ``False`` for read-only use (evaluating a run).
      epoch_hook: ``epoch_hook(model, epoch)`` called at the start of every epoch
        (also on resuming mid-epoch, so it must depend on ``epoch`` only) on the
        training-mode model; it may change settings such as BatchNorm momentum.
        Changing a static attribute recompiles the step.
      mesh: the devices to train on, a 1-D mesh with axis ``"data"``
        (:func:`~chiral_tasks.common.distributed.data_mesh`); default: every device of every
        process. Every process must build the same model (same seed).

    Attributes:
      step, epoch: global steps taken and epochs completed.
      history: one dict per completed epoch: ``epoch`` (completed count), ``step``,
        ``lr``, ``time`` (seconds), the mean ``loss`` and metrics, and any ``eval_fn``
        results.
      trace_count: how many times this trainer's steps were traced (compiled). Traces
        are shared: a trainer with the same model structure, ``loss_fn``, optimizer
        settings and batch shapes as an earlier one (another seed, a resumed run)
        reuses its compiled step.
    """

    def __init__(
        self,
        model: nnx.Module,
        loss_fn: LossFn,
        config: TrainConfig,
        steps_per_epoch: int,
        *,
        resume: bool = False,
        fallback: bool = True,
        epoch_hook: Callable[[nnx.Module, int], None] | None = None,
        mesh: Mesh | None = None,
    ):
        self._fallback = fallback
        self.config = config
        self.mesh = distributed.data_mesh() if mesh is None else mesh
        self.loss_fn = loss_fn
        self.steps_per_epoch = int(steps_per_epoch)
        self.epoch_hook = epoch_hook
        self._schedule = learning_rate(config, self.steps_per_epoch)
        self._graphdef, params, rest = nnx.split(with_mode(model, train=True), nnx.Param, ...)
        opt_state = make_optimizer(config, self.steps_per_epoch).init(params)
        self._place(params, rest, opt_state)
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.trace_count = 0
        self._metrics = _EpochMetrics()
        self._position: dict[str, int] | None = None
        self._step_key = (loss_fn, _optimizer_settings(config), self.steps_per_epoch)

        self._checkpointer = None
        if config.checkpoint_dir is not None:
            if resume and not os.path.isdir(config.checkpoint_dir):
                raise CheckpointError(
                    f"cannot resume: checkpoint folder {config.checkpoint_dir} does not exist"
                )
            self._checkpointer = Checkpointer(config.checkpoint_dir, keep=config.keep)
            if resume:
                self._restore()
            elif self._checkpointer.latest_step() is not None:
                raise CheckpointError(
                    f"{config.checkpoint_dir} already holds checkpoints "
                    f"(steps {self._checkpointer.all_steps()}); resume from them or choose "
                    "another folder"
                )
        elif resume:
            raise CheckpointError("cannot resume without a checkpoint_dir")

    # -- state access -------------------------------------------------------------------

    def _place(self, params, rest, opt_state) -> None:
        """Hold the state replicated on every device of the mesh."""
        self._params, self._rest, self._opt_state = distributed.replicate(
            (params, rest, opt_state), self.mesh
        )

    def model(self) -> nnx.Module:
        """The current model, in evaluation mode, on this process's first device."""
        params, rest = distributed.local_copy((self._params, self._rest))
        return with_mode(nnx.merge(self._graphdef, params, rest), train=False)

    @property
    def params(self) -> nnx.State:
        return self._params

    @property
    def opt_state(self) -> optax.OptState:
        return self._opt_state

    def _arrays(self) -> dict[str, Any]:
        return {"params": self._params, "rest": self._rest, "opt_state": self._opt_state}

    def _save(self) -> None:
        if self._checkpointer is None:
            return
        meta = {
            "step": self.step,
            "epoch": self.epoch,
            "position": self._position,
            "history": self.history,
            "epoch_sums": self._metrics.sums,
            "epoch_weight": self._metrics.weight,
            "config": dataclasses.asdict(self.config),
        }
        self._checkpointer.save(self.step, self._arrays(), meta)

    def _restore(self) -> None:
        arrays, meta = self._checkpointer.restore(self._arrays(), fallback=self._fallback)
        try:
            saved = _optimizer_settings(TrainConfig(**meta["config"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"the checkpoint in {self.config.checkpoint_dir} has no readable config: {err}"
            ) from err
        ours = _optimizer_settings(self.config)
        if saved != ours:
            changed = {
                f.name: (getattr(saved, f.name), getattr(ours, f.name))
                for f in dataclasses.fields(TrainConfig)
                if getattr(saved, f.name) != getattr(ours, f.name)
            }
            raise CheckpointError(
                "cannot resume with other optimizer settings: "
                + "; ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in changed.items())
            )
        self._place(arrays["params"], arrays["rest"], arrays["opt_state"])
        self.step, self.epoch = int(meta["step"]), int(meta["epoch"])
        self.history = list(meta["history"])
        self._position = meta["position"]
        self._metrics = _EpochMetrics(meta["epoch_sums"], meta["epoch_weight"])
        if self.config.progress:
            batch = self._position.get("batch", 0) if isinstance(self._position, dict) else 0
            print(
                f"{self._label}resuming from the checkpoint at step {self.step} "
                f"(epoch {self.epoch + 1}, batch {batch})",
                file=sys.stderr,
                flush=True,
            )

    def _start_epoch(self) -> None:
        if self.epoch_hook is None:
            return
        model = nnx.merge(self._graphdef, self._params, self._rest)
        self.epoch_hook(model, self.epoch)
        self._graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        self._place(params, rest, self._opt_state)

    def _check_batcher(self, batcher: Batcher) -> None:
        """Raise unless ``batcher`` feeds this process's share of batches the mesh can split."""
        if len(batcher) != self.steps_per_epoch:
            raise ValueError(
                f"the batcher has {len(batcher)} batches per epoch but the trainer was "
                f"built for steps_per_epoch={self.steps_per_epoch}"
            )
        shard = distributed.process_shard()
        ours = {"process_index": batcher.process_index, "process_count": batcher.process_count}
        if ours != shard:
            raise ValueError(
                f"the batcher reads the share {ours} of each batch but this is process "
                f"{shard['process_index']} of {shard['process_count']}: build it with "
                "Batcher(..., **distributed.process_shard())"
            )
        distributed.check_divisible(batcher.batch_size, self.mesh, "every batch")
        last = batcher.num_samples % batcher.batch_size
        if last and not batcher.drop_last:
            distributed.check_divisible(last, self.mesh, "the last batch of each epoch")

    # -- the loop -----------------------------------------------------------------------

    def fit(
        self,
        batcher: Batcher,
        eval_fn: Callable[[nnx.Module, int], Mapping[str, float]] | None = None,
        *,
        max_steps: int | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done (or ``max_steps`` global steps).

        Args:
          batcher: the training batches; ``len(batcher)`` must equal ``steps_per_epoch``.
            In a multi-process run it reads this process's share of each global batch
            (``Batcher(..., **distributed.process_shard())``). With several devices,
            every batch (the last one too, unless ``drop_last``) must split evenly over
            them; otherwise a ValueError says so before the first step.
          eval_fn: ``eval_fn(model, epoch) -> metrics`` run after each epoch on the
            evaluation-mode model; its results join that epoch's history entry.
          max_steps: stop once this many global steps are taken (a partial epoch
            leaves no history entry; a later ``fit`` or a resume continues it).

        Returns:
          the history, one entry per completed epoch.
        """
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self._check_batcher(batcher)
        step = _step_on(self.mesh)
        batcher.restore(self._position or {"epoch": self.epoch, "batch": 0})
        with signals.deferred(), self._checkpoint_on_interrupt():
            while self.epoch < self.config.epochs:
                if max_steps is not None and self.step >= max_steps:
                    break
                self._start_epoch()
                started = time.perf_counter()
                bar = progress_bar(
                    total=len(batcher),
                    initial=batcher.batch,
                    desc=f"{self._label}epoch {self.epoch + 1}/{self.config.epochs}",
                    enabled=self.config.progress,
                    leave=False,
                )
                with bar:
                    for batch in batcher:
                        batch = distributed.shard_batch(batch, self.mesh)
                        traced = _TRACES[0]
                        self._params, self._rest, self._opt_state, metrics = step(
                            self._graphdef,
                            *self._step_key,
                            self._params,
                            self._rest,
                            self._opt_state,
                            batch,
                        )
                        self.trace_count += _TRACES[0] - traced
                        self.step += 1
                        where = (
                            f"step {self.step} (epoch {self.epoch + 1}, "
                            f"batch {batcher.batch}/{len(batcher)})"
                        )
                        self._metrics.push(metrics, _batch_size(batch), where)
                        self._position = batcher.state()
                        signals.check()  # a Ctrl-C or SIGTERM stops here, between steps
                        bar.update()
                        if self._metrics.last:
                            bar.set_postfix(loss=f"{self._metrics.last['loss']:.4g}", refresh=False)
                        if batcher.batch == len(batcher):
                            break  # the epoch's end is handled below
                        every = self.config.checkpoint_every
                        if every is not None and self.step % every == 0:
                            self._metrics.flush()
                            self._save()
                        if max_steps is not None and self.step >= max_steps:
                            self._metrics.flush()
                            self._save_unless_saved()
                            return self.history
                self._finish_epoch(batcher, eval_fn, time.perf_counter() - started)
                signals.check()
            return self.history

    @property
    def _label(self) -> str:
        return f"{self.config.label}: " if self.config.label else ""

    @contextlib.contextmanager
    def _checkpoint_on_interrupt(self):
        """On Ctrl-C (or SIGTERM, see :mod:`chiral_tasks.common.signals`), save the last
        completed step before stopping, so a resume loses nothing; the exception gains a
        note naming the saved step."""
        try:
            yield
        except KeyboardInterrupt as interrupt:
            self._metrics.flush()
            self._save_unless_saved()
            if self._checkpointer is not None:
                interrupt.add_note(
                    f"saved step {self.step} (epoch {self.epoch + 1}) to "
                    f"{self._checkpointer.directory}"
                )
            raise

    def _save_unless_saved(self) -> None:
        if self._checkpointer is not None and self._checkpointer.latest_step() != self.step:
            self._save()

    def _finish_epoch(self, batcher: Batcher, eval_fn, seconds: float) -> None:
        self._metrics.flush()
        entry = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": float(self._schedule(self.step - 1)),
            **self._metrics.means(),
        }
        if eval_fn is not None:
            results = dict(eval_fn(self.model(), self.epoch))
            clash = sorted(set(results) & set(entry))
            if clash:
                raise ValueError(f"eval_fn results {clash} clash with the training metrics")
            entry.update({k: float(v) for k, v in results.items()})
        entry["time"] = seconds
        self.history.append(entry)
        if self.config.progress:
            print(
                f"{self._label}epoch {self.epoch + 1}/{self.config.epochs}, step {self.step}, "
                f"loss {entry['loss']:.4g}, {seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        self.epoch += 1
        self._metrics = _EpochMetrics()
        batcher.restore({"epoch": self.epoch, "batch": 0})
        self._position = batcher.state()
        self._save()

    def close(self) -> None:
        """Release the checkpoint writer."""
        if self._checkpointer is not None:
            self._checkpointer.close()


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (for a chiral model: the free ones only)."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def load_trained(
    run_dir: str | os.PathLike, build: Callable[[dict], nnx.Module], loss_fn: LossFn, task: str
) -> tuple[nnx.Module, dict]:
    """The latest checkpointed model of a run folder (:mod:`chiral_tasks.common.run`),
    in evaluation mode, and the run's config.

    Args:
      run_dir: the run folder (``run.json`` and ``checkpoints/``).
      build: ``build(config) -> model``: a fresh model of the run's architecture.
      loss_fn: the run's loss (the trainer that restores the checkpoint needs it).
      task: named in the error for a folder that is not a run of this task.
    """
    config = read_run_config(run_dir, task)
    try:
        found = config.get("checkpoint_format", 1)
        if found != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{run_dir}: its checkpoints have format {found}, this version reads "
                f"{CHECKPOINT_FORMAT}; retrain it (rerun its command with --overwrite)"
            )
        model = build(config)
        train_config = TrainConfig(
            **config["train"], checkpoint_dir=str(Path(run_dir) / CHECKPOINTS), progress=False
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{Path(run_dir) / RUN_FILE}: not a {task} run record ({err})") from err
    trainer = Trainer(model, loss_fn, train_config, 1, resume=True, fallback=False)
    try:
        return trainer.model(), config
    finally:
        trainer.close()


_predict_step = jax.jit(
    lambda graphdef, fn, state, batch: fn(nnx.merge(graphdef, state), batch),
    static_argnums=(0, 1),
)


def predict(model: nnx.Module, batches: Iterable[Any], fn: Callable[[nnx.Module, Any], Any]):
    """Run ``fn(model, batch)`` jitted in evaluation mode over ``batches``; concatenate.

    Args:
      model: the model (not modified).
      batches: an iterable of batches (pytrees of numeric arrays), e.g. a non-shuffled
        Batcher.
      fn: ``fn(model, batch) -> array or pytree of arrays`` with a leading batch axis;
        pass the same function object on every call to reuse its compiled form.

    Returns:
      ``fn``'s outputs concatenated over batches along axis 0, as numpy.
    """
    graphdef, state = nnx.split(with_mode(model, train=False))
    outputs = [_predict_step(graphdef, fn, state, batch) for batch in batches]
    if not outputs:
        raise ValueError("predict got no batches")
    return jax.tree.map(lambda *xs: np.concatenate(xs), *jax.device_get(outputs))
