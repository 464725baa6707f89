"""Train the shared test network on 4 simulated CPU devices; write the states to compare.

Run as ``XLA_FLAGS=--xla_force_host_platform_device_count=4 python _dist_devices.py OUT``
(the flag must be set before JAX starts). Writes to the folder ``OUT``:

- ``one.npz``: the run on a one-device mesh, ``four.npz``: the same run on all 4;
- ``checkpoints/``: a 4-device run stopped after step 7 (checkpoints at steps 3, 4, 6);
- ``report.json``: the step's shardings and the error for a batch 4 devices cannot split.
"""

import json
import os
import sys

import jax
from _dist_common import make_run, save_state

from chiral_tasks.common.distributed import data_mesh, shard_batch


def main(out: str) -> None:
    if jax.device_count() != 4:
        sys.exit(f"expected 4 simulated devices, found {jax.device_count()}")
    report = {}
    one, batcher = make_run(mesh=data_mesh(jax.devices()[:1]))
    one.fit(batcher)
    save_state(one, os.path.join(out, "one.npz"))

    four, batcher = make_run()
    four.fit(batcher)
    save_state(four, os.path.join(out, "four.npz"))
    report["mesh_devices"] = four.mesh.size
    report["param_replicated"] = all(
        x.sharding.is_fully_replicated and len(x.sharding.device_set) == 4
        for x in jax.tree.leaves(four.params)
    )
    sharded = shard_batch(next(iter(batcher)), four.mesh)
    report["batch_shard_rows"] = [s.data.shape[0] for s in sharded["x"].addressable_shards]

    stopped, batcher = make_run(checkpoint_dir=os.path.join(out, "checkpoints"))
    stopped.fit(batcher, max_steps=7)
    stopped.close()

    try:
        uneven, batcher = make_run(batch=6)
        uneven.fit(batcher)
    except ValueError as err:
        report["uneven_error"] = str(err)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])
