"""Deterministic batching of numpy datasets, and windowed sampling of sequences.

A :class:`Batcher` walks a dataset of ``N`` samples in batches, reshuffling each
epoch from ``np.random.default_rng((seed, epoch))``. Its position (epoch, batch) is
a small dict, so an interrupted run resumes at exactly the next batch. A
:class:`WindowSampler` cuts sequences into fixed-length chunks with edge-padded
context (VideoPose3D's chunked generator) and serves them as a Batcher's source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np

Batch = dict[str, np.ndarray]


class Source(Protocol):
    """A dataset read by index: ``len(source)`` samples, ``source.fetch(indices)`` a batch."""

    def __len__(self) -> int: ...

    def fetch(self, indices: np.ndarray) -> Batch: ...


class _ArraySource:
    """A dict of arrays sharing their leading axis, read by fancy indexing."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        if not arrays:
            raise ValueError("a Batcher needs at least one array")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: (v.shape[0] if v.ndim else None) for k, v in self.arrays.items()}
        if len(set(lengths.values())) != 1 or None in lengths.values():
            raise ValueError(f"arrays must share their leading axis, got lengths {lengths}")
        self.length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.length

    def fetch(self, indices: np.ndarray) -> Batch:
        return {k: v[indices] for k, v in self.arrays.items()}


class _CallableSource:
    def __init__(self, length: int, fetch: Callable[[np.ndarray], Batch]):
        if not isinstance(length, int | np.integer) or length < 0:
            raise ValueError(f"the number of samples must be an integer >= 0, got {length!r}")
        self.length = int(length)
        self.fetch = fetch

    def __len__(self) -> int:
        return self.length


class Batcher:
    """Batches of a dataset, reshuffled each epoch, with a resumable position.

    Args:
      data: a dict of arrays with equal leading axis ``N``; or the number of samples
        ``N`` together with ``fetch``; or a :class:`Source` (e.g. a WindowSampler).
      batch_size: samples per batch (the global batch size).
      fetch: ``fetch(indices) -> dict`` when ``data`` is a count.
      shuffle: permute the samples each epoch with ``default_rng((seed, epoch))``.
      seed: seed of the shuffling and of the per-batch ``transform`` generator.
      drop_last: drop the final short batch (keeps every batch the same shape, so a
        jitted step compiles once).
      transform: optional ``transform(rng, batch) -> batch`` applied to each batch
        (augmentation), with ``rng = default_rng((seed, epoch, batch_index, 1))``:
        a pure function of the position, so a resumed run draws the same numbers.
        With ``process_count > 1`` it is applied to this process's share with
        ``rng = default_rng((seed, epoch, batch_index, 1, process_index))``, so the
        draws are reproducible for a given process count but differ from a
        single-process run's.
      process_index, process_count: in a run of ``P = process_count`` processes,
        yield only rows ``[p * b / P, (p + 1) * b / P)`` of each global batch of ``b``
        samples (``p = process_index``); ``b`` must be a multiple of ``P``. The
        order, ``len`` and position are those of the global batches.

    Iterating yields the remaining batches of the current epoch and then moves to
    the next epoch. ``state()`` / ``restore()`` save and set the position; during
    the loop body of batch ``b`` the position already points at ``b + 1``.

    >>> b = Batcher({"x": np.arange(5)}, batch_size=2, shuffle=False)
    >>> [batch["x"].tolist() for batch in b], len(b), b.state()["epoch"]
    ([[0, 1], [2, 3], [4]], 3, 1)
    """

    def __init__(
        self,
        data: Mapping[str, np.ndarray] | int | Source,
        batch_size: int,
        *,
        fetch: Callable[[np.ndarray], Batch] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        transform: Callable[[np.random.Generator, Batch], Batch] | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if isinstance(data, int | np.integer):
            if fetch is None:
                raise ValueError("a Batcher over a sample count needs a fetch(indices) callable")
            self.source: Source = _CallableSource(data, fetch)
        elif fetch is not None:
            raise ValueError("fetch is only used when data is a sample count")
        elif isinstance(data, Mapping):
            self.source = _ArraySource(data)
        elif hasattr(data, "fetch") and hasattr(data, "__len__"):
            self.source = data
        else:
            raise TypeError(
                "data must be a dict of arrays, a sample count with fetch=, or an object "
                f"with __len__ and fetch(indices); got {type(data).__name__}"
            )
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.num_samples = len(self.source)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.transform = transform
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"process_index must lie in [0, process_count={process_count}), got {process_index}"
            )
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        last = self.num_samples % self.batch_size
        for size in (self.batch_size, last if last and not drop_last else self.batch_size):
            if size % self.process_count:
                raise ValueError(
                    f"a batch of {size} samples does not split over {self.process_count} "
                    "processes: use a batch size (and, without drop_last, a dataset size) "
                    "that is a multiple of the process count"
                )
        if len(self) == 0:
            raise ValueError(
                f"no batches: {self.num_samples} samples with batch_size={self.batch_size}"
                f"{' and drop_last=True' if drop_last else ''}"
            )
        self.epoch = 0
        self.batch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch``, shape ``[N]``."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng((self.seed, epoch)).permutation(self.num_samples)

    def state(self) -> dict[str, int]:
        """The position, plus the settings a restore must match."""
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
        }

    def restore(self, state: Mapping[str, int]) -> None:
        """Set the position from ``state()``; raise if the dataset or settings differ."""
        for key in ("seed", "num_samples", "batch_size"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"cannot restore the batcher position: saved {key}={state[key]} but this "
                    f"batcher has {key}={getattr(self, key)}"
                )
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or not 0 <= batch <= len(self):
            raise ValueError(
                f"batcher position (epoch={epoch}, batch={batch}) is out of range for "
                f"{len(self)} batches per epoch"
            )
        self.epoch, self.batch = epoch, batch

    def __iter__(self) -> Iterator[Batch]:
        order = self.order(self.epoch)
        while self.batch < len(self):
            b = self.batch
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            key = (self.seed, self.epoch, b, 1)
            if self.process_count > 1:
                share = len(indices) // self.process_count
                indices = indices[self.process_index * share : (self.process_index + 1) * share]
                key += (self.process_index,)
            batch = self.source.fetch(indices)
            if self.transform is not None:
                batch = self.transform(np.random.default_rng(key), batch)
            self.batch = b + 1
            yield batch
        self.epoch, self.batch = self.epoch + 1, 0


