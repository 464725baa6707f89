"""One process of a 2-process training run on the CPU backend (gloo over loopback).

Run as ``python _dist_process.py PORT PROCESS_ID OUT`` in two processes, each with
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (4 devices in all). Each
process reads its half of every batch, trains the shared test network, and writes
its copy of the final state to ``OUT/process<PROCESS_ID>.npz``.
"""

import os
import sys

import jax
from _dist_common import make_run, save_state

from chiral_tasks.common.distributed import initialize


def main(port: str, process_id: str, out: str) -> None:
    initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))
    if (jax.process_count(), jax.device_count(), jax.local_device_count()) != (2, 4, 2):
        sys.exit(f"unexpected topology: {jax.process_count()} processes, {jax.devices()}")
    trainer, batcher = make_run()
    assert batcher.process_count == 2
    trainer.fit(batcher)
    save_state(trainer, os.path.join(out, f"process{process_id}.npz"))


if __name__ == "__main__":
    main(*sys.argv[1:])
