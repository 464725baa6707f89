"""A seq2seq LSTM pose forecaster, plain or chiral from one code path.

Poses are Penn Action's 13 joints in normalised (x, y). Each time step feeds the
LSTMs the features ``(x, y, dx, dy)`` of one pose: the pose and its velocity
(its difference from the previous pose), a layout of 13 joints x 4 dims with x
and dx negated by the mirror. The encoder (2 stacked LSTM layers) reads the
observed poses but the last; the decoder (2 more layers, starting from the
encoder's state) reads the last observed pose and its velocity, and each step
predicts the next velocity ``v``, so the next pose is ``previous + v``. Training
feeds the decoder the true previous poses (teacher forcing); prediction feeds
back its own (autoregressive decoding). Both run the same ``jax.lax.scan``.

The chiral model makes every LSTM cell and the output layer chiral, with hidden
layout "13 joints x ``hidden / 13`` dims, half of them negated"; since the
feature map and the residual ``previous + v`` are linear and commute with the
mirror, the whole forecast is equivariant: ``f(T x) = T f(x)``. The plain model
uses ``nnx.OptimizedLSTMCell`` and ``nnx.Linear`` in the same places.
Dropout (plain, as in the paper) acts between the stacked layers.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax import ChiralLayout
from chiral_jax.skeletons import PENN_ACTION_13
from chiral_tasks.common import layers

NUM_JOINTS = PENN_ACTION_13.num_joints
POSE_LAYOUT = PENN_ACTION_13.layout(2)
"""A pose ``[..., 13, 2]``: x negated by the mirror."""
STEP_LAYOUT = PENN_ACTION_13.layout(4, negated=(0, 2))
"""One decoder input ``[..., 13, 4]``: ``(x, y, dx, dy)``, x and dx negated."""


@dataclasses.dataclass(frozen=True)
class ForecasterConfig:
    """Architecture of :class:`Forecaster`.

    Args:
      chiral: chiral cells and output layer (else plain ones).
      hidden: LSTM width; a multiple of 13 (the paper: 1040 = 13 x 80).
      layers: stacked LSTM layers in the encoder and in the decoder.
      dropout: dropout rate between stacked layers.
      num_future: poses to forecast.
      negated: fraction of each hidden joint's dims that the mirror negates.
      mode: the chiral parameterisation, ``"complete"`` or ``"paper"``.
    """

    chiral: bool = True
    hidden: int = 208
    layers: int = 2
    dropout: float = 0.5
    num_future: int = 16
    negated: float = 0.5
    mode: str = "complete"

    def __post_init__(self):
        problems = []
        if self.hidden < NUM_JOINTS or self.hidden % NUM_JOINTS:
            problems.append(f"hidden must be a positive multiple of 13, got {self.hidden}")
        if self.layers < 1:
            problems.append(f"layers must be >= 1, got {self.layers}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.num_future < 1:
            problems.append(f"num_future must be >= 1, got {self.num_future}")
        if not 0.0 <= self.negated <= 1.0:
            problems.append(f"negated must lie in [0, 1], got {self.negated}")
        if problems:
            raise ValueError("invalid ForecasterConfig: " + "; ".join(problems))

    @property
    def hidden_layout(self) -> ChiralLayout:
        """The chiral hidden layout: Penn Action's pairs and centre, ``hidden / 13`` dims
        each (:meth:`chiral_jax.Skeleton.hidden_layout`)."""
        return PENN_ACTION_13.hidden_layout(self.hidden, self.negated)


def step_features(pose: jax.Array, velocity: jax.Array) -> jax.Array:
    """``[..., 13, 2]`` pose and velocity -> ``[..., 52]`` step input (``STEP_LAYOUT``)."""
    return jnp.concatenate([pose, velocity], axis=-1).reshape(pose.shape[:-2] + (-1,))


class Forecaster(nnx.Module):
    """Forecasts ``num_future`` poses from the observed ones.

    Shapes: ``observed [N, obs, 13, 2] -> [N, num_future, 13, 2]`` (``obs >= 1``;
    with ``obs = 1`` the initial velocity is zero and the encoder reads nothing).

    >>> model = Forecaster(ForecasterConfig(hidden=26, num_future=3), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((5, 2, 13, 2))).shape
    (5, 3, 13, 2)
    """

    def __init__(self, config: ForecasterConfig, *, rngs: nnx.Rngs):
        self.config = config
        if config.chiral:
            step, hidden, pose = STEP_LAYOUT, config.hidden_layout, POSE_LAYOUT
        else:
            step, hidden, pose = STEP_LAYOUT.size, config.hidden, POSE_LAYOUT.size
        spaces = [step] + [hidden] * config.layers

        def cell(k):
            return layers.lstm_cell(spaces[k], spaces[k + 1], mode=config.mode, rngs=rngs)

        self.head = layers.linear(hidden, pose, mode=config.mode, rngs=rngs)
        self.encoder = nnx.List([cell(k) for k in range(config.layers)])
        self.decoder = nnx.List([cell(k) for k in range(config.layers)])
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)

    def _stack(self, cells, carries, x, key):
        """One step through stacked ``cells`` with dropout between them."""
        new = []
        for k, (cell, carry) in enumerate(zip(cells, carries, strict=True)):
            carry, x = cell(carry, x)
            new.append(carry)
            if k < len(cells) - 1:
                x = self.dropout(x, rngs=jax.random.fold_in(key, k))
        return new, x

    def _dropout_keys(self, steps: int) -> jax.Array:
        """Per-step dropout keys, drawn from the model's stream only in training."""
        key = jax.random.key(0) if self.dropout.deterministic else self.dropout.rngs()
        return jax.random.split(key, steps)

    def __call__(self, observed: jax.Array, future: jax.Array | None = None) -> jax.Array:
        """Forecast from ``observed``; with ``future`` given, decode with teacher forcing.

        Args:
          observed: ``[N, obs, 13, 2]`` observed poses, oldest first.
          future: optional ``[N, num_future, 13, 2]`` true future poses; step ``t``
            then reads the true pose ``t - 1`` instead of its own forecast.

        Returns:
          ``[N, num_future, 13, 2]`` forecast poses.
        """
        steps = self.config.num_future
        if observed.ndim != 4 or observed.shape[2:] != (NUM_JOINTS, 2) or observed.shape[1] < 1:
            raise ValueError(f"observed must be [N, obs >= 1, 13, 2], got {observed.shape}")
        if future is not None and future.shape != (observed.shape[0], steps, NUM_JOINTS, 2):
            raise ValueError(
                f"future must be [{observed.shape[0]}, {steps}, 13, 2], got {future.shape}"
            )
        batch = observed.shape[:1]
        width = self.config.hidden
        zeros = jnp.zeros(batch + (width,), observed.dtype)
        carries = [(zeros, zeros)] * self.config.layers

        velocity = jnp.diff(observed, axis=1, prepend=observed[:, :1])
        obs = observed.shape[1]
        enc_keys = self._dropout_keys(max(obs - 1, 1))[: obs - 1]
        dec_keys = self._dropout_keys(steps)
        # Split after drawing the keys: the scan bodies rebuild the model from this
        # snapshot and only read it.
        graphdef, state = nnx.split(self)

        def encode(carries, xs):
            features, key = xs
            model = nnx.merge(graphdef, state)
            return model._stack(model.encoder, carries, features, key)[0], None

        features = jnp.swapaxes(step_features(observed, velocity), 0, 1)[:-1]
        carries, _ = jax.lax.scan(encode, carries, (features, enc_keys))

        def decode(carry, xs):
            carries, pose, velocity = carry
            truth, key = xs
            model = nnx.merge(graphdef, state)
            carries, h = model._stack(model.decoder, carries, step_features(pose, velocity), key)
            step = model.head(h).reshape(pose.shape)
            forecast = pose + step
            if truth is None:
                return (carries, forecast, step), forecast
            return (carries, truth, truth - pose), forecast

        truth = None if future is None else jnp.swapaxes(future, 0, 1)
        init = (carries, observed[:, -1], velocity[:, -1])
        _, forecast = jax.lax.scan(decode, init, (truth, dec_keys))
        return jnp.swapaxes(forecast, 0, 1)


def forecast_loss(model: Forecaster, batch) -> tuple[jax.Array, dict]:
    """Teacher-forced mean squared error over the visible future joints.

    ``batch``: ``observed [B, obs, 13, 2]``, ``future [B, S, 13, 2]``, ``visible
    [B, S, 13, 1]`` (0/1 weights). The loss is the squared coordinate error summed
    over visible joints, divided by their count times 2 (the coordinates).
    """
    forecast = model(batch["observed"], batch["future"])
    weight = batch["visible"]
    error = jnp.sum(weight * (forecast - batch["future"]) ** 2)
    loss = error / jnp.maximum(2.0 * jnp.sum(weight), 1.0)
    return loss, {}
