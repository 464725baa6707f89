"""Data parallelism on JAX's own machinery: one mesh axis, global batches, many hosts.

Every device of every process joins one 1-D :class:`jax.sharding.Mesh` with the
axis ``"data"``. Model and optimizer state are replicated (``P()``); each batch is
split along its leading axis (``P("data")``), so device ``d`` of ``D`` holds rows
``[d * B / D, (d + 1) * B / D)`` of the global batch of ``B`` samples. ``jax.jit``
compiles the step once for the whole mesh: XLA inserts the gradient all-reduce,
and reductions over the batch axis (a loss mean, BatchNorm statistics) are over the
global batch, so a step on ``D`` devices computes what one device would.

Batch sizes are always global. With several processes, each process reads only
its ``1 / P`` share of every global batch (``Batcher(..., **process_shard())``)
and :func:`shard_batch` assembles the global array from the shares.

Multi-host runs start every process with the same coordinator address:

>>> initialize("10.0.0.1:1234", num_processes=2, process_id=0)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"
_JOINED: list[tuple[str, int, int]] = []  # the run this process joined, if any


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run; call before any other JAX call of the process.

    Args:
      coordinator_address: ``host:port`` of process 0, reachable from every process.
      num_processes: the number of processes in the run.
      process_id: this process's index in ``[0, num_processes)``.

    On the CPU backend the processes exchange data over gloo (TCP). Calling again
    with the same arguments does nothing.
    """
    if not isinstance(coordinator_address, str) or ":" not in coordinator_address:
        raise ValueError(
            f"the coordinator address must be 'host:port', got {coordinator_address!r}"
        )
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must lie in [0, {num_processes}), got {process_id}")
    settings = (coordinator_address, num_processes, process_id)
    if _JOINED:
        if _JOINED[0] != settings:
            raise RuntimeError(f"already joined the run {_JOINED[0]}, cannot join {settings}")
        return
    # Only the CPU client reads this; GPU and TPU processes use their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    _JOINED.append(settings)


def process_shard() -> dict[str, int]:
    """This process's share of the data: ``Batcher(..., **process_shard())``."""
    return {"process_index": jax.process_index(), "process_count": jax.process_count()}


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices of all processes).

    Devices are ordered by process, so each process's devices hold one contiguous
    block of the batch: the block its :class:`~chiral_tasks.common.data.Batcher` reads.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("a mesh needs at least one device")
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(ordered), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of a value every device holds whole (parameters, optimizer state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch leaf: split along its leading (batch) axis."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _place(x, sharding: NamedSharding) -> jax.Array:
    """``x`` replicated on ``sharding``'s devices; each process must pass the same value."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if _is_key(x):
        return jax.random.wrap_key_data(
            _place(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x)
        )
    host = to_host(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree, mesh: Mesh):
    """Every leaf of ``tree`` placed whole on every device of ``mesh``."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: _place(x, sharding), tree)


def to_host(x) -> np.ndarray:
    """A numpy copy of ``x``; for a replicated array, read from a local device."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError("an array split over several processes has no single host copy")
        x = x.addressable_data(0)
    return np.asarray(x)


def local_copy(tree):
    """``tree`` with every replicated array replaced by its copy on one local device.

    For evaluation and prediction outside the sharded step: the copy lives on this
    process's first device, so plain ``jax.jit`` calls run there.
    """

    def local(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
            if not x.is_fully_replicated:
                raise ValueError("local_copy expects replicated arrays")
            return x.addressable_data(0)
        return x

    return jax.tree.map(local, tree)


def check_divisible(global_batch: int, mesh: Mesh, where: str = "the batch") -> None:
    """Raise unless a global batch of ``global_batch`` samples splits evenly over the mesh."""
    if global_batch % mesh.size:
        raise ValueError(
            f"{where} has {global_batch} samples, which does not split evenly over "
            f"{mesh.size} devices: use a global batch size that is a multiple of "
            f"{mesh.size} (and drop_last=True when the last batch would be short)"
        )


def shard_batch(batch, mesh: Mesh) -> Any:
    """The global batch, sharded along its leading axis, from this process's share.

    Args:
      batch: a pytree of arrays, each with this process's ``b = B / P`` rows of the
        global batch (``b = B`` in a single-process run); scalars are replicated.
      mesh: the data mesh.

    Returns:
      the same pytree of global ``jax.Array`` s, leading axis ``B``, split over the mesh.
    """
    count = jax.process_count()
    leaves, treedef = jax.tree_util.tree_flatten_with_path(batch)
    if not leaves:
        raise ValueError("a batch must hold at least one array")
    rows = {np.shape(x)[0] for _, x in leaves if np.ndim(x)}
    if len(rows) > 1:
        shapes = {jax.tree_util.keystr(p): np.shape(x) for p, x in leaves}
        raise ValueError(f"batch arrays must share their leading (batch) axis, got {shapes}")
    if rows:
        check_divisible(rows.pop() * count, mesh)
    sharded = []
    for _, x in leaves:
        x = np.asarray(x)
        x = x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)
        if x.ndim == 0:
            sharded.append(_place(x, replicated(mesh)))
        else:
            shape = (x.shape[0] * count, *x.shape[1:])
            sharded.append(jax.make_array_from_process_local_data(batch_sharding(mesh), x, shape))
    return jax.tree.unflatten(treedef, sharded)
