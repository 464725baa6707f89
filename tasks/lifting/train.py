"""Training a lifting model the VideoPose3D way, and saving/loading trained models.

The pipeline: per-camera sequences (:mod:`chiral_tasks.lifting.data`) -> a
:class:`WindowSampler` with one output frame per sample (a window of exactly the
receptive field, fed to the model's strided training path) -> a :class:`Batcher`
that mirrors the samples marked ``flip`` (every window is listed plain and
mirrored, so half of each epoch is flipped, 2D and 3D alike) -> the shared
:class:`Trainer` with the MPJPE loss, Adam with AMSGrad, ``lr * 0.95**epoch`` and
VideoPose3D's BatchNorm-momentum decay applied by an epoch hook.

A trained model is saved to ``<out>/model`` together with its :class:`ModelConfig`
and skeletons (2D input and 3D output), so :func:`load_model` rebuilds it without
other settings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common import run
from chiral_tasks.common.augment import mirror_where
from chiral_tasks.common.checkpoint import Checkpointer, CheckpointError
from chiral_tasks.common.data import Batcher, WindowSampler
from chiral_tasks.common.distributed import process_shard
from chiral_tasks.common.train import TrainConfig, Trainer
from chiral_tasks.lifting.data import Sequences
from chiral_tasks.lifting.model import TemporalModel, set_bn_momentum, videopose3d_bn_momentum
from chiral_tasks.lifting.transformer import PoseTransformer

ARCHS = ("temporal", "transformer")
LiftingModel = TemporalModel | PoseTransformer


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The lifting network's settings.

    ``arch``: ``"temporal"``, VideoPose3D's temporal conv net (:class:`TemporalModel`), or
    ``"transformer"``, the spatial-temporal transformer (:class:`PoseTransformer`).

    Temporal conv net: ``channels`` is the plain model's width; the chiral model uses
    the largest multiple of the input (2D) joint count not above it (1024 -> 1020 for
    17 joints, as in the paper), so that every joint gets the same number of hidden
    dims. ``filter_widths``, ``causal``, ``mode``, ``activation``, ``even_activation``
    (chiral only: a function for the positive hidden channels, the odd ``activation``
    keeping the negated ones; plain models ignore it) and ``impl`` (chiral only, the
    form the model runs in: ``"auto"`` by width, ``"dense"`` or ``"even_odd"``; the
    same function) are its own.

    Transformer: ``channels`` is the channels per token, ``frames`` the clip length,
    ``depth`` the pairs of (spatial, temporal) blocks, ``heads`` the attention heads.
    """

    chiral: bool = True
    filter_widths: tuple[int, ...] = (3, 3, 3)
    channels: int = 128
    dropout: float = 0.25
    causal: bool = False
    mode: str = "complete"
    activation: str | None = None
    impl: str = "auto"
    even_activation: str | None = None
    arch: str = "temporal"
    frames: int = 27
    depth: int = 2
    heads: int = 4

    def __post_init__(self):
        object.__setattr__(self, "filter_widths", tuple(int(w) for w in self.filter_widths))
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")

    @property
    def chunk_length(self) -> int:
        """Output frames of one training window of the model (its ``chunk_length``): one
        for the temporal conv net's strided path, a whole clip for the transformer."""
        return self.frames if self.arch == "transformer" else 1

    def width(self, skeleton_2d: Skeleton) -> int:
        """The hidden width of a model whose 2D input has ``skeleton_2d``'s joints."""
        if not self.chiral or self.arch == "transformer":
            return self.channels
        joints = skeleton_2d.num_joints
        if self.channels < joints:
            raise ValueError(
                f"channels={self.channels} is below the {joints} joints of {skeleton_2d.name!r}"
            )
        return self.channels // joints * joints


LENGTH_KEYS = run.LENGTH_KEYS - {"train.epochs"}
"""What ``--resume`` may lengthen: not the epochs, on which the batch-norm momentum
schedule (:func:`videopose3d_bn_momentum`) depends from the first epoch on."""

QUICK_MODEL = ModelConfig()
PAPER_MODEL = ModelConfig(filter_widths=(3, 3, 3, 3, 3), channels=1024, dropout=0.25)
QUICK_TRAIN = TrainConfig(
    epochs=2, batch_size=256, lr=1e-3, lr_decay=0.95, amsgrad=True, optimizer="adam"
)
PAPER_TRAIN = dataclasses.replace(QUICK_TRAIN, epochs=80, batch_size=1024)

