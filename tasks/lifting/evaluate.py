"""Full-sequence inference and the Human3.6M protocol errors (MPJPE, P-MPJPE, N-MPJPE, MPJVE).

:func:`predict_sequences` runs the dilated model over whole sequences edge-padded
by the receptive field, as VideoPose3D evaluates. To compile once for sequences of
any length, each sequence is cut into chunks of ``chunk`` output frames with their
edge-padded context (:class:`WindowSampler`), run in fixed-size batches and pasted
back: the model is a function of each output frame's window, so this equals one
pass over the padded sequence. With ``tta=True`` each window is also lifted
mirrored and the un-mirrored prediction averaged in
(:func:`chiral_jax.flip_average`).
"""

from __future__ import annotations

import time

import numpy as np

from chiral_jax import flip_average
from chiral_tasks.common.data import WindowSampler
from chiral_tasks.common.train import predict
from chiral_tasks.lifting.data import Sequences
from chiral_tasks.lifting.metrics import action_wise, mpjpe, mpjve, n_mpjpe, p_mpjpe
from chiral_tasks.lifting.model import TemporalModel
from chiral_tasks.lifting.transformer import PoseTransformer

Model = TemporalModel | PoseTransformer

METRICS = {"mpjpe": mpjpe, "p_mpjpe": p_mpjpe, "n_mpjpe": n_mpjpe, "mpjve": mpjve}
"""Reported errors, each in millimetres."""


def _lift(model: Model, batch):
    return model(batch["inputs"])


def _lift_tta(model: Model, batch):
    return flip_average(model, model.layout_in, model.layout_out)(batch["inputs"])


def predict_sequences(
    model: Model,
    inputs: list[np.ndarray],
    *,
    tta: bool = False,
    chunk: int = 256,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """3D poses (T_i, J, 3) for each 2D sequence ``inputs[i]`` (T_i, J_2d, 2), in eval mode.

    ``chunk`` output frames per window (at most the longest sequence), ``batch_size``
    windows per call; a model with a longest clip (``model.max_frames``) gets chunks of
    at most that many frames.
    """
    chunk = min(chunk, max(len(x) for x in inputs), model.max_frames or chunk)
    sampler = WindowSampler(
        inputs, None, chunk_length=chunk, pad=model.pad, causal_shift=model.causal_shift
    )
    count = len(sampler)
    # Pad the index list to whole batches: every batch has one shape (one compilation).
    order = np.arange(-(-count // batch_size) * batch_size).clip(max=count - 1)
    batches = (
        {"inputs": sampler.fetch(order[i : i + batch_size])["inputs"]}
        for i in range(0, len(order), batch_size)
    )
    chunks = predict(model, batches, _lift_tta if tta else _lift)[:count]
    outputs = [np.empty((len(x), *chunks.shape[2:]), np.float32) for x in inputs]
    for (seq, start, _), values in zip(sampler.chunks, chunks, strict=True):
        lo, hi = max(start, 0), min(start + chunk, len(inputs[seq]))
        outputs[seq][lo:hi] = values[lo - start : hi - start]
    return outputs


def score(predictions: list[np.ndarray], sequences: Sequences) -> dict:
    """Protocol errors in mm: ``{metric: overall}`` plus ``per_action[metric][action]``.

    Per action: mean over all frames of its sequences (all subjects and cameras);
    overall: the plain mean over actions (:func:`metrics.action_wise`).
    """
    actions = [action for _, action, _ in sequences.keys]
    out: dict = {"per_action": {}}
    for name, fn in METRICS.items():
        errors = [1000.0 * fn(p, t) for p, t in zip(predictions, sequences.targets, strict=True)]
        out["per_action"][name], out[name] = action_wise(errors, actions)
    return out


def evaluate(
    model: Model, sequences: Sequences, *, tta: bool = False, chunk: int = 256
) -> dict:
    """Predict ``sequences`` and score them; adds ``seconds`` (inference wall time)."""
    started = time.perf_counter()
    predictions = predict_sequences(model, sequences.inputs, tta=tta, chunk=chunk)
    seconds = time.perf_counter() - started
    return {**score(predictions, sequences), "seconds": seconds}
