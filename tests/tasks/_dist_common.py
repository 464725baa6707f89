"""A small BatchNorm network and its training run, shared by the distributed tests.

The test processes and their subprocesses (``_dist_devices.py``, ``_dist_process.py``)
train the same model on the same data, so their states can be compared.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from chiral_tasks.common.data import Batcher
from chiral_tasks.common.distributed import process_shard
from chiral_tasks.common.train import TrainConfig, Trainer

BATCH = 16
SAMPLES = 64  # 4 steps per epoch
EPOCHS = 2


class Net(nnx.Module):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear; ``x [B, 6] -> [B, 3]``."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.inp = nnx.Linear(6, 32, use_bias=False, rngs=rngs)  # BatchNorm follows
        self.norm = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(32, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.norm(self.inp(x)))))


def mse(model, batch):
    err = model(batch["x"]) - batch["y"]
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def dataset() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 6)).astype(np.float32)
    y = np.tanh(x[:, :3] * x[:, 3:]).astype(np.float32)
    return {"x": x, "y": y}


def make_run(*, mesh=None, checkpoint_dir=None, resume=False, batch=BATCH, **settings):
    """A trainer and its batcher; ``settings`` override the TrainConfig."""
    config = TrainConfig(
        epochs=EPOCHS,
        batch_size=batch,
        lr=1e-2,
        progress=False,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=3,
        **settings,
    )
    batcher = Batcher(dataset(), batch, seed=1, **process_shard())
    trainer = Trainer(Net(rngs=nnx.Rngs(0)), mse, config, len(batcher), resume=resume, mesh=mesh)
    return trainer, batcher


def state_arrays(trainer: Trainer) -> dict[str, np.ndarray]:
    """The trained parameters and BatchNorm statistics, by path, as numpy."""
    state = nnx.state(trainer.model(), nnx.Param, nnx.BatchStat)
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def save_state(trainer: Trainer, path: str) -> None:
    np.savez(path, **state_arrays(trainer), step=np.int64(trainer.step))