QUICK_TRANSFORMER = ModelConfig(arch="transformer", channels=32, dropout=0.1)
PAPER_TRANSFORMER = dataclasses.replace(
    QUICK_TRANSFORMER, frames=243, channels=512, depth=8, heads=8
)
"""MixSTE's published size: 243 frames, 8 pairs of blocks, 512 channels, 8 heads."""
QUICK_TRANSFORMER_TRAIN = dataclasses.replace(QUICK_TRAIN, batch_size=32)
"""32 clips of 27 frames a step (864 output frames; the conv net: 256 windows of one)."""
PAPER_TRANSFORMER_TRAIN = dataclasses.replace(PAPER_TRAIN, batch_size=16, lr=1e-4)
"""16 clips of 243 frames a step; learning rate 1e-4, a usual one at this size (not
tuned here: the conv net's 1e-3 is large for a 512-channel transformer)."""


def defaults(arch: str, paper: bool) -> tuple[ModelConfig, TrainConfig]:
    """The quick (or ``paper``) model and training settings of ``arch``."""
    if arch == "transformer":
        return (PAPER_TRANSFORMER, PAPER_TRANSFORMER_TRAIN) if paper else (
            QUICK_TRANSFORMER, QUICK_TRANSFORMER_TRAIN)  # fmt: skip
    return (PAPER_MODEL, PAPER_TRAIN) if paper else (QUICK_MODEL, QUICK_TRAIN)


def build_model(
    config: ModelConfig, skeleton_2d: Skeleton, skeleton: Skeleton, seed: int
) -> LiftingModel:
    """A freshly initialised model lifting ``skeleton_2d`` 2D poses to ``skeleton`` 3D poses."""
    if config.arch == "transformer":
        return PoseTransformer(
            skeleton_2d,
            skeleton,
            chiral=config.chiral,
            frames=config.frames,
            dims=config.channels,
            depth=config.depth,
            heads=config.heads,
            dropout=config.dropout,
            rngs=nnx.Rngs(seed),
        )
    return TemporalModel(
        skeleton_2d,
        skeleton,
        chiral=config.chiral,
        filter_widths=config.filter_widths,
        channels=config.width(skeleton_2d),
        dropout=config.dropout,
        causal=config.causal,
        mode=config.mode,
        activation=config.activation,
        even_activation=config.even_activation if config.chiral else None,
        impl=config.impl if config.chiral else "auto",
        rngs=nnx.Rngs(seed),
    )


def mpjpe_loss(model: LiftingModel, batch: dict[str, Any]):
    """MPJPE (metres) of a training batch: ``inputs`` [B, rf, J_2d, 2] -> ``targets`` [B,
    chunk, J, 3] (the conv net's strided path: one frame; the transformer: every frame)."""
    predicted = model(batch["inputs"], strided=True)
    error = jnp.linalg.norm(predicted - batch["targets"], axis=-1).mean()
    return error, {"mpjpe_mm": 1000.0 * error}


def _mirror_flagged(layouts, rng: np.random.Generator, batch: dict) -> dict:
    """The Batcher transform: mirror the samples marked ``flip`` (inputs and targets each
    by its own layout); keep inputs and targets."""
    del rng  # the flips come from the sampler's mirrored copies, not from chance
    out = mirror_where(batch["flip"], batch, layouts)
    return {
        "inputs": out["inputs"].astype(np.float32),
        "targets": out["targets"].astype(np.float32),
    }


def _decay_bn_momentum(model: LiftingModel, epoch: int, *, epochs: int) -> None:
    set_bn_momentum(model, videopose3d_bn_momentum(epoch, epochs))


def training_batcher(
    model: LiftingModel, sequences: Sequences, batch_size: int, seed: int, flip: bool
) -> Batcher:
    """Shuffled windows of ``sequences`` with ``model.chunk_length`` output frames each,
    mirrored copies if ``flip`` (2D inputs by ``model.layout_in``, 3D targets by
    ``model.layout_out``)."""
    sampler = WindowSampler(
        sequences.inputs,
        sequences.targets,
        chunk_length=model.chunk_length,
        pad=model.pad,
        causal_shift=model.causal_shift,
        mirrored_copies=flip,
    )
    layouts = {"inputs": model.layout_in, "targets": model.layout_out}
    return Batcher(
        sampler,
        batch_size,
        seed=seed,
        drop_last=len(sampler) > batch_size,  # one batch shape, one compilation
        transform=functools.partial(_mirror_flagged, layouts),
        **process_shard(),  # each host reads its share of every global batch
    )


@dataclasses.dataclass
class TrainedModel:
    """A trained model with its settings, its 3D output ``skeleton``, its 2D input
    ``skeleton_2d`` and its training history."""

    model: LiftingModel
    config: ModelConfig
    skeleton: Skeleton
    skeleton_2d: Skeleton
    history: list[dict[str, float]]
    seconds: float = 0.0