class WindowSampler:
    """Fixed-length chunks of sequences with edge-padded receptive-field context.

    Each sequence of ``T`` frames is cut into ``ceil(T / L)`` chunks of ``L`` output
    frames, centred on the sequence: chunk ``k`` covers target frames
    ``[k * L - offset, (k + 1) * L - offset)`` with ``offset = (ceil(T/L) * L - T) // 2``.
    Its input window is ``[start - pad - causal_shift, stop + pad - causal_shift)``
    (``L + 2 * pad`` frames). Frames outside the sequence repeat its first or last
    frame (``np.pad`` mode ``'edge'``), for inputs and targets alike.

    Args:
      inputs: sequences shaped ``[T_i, ...]`` (e.g. 2D poses ``[T_i, J, 2]``).
      targets: sequences shaped ``[T_i, ...]`` with the same ``T_i``, or ``None``.
      chunk_length: output frames per sample ``L``.
      pad: context frames per side, ``(receptive_field - 1) // 2``.
      causal_shift: shift of the input window into the past (``pad`` for a causal
        model, else 0).
      mirrored_copies: list every chunk twice, the copy marked ``flip`` (VideoPose3D's
        training augmentation: each epoch sees every chunk plain and mirrored; apply
        the mirror with ``augment.mirror_where(batch["flip"], ...)``).

    ``fetch(indices)`` returns ``inputs [B, L + 2 pad, ...]``, ``targets [B, L, ...]``
    (when given), ``sequence [B]`` (index into the sequence lists), ``start [B]``
    (first target frame; may be negative for a padded chunk; the chunk covers
    ``start .. start + L``) and ``flip [B]`` (bool; see ``mirrored_copies``).

    >>> s = WindowSampler([np.arange(5.0)], [np.arange(5.0)], chunk_length=2, pad=1)
    >>> len(s), s.fetch(np.array([2]))["inputs"].tolist()
    (3, [[3.0, 4.0, 4.0, 4.0]])
    """

    def __init__(
        self,
        inputs: Sequence[np.ndarray],
        targets: Sequence[np.ndarray] | None,
        chunk_length: int,
        pad: int = 0,
        causal_shift: int = 0,
        mirrored_copies: bool = False,
    ):
        if chunk_length < 1 or pad < 0:
            raise ValueError(f"need chunk_length >= 1 and pad >= 0, got {chunk_length}, {pad}")
        if not inputs:
            raise ValueError("WindowSampler needs at least one sequence")
        if targets is not None and len(targets) != len(inputs):
            raise ValueError(f"{len(inputs)} input sequences but {len(targets)} target sequences")
        self.chunk_length = int(chunk_length)
        self.pad = int(pad)
        self.causal_shift = int(causal_shift)
        self.num_sequences = len(inputs)
        # Every window lies within ``margin`` frames of its sequence, so windows are
        # plain slices of the sequences edge-padded once by ``margin``.
        self._margin = self.chunk_length + self.pad + abs(self.causal_shift)
        chunks = []
        for i, seq in enumerate(inputs):
            frames = _check_sequence(seq, f"input sequence {i}")
            if targets is not None:
                t = _check_sequence(targets[i], f"target sequence {i}")
                if t != frames:
                    raise ValueError(
                        f"sequence {i}: inputs have {frames} frames but targets have {t}"
                    )
            n = -(-frames // self.chunk_length)
            offset = (n * self.chunk_length - frames) // 2
            starts = np.arange(n) * self.chunk_length - offset
            plain = np.stack([np.full(n, i), starts, np.zeros(n, int)], axis=1)
            chunks.append(plain)
            if mirrored_copies:
                chunks.append(plain + [0, 0, 1])
        self.chunks = np.concatenate(chunks).astype(np.int64)
        self._inputs, self._input_base = self._pack(inputs)
        self._targets, self._target_base = (None, None) if targets is None else self._pack(targets)

    def _pack(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Edge-pad each sequence by the margin and concatenate; return the index of frame 0."""
        m = self._margin
        trailing = {np.shape(s)[1:] for s in sequences}
        if len(trailing) != 1:
            raise ValueError(f"sequences must share their per-frame shape, got {sorted(trailing)}")
        padded = [
            np.pad(np.asarray(s), [(m, m)] + [(0, 0)] * (np.ndim(s) - 1), mode="edge")
            for s in sequences
        ]
        lengths = np.array([len(p) for p in padded])
        base = np.concatenate([[0], np.cumsum(lengths)[:-1]]) + m
        return np.concatenate(padded), base

    def __len__(self) -> int:
        return len(self.chunks)

    def fetch(self, indices: np.ndarray) -> Batch:
        seq, start, flip = self.chunks[np.asarray(indices)].T
        span = np.arange(self.chunk_length)
        first_input = self._input_base[seq] + start - self.pad - self.causal_shift
        window = np.arange(self.chunk_length + 2 * self.pad)
        batch = {
            "inputs": self._inputs[first_input[:, None] + window[None, :]],
            "sequence": seq,
            "start": start,
            "flip": flip.astype(bool),
        }
        if self._targets is not None:
            batch["targets"] = self._targets[(self._target_base[seq] + start)[:, None] + span]
        return batch


def _check_sequence(seq: np.ndarray, what: str) -> int:
    """Raise unless ``seq`` is a non-empty finite array ``[T, ...]``; return ``T``."""
    seq = np.asarray(seq)
    if seq.ndim < 1 or seq.shape[0] == 0:
        raise ValueError(f"{what} must have shape [T, ...] with T >= 1, got {seq.shape}")
    if np.issubdtype(seq.dtype, np.floating) and not np.isfinite(seq).all():
        bad = np.flatnonzero(~np.isfinite(seq).reshape(len(seq), -1).all(axis=1))
        raise ValueError(f"{what} has non-finite values at frames {bad[:10].tolist()}")
    return seq.shape[0]
