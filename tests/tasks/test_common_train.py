"""The task core's trainer, optimizer factory, checkpoints, prediction helper and CLI."""

import os
import re
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import chiral_tasks.cli
from chiral_tasks.common.checkpoint import Checkpointer, CheckpointError
from chiral_tasks.common.cli import (
    ArgumentParser,
    UsageError,
    add_command,
    add_data_args,
    add_run_args,
    add_train_args,
    config_from_args,
)
from chiral_tasks.common.data import Batcher
from chiral_tasks.common.train import (
    TrainConfig,
    Trainer,
    learning_rate,
    load_trained,
    make_optimizer,
    predict,
)


class TinyNet(nnx.Module):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear: every kind of state a task has."""

    def __init__(self, width: int = 8, *, rngs: nnx.Rngs):
        self.inp = nnx.Linear(3, width, rngs=rngs)
        self.norm = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.25, rngs=rngs)
        self.out = nnx.Linear(width, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.norm(self.inp(x)))))


def mse(model, batch):
    err = model(batch["x"]) - batch["y"]
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def dataset(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2]], axis=1).astype(np.float32)
    return {"x": x, "y": y}


def make_trainer(directory=None, *, width=8, resume=False, epoch_hook=None, loss=mse, **config):
    settings = dict(epochs=2, batch_size=8, lr=1e-2, lr_decay=0.9, amsgrad=True, progress=False)
    settings.update(config)
    cfg = TrainConfig(checkpoint_dir=None if directory is None else str(directory), **settings)
    batcher = Batcher(dataset(), cfg.batch_size, seed=5)
    model = TinyNet(width, rngs=nnx.Rngs(0))
    trainer = Trainer(model, loss, cfg, len(batcher), resume=resume, epoch_hook=epoch_hook)
    return trainer, batcher


def _raw(x):
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def assert_trees_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(_raw(x)), np.asarray(_raw(y)))


def without_time(history):
    return [{k: v for k, v in entry.items() if k != "time"} for entry in history]


# -- optimizer --------------------------------------------------------------------------


def test_learning_rate_schedules_are_per_epoch():
    decay = learning_rate(TrainConfig(lr=1.0, lr_decay=0.5), steps_per_epoch=4)
    assert [float(decay(s)) for s in (0, 3, 4, 8, 9)] == [1.0, 1.0, 0.5, 0.25, 0.25]
    steps = learning_rate(TrainConfig(lr=1.0, optimizer="sgd", lr_steps=(2, 3)), steps_per_epoch=4)
    assert [float(steps(s)) for s in (0, 7, 8, 11, 12)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="either lr_decay or lr_steps"):
        TrainConfig(lr_decay=0.9, lr_steps=(3,))
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        TrainConfig(optimizer="sgd", nesterov=True)


def test_sgd_matches_pytorch_momentum_with_l2_weight_decay():
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)
    tx = make_optimizer(cfg, steps_per_epoch=10)
    w = jnp.array([1.0, -2.0])
    grads = [jnp.array([0.5, 0.25]), jnp.array([-1.0, 0.5])]
    state = tx.init(w)
    ref_w, buf = np.array([1.0, -2.0]), np.zeros(2)
    for g in grads:
        updates, state = tx.update(g, state, w)
        w = optax.apply_updates(w, updates)
        d = np.asarray(g) + 0.01 * ref_w  # torch.optim.SGD: d = g + wd * w
        buf = 0.9 * buf + d
        ref_w = ref_w - 0.1 * buf
    np.testing.assert_allclose(np.asarray(w), ref_w, rtol=1e-6)


def test_clip_norm_bounds_the_first_adam_step_input():
    cfg = TrainConfig(optimizer="sgd", lr=1.0, clip_norm=1.0)
    tx = make_optimizer(cfg, steps_per_epoch=1)
    updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
    np.testing.assert_allclose(np.asarray(updates), [-0.6, -0.8], rtol=1e-6)


# -- training ---------------------------------------------------------------------------


def fresh_loss():
    """A loss function no other trainer has compiled, so its trace count starts at 0."""

    def loss(model, batch):
        return mse(model, batch)

    return loss


def test_fit_trains_updates_state_and_compiles_once():
    def same_momentum(model, epoch):
        model.norm.momentum = 0.9

    trainer, batcher = make_trainer(loss=fresh_loss(), epoch_hook=same_momentum, epochs=4)
    val = dataset(16, seed=1)

    def val_mse(model):
        pred = predict(model, [val], lambda m, b: m(b["x"]))
        return float(np.mean((pred - val["y"]) ** 2))

    initial = val_mse(trainer.model())
    seen = []

    def evaluate(model, epoch):
        seen.append((epoch, model.drop.deterministic, model.norm.use_running_average))
        return {"val_mse": val_mse(model)}

    history = trainer.fit(batcher, eval_fn=evaluate)
    assert trainer.trace_count == 1
    assert [e["epoch"] for e in history] == [1, 2, 3, 4] and trainer.step == 4 * len(batcher)
    assert seen == [(e, True, True) for e in range(4)]
    assert history[1]["lr"] == pytest.approx(1e-2 * 0.9)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_mse"] < initial
    after = trainer.model()
    assert not np.allclose(after.norm.mean[...], 0.0)  # running statistics moved
    assert int(after.drop.rngs.count[...]) == trainer.step  # one dropout draw per step


def test_epoch_hook_sees_each_epoch_and_static_changes_recompile():
    calls = []

    def decay_momentum(model, epoch):
        calls.append(epoch)
        model.norm.momentum = 0.9 - 0.1 * epoch

    trainer, batcher = make_trainer(loss=fresh_loss(), epoch_hook=decay_momentum)
    trainer.fit(batcher)
    assert calls == [0, 1]
    assert trainer.trace_count == 2
    assert trainer.model().norm.momentum == pytest.approx(0.8)


def test_interrupted_run_resumes_bit_for_bit(tmp_path):
    straight, batcher = make_trainer()
    straight.fit(batcher)

    # 5 batches per epoch; checkpoints at steps 3, 5 (epoch end), 6 and 8, where the run
    # stops: stopping saves, so the resumed run continues at step 9.
    first, batcher = make_trainer(tmp_path, checkpoint_every=3)
    assert len(batcher) == 5
    first.fit(batcher, max_steps=8)
    assert first.step == 8 and len(first.history) == 1
    first.close()

    resumed, batcher = make_trainer(tmp_path, checkpoint_every=3, resume=True)
    assert resumed.step == 8 and resumed.epoch == 1
    history = resumed.fit(batcher)
    assert resumed.trace_count == 0  # same structure and optimizer: the step is reused
    assert resumed.step == straight.step == 10
    assert_trees_identical(resumed.params, straight.params)
    assert_trees_identical(resumed.opt_state, straight.opt_state)
    assert_trees_identical(nnx.state(resumed.model()), nnx.state(straight.model()))
    assert without_time(history) == without_time(straight.history)


def test_ctrl_c_saves_the_last_step_and_resume_loses_nothing(tmp_path, capsys):
    straight, batcher = make_trainer()
    straight.fit(batcher)

    first, batcher = make_trainer(tmp_path)  # checkpoints only at epoch ends
    calls = []

    def interrupt_at_step_7(rng, batch):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return batch

    batcher.transform = interrupt_at_step_7
    with pytest.raises(KeyboardInterrupt):
        first.fit(batcher)
    assert first.step == 6
    first.close()

    capsys.readouterr()
    resumed, batcher = make_trainer(tmp_path, resume=True, progress=True)
    assert resumed.step == 6
    assert "resuming from the checkpoint at step 6 (epoch 2, batch 1)" in capsys.readouterr().err
    history = resumed.fit(batcher)
    assert_trees_identical(resumed.params, straight.params)
    assert_trees_identical(resumed.opt_state, straight.opt_state)
    assert without_time(history) == without_time(straight.history)


def test_resume_needs_a_readable_matching_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        make_trainer(tmp_path / "missing", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        make_trainer(tmp_path / "empty", resume=True)

    trainer, batcher = make_trainer(tmp_path / "run", epochs=1)
    trainer.fit(batcher)
    trainer.close()
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        make_trainer(tmp_path / "run", epochs=1)
    with pytest.raises(CheckpointError, match="does not fit"):
        make_trainer(tmp_path / "run", width=4, resume=True)
    with pytest.raises(CheckpointError, match="lr was 0.01, now 0.02"):
        make_trainer(tmp_path / "run", lr=0.02, resume=True)

    step_dir = tmp_path / "run" / str(trainer.step)
    for root, _, files in os.walk(step_dir):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    with (
        pytest.warns(UserWarning, match=f"cannot read checkpoint step {trainer.step}"),
        pytest.raises(CheckpointError, match=r"no readable checkpoint .* \(steps \[5\]\)"),
    ):
        make_trainer(tmp_path / "run", resume=True)


def _damage(step_dir, keep_bytes=None):
    """Overwrite (``keep_bytes=None``) or truncate every file of a checkpoint step."""
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            if keep_bytes is None:
                with open(path, "wb") as f:
                    f.write(b"garbage")
            else:
                os.truncate(path, min(keep_bytes, os.path.getsize(path)))


@pytest.mark.parametrize("keep_bytes", [None, 10])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, keep_bytes):
    straight, batcher = make_trainer(tmp_path / "straight", keep=3)
    straight.fit(batcher)
    straight.close()

    first, batcher = make_trainer(tmp_path / "run", keep=3, checkpoint_every=2)
    first.fit(batcher, max_steps=4)
    first.close()
    _damage(tmp_path / "run" / "4", keep_bytes)
    with pytest.warns(UserWarning, match="cannot read checkpoint step 4"):
        resumed, batcher = make_trainer(tmp_path / "run", keep=3, resume=True)
    assert resumed.step == 2
    assert not (tmp_path / "run" / "4").exists()
    assert [p.name.split(".")[0] for p in (tmp_path / "run.damaged").iterdir()] == ["4"]
    resumed.fit(batcher)  # saves step 4 again on its way
    resumed.close()
    assert_trees_identical(resumed.params, straight.params)
    assert_trees_identical(resumed.opt_state, straight.opt_state)


def test_checkpointer_round_trips_prng_keys(tmp_path):
    tree = {"key": jax.random.key(3), "w": jnp.arange(4.0), "n": np.int32(7)}
    store = Checkpointer(tmp_path / "ck", keep=1)
    store.save(1, tree, {"note": "x"})
    store.save(2, tree, {"note": "y"})
    assert store.all_steps() == [2]
    restored, meta = store.restore(tree)
    assert meta == {"note": "y"}
    assert_trees_identical(restored, tree)
    assert jax.random.key_impl(restored["key"]) == jax.random.key_impl(tree["key"])


def test_nan_loss_raises_naming_the_step():
    trainer, _ = make_trainer()
    data = dataset()
    data["x"][17] = np.nan  # third batch of 8 without shuffling
    batcher = Batcher(data, 8, shuffle=False)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3 \(epoch 1, batch 3/5\)"):
        trainer.fit(batcher)


def test_fit_rejects_a_batcher_of_another_length():
    trainer, _ = make_trainer()
    with pytest.raises(ValueError, match="steps_per_epoch=5"):
        trainer.fit(Batcher(dataset(), 4))


def test_predict_runs_in_eval_mode_without_changing_the_model():
    model = TinyNet(rngs=nnx.Rngs(1))
    data = dataset(10)
    out = predict(model, Batcher(data, 4, shuffle=False), lambda m, b: {"y": m(b["x"])})
    assert out["y"].shape == (10, 2) and isinstance(out["y"], np.ndarray)
    assert model.drop.deterministic is False  # the caller's model keeps its mode
    model.eval()
    np.testing.assert_allclose(out["y"], np.asarray(model(data["x"])), rtol=1e-5, atol=1e-6)


# -- command line -----------------------------------------------------------------------


def test_train_args_override_the_task_defaults():
    parser = ArgumentParser()
    add_train_args(parser)
    add_data_args(parser, "lifting", help="the dataset")
    add_run_args(parser, "lifting", "train")
    quick = TrainConfig(epochs=4, lr=1e-3)
    paper = TrainConfig(epochs=80, lr=1e-3, lr_decay=0.95, amsgrad=True)
    args = parser.parse_args(["--lr", "0.01", "--no-progress"])
    cfg = config_from_args(args, quick, paper)
    assert (cfg.epochs, cfg.lr, cfg.progress, cfg.checkpoint_dir) == (4, 0.01, False, None)
    assert args.data == os.path.join("data", "lifting") and args.allow_pickle is False
    assert args.out == os.path.join("runs", "lifting", "train")
    assert (args.resume, args.overwrite) == (False, False)
    paper_cfg = config_from_args(parser.parse_args(["--paper"]), quick, paper)
    assert (paper_cfg.epochs, paper_cfg.lr_decay, paper_cfg.amsgrad) == (80, 0.95, True)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--max-steps", "0"], "argument --max-steps: must be >= 1, got 0"),
        (["--lr", "-1"], "argument --lr: must be > 0, got -1.0"),
        (["--lr", "nan"], "argument --lr: must be finite"),
        (["--batch-size", "x"], "argument --batch-size: expected an integer, got 'x'"),
    ],
)
def test_train_args_refuse_values_that_cannot_work(flags, message):
    parser = ArgumentParser()
    add_train_args(parser)
    with pytest.raises(UsageError, match=re.escape(message)):
        parser.parse_args(flags)


def test_chiral_dispatches_to_a_registered_task(monkeypatch, tmp_path):
    ran = []

    def train(args):
        ran.append(config_from_args(args, TrainConfig()))
        return 3

    def register(subparsers):
        add_train_args(add_command(subparsers, "train", train, "train the model"))

    monkeypatch.setitem(sys.modules, "fake_task_cli", types.SimpleNamespace(register=register))
    monkeypatch.setitem(chiral_tasks.cli.TASKS, "fake", ("fake_task_cli", "a test task"))
    monkeypatch.setitem(chiral_tasks.cli.TASKS, "broken", ("no_such_module_here", "missing"))
    assert chiral_tasks.cli.main(["fake", "train", "--epochs", "2"]) == 3
    assert ran[0].epochs == 2
    assert chiral_tasks.cli.main(["broken", "train"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        chiral_tasks.cli.main(["fake", "train", "--help"])
    assert exit_info.value.code == 0


def test_chiral_help_exits_zero_and_lists_the_tasks():
    done = subprocess.run(
        [sys.executable, "-m", "chiral_tasks", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in ("lifting", "forecasting", "recognition"):
        assert name in done.stdout


def test_decay_every_two_epochs_is_a_staircase():
    config = TrainConfig(lr=1.0, lr_decay=0.5, lr_decay_every=2)
    schedule = learning_rate(config, steps_per_epoch=3)
    assert [float(schedule(s)) for s in (0, 5, 6, 11, 12)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    with pytest.raises(ValueError, match="lr_decay_every must be >= 1"):
        TrainConfig(lr_decay_every=0)


def test_a_run_of_an_older_checkpoint_format_is_refused_in_one_line(tmp_path):
    (tmp_path / "run.json").write_text('{"config": {"train": {}}}')
    with pytest.raises(CheckpointError, match="format 1, this version reads 2; retrain it"):
        load_trained(tmp_path, build=lambda config: None, loss_fn=None, task="toy")