def train(
    sequences: Sequences,
    skeleton_2d: Skeleton,
    skeleton: Skeleton,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    flip: bool = True,
    resume: bool = False,
    max_steps: int | None = None,
) -> TrainedModel:
    """Train a model lifting ``skeleton_2d`` poses to ``skeleton`` ones on ``sequences``;
    checkpoints go to ``train_config.checkpoint_dir``.

    ``max_steps`` stops early (a later call with ``resume=True`` continues exactly).
    """
    model = build_model(model_config, skeleton_2d, skeleton, train_config.seed)
    batcher = training_batcher(model, sequences, train_config.batch_size, train_config.seed, flip)
    trainer = Trainer(
        model,
        mpjpe_loss,
        train_config,
        len(batcher),
        resume=resume,
        # The conv net's batch norms follow VideoPose3D's momentum schedule.
        epoch_hook=functools.partial(_decay_bn_momentum, epochs=train_config.epochs)
        if model_config.arch == "temporal"
        else None,
    )
    try:
        history = trainer.fit(batcher, max_steps=max_steps)
    finally:
        trainer.close()
    seconds = sum(entry["time"] for entry in history)
    return TrainedModel(trainer.model(), model_config, skeleton, skeleton_2d, history, seconds)


def _skeleton_json(skeleton: Skeleton) -> dict[str, Any]:
    return {f.name: getattr(skeleton, f.name) for f in dataclasses.fields(Skeleton)}


def _skeleton_from_json(spec: dict[str, Any]) -> Skeleton:
    return Skeleton(**{k: v if isinstance(v, str) else tuple(v) for k, v in spec.items()})


def save_model(trained: TrainedModel, folder: str | Path) -> None:
    """Write the model to ``folder``: ``model.json`` (config, ``skeleton`` and
    ``skeleton_2d``, history) and ``state/`` (an orbax checkpoint of the model's arrays).

    The model is written into a temporary folder beside ``folder`` and renamed into
    place; an earlier model there is replaced only once the new one is complete.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        meta = {
            "model_config": dataclasses.asdict(trained.config),
            "skeleton": _skeleton_json(trained.skeleton),
            "skeleton_2d": _skeleton_json(trained.skeleton_2d),
            "history": trained.history,
            "seconds": trained.seconds,
        }
        (staging / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
        checkpointer = Checkpointer(staging / "state", keep=1)
        try:
            checkpointer.save(0, nnx.state(trained.model), {})
        finally:
            checkpointer.close()
        os.chmod(staging, 0o755)
        if folder.exists():
            old = staging.with_name(staging.name + ".old")
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old)
        else:
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_skeleton(folder: Path, what: str, trained: Skeleton, given: Skeleton | None) -> None:
    """Raise unless ``given`` (if any) has the joints and mirror pairs of ``trained``."""

    def joints(s: Skeleton):
        return s.joint_names, s.left, s.right

    if given is not None and joints(given) != joints(trained):
        raise ValueError(
            f"the model in {folder} was trained for {what} {trained.name!r} "
            f"({trained.num_joints} joints {list(trained.joint_names)}), but the dataset's "
            f"{what} {given.name!r} has {given.num_joints} joints {list(given.joint_names)}"
        )


def load_model(
    folder: str | Path, skeleton: Skeleton | None = None, skeleton_2d: Skeleton | None = None
) -> TrainedModel:
    """Rebuild the model saved by :func:`save_model`, in evaluation mode.

    ``skeleton`` and ``skeleton_2d``, the dataset's 3D and 2D skeletons, are each
    checked when given: a clear error unless the model was trained for the same
    joints and mirror pairs. Models saved without ``skeleton_2d`` took 2D poses of
    their 3D skeleton.
    """
    folder = Path(folder)
    if not (folder / "model.json").is_file():
        raise FileNotFoundError(f"{folder}: no saved model (no model.json; train one first)")
    try:
        meta = json.loads((folder / "model.json").read_text())
        config = ModelConfig(**meta["model_config"])
        trained_skeleton = _skeleton_from_json(meta["skeleton"])
        trained_2d = _skeleton_from_json(meta.get("skeleton_2d", meta["skeleton"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{folder}/model.json is unreadable: {err}") from err
    _check_skeleton(folder, "skeleton", trained_skeleton, skeleton)
    _check_skeleton(folder, "2D skeleton", trained_2d, skeleton_2d)
    model = build_model(config, trained_2d, trained_skeleton, seed=0)
    checkpointer = Checkpointer(folder / "state", keep=1)
    try:
        state, _ = checkpointer.restore(nnx.state(model))
    finally:
        checkpointer.close()
    nnx.update(model, state)
    model.eval()
    return TrainedModel(
        model, config, trained_skeleton, trained_2d, meta["history"], meta["seconds"]
    )
