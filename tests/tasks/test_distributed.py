"""Data-parallel training: 4 simulated devices, 2 processes, resharded checkpoints, bf16.

The multi-device runs need their device count before JAX starts, so they run in
subprocesses (``_dist_devices.py``, ``_dist_process.py``) and are compared here with
the same run on this process's single device.
"""

import argparse
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _dist_common import make_run, state_arrays
from flax import nnx

from chiral_jax import ChiralConv1d, ChiralLinear, assert_equivariant
from chiral_jax.skeletons import H36M_17
from chiral_tasks.common import cli, distributed
from chiral_tasks.common.data import Batcher
from chiral_tasks.common.train import TrainConfig

HERE = os.path.dirname(os.path.abspath(__file__))
# A step on D devices sums the same numbers in another order: float32 round-off only.
RTOL, ATOL = 1e-5, 1e-6
# bfloat16 equivariance error, max |f(T x) - T f(x)| / max |f(x)|, measured on CPU over
# 20 seeds: 0 for ChiralLinear, 1.2e-4 for ChiralConv1d, 1.9e-3 for a conv-conv-linear
# stack (float32: 4e-7). The tolerances leave a margin over those.
BF16_LAYER_RTOL, BF16_STACK_RTOL = 1e-3, 1e-2


def run_script(args, *, devices):
    """Start ``python args...`` on ``devices`` simulated CPU devices."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=240) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"subprocess timed out:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def assert_states_close(got: dict, want: dict, rtol=RTOL, atol=ATOL):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol, err_msg=key)


def one_device_reference() -> dict:
    trainer, batcher = make_run()
    trainer.fit(batcher)
    return state_arrays(trainer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- several devices and processes ------------------------------------------------------


@pytest.mark.slow
def test_four_devices_train_like_one_and_their_checkpoint_resumes_on_one(tmp_path):
    finish(run_script([os.path.join(HERE, "_dist_devices.py"), str(tmp_path)], devices=4))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mesh_devices"] == 4 and report["param_replicated"]
    assert report["batch_shard_rows"] == [4, 4, 4, 4]  # a global batch of 16
    assert "6 samples" in report["uneven_error"] and "multiple of 4" in report["uneven_error"]

    one, four = np.load(tmp_path / "one.npz"), np.load(tmp_path / "four.npz")
    assert int(four["step"]) == 8
    assert_states_close(dict(four), dict(one))
    # This process has one device: the 4-device checkpoint of step 7 (saved when the run
    # stopped) continues here.
    assert jax.device_count() == 1
    resumed, batcher = make_run(checkpoint_dir=str(tmp_path / "checkpoints"), resume=True)
    assert resumed.step == 7 and resumed.mesh.size == 1
    resumed.fit(batcher)
    assert resumed.step == 8
    assert_states_close(state_arrays(resumed), {k: four[k] for k in four if k != "step"})


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    port = free_port()
    script = os.path.join(HERE, "_dist_process.py")
    workers = [run_script([script, str(port), str(i), str(tmp_path)], devices=2) for i in range(2)]
    for worker in workers:
        finish(worker)
    want = one_device_reference()
    for i in range(2):
        got = np.load(tmp_path / f"process{i}.npz")
        assert int(got["step"]) == 8
        assert_states_close({k: got[k] for k in got if k != "step"}, want)


# -- the data pipeline ------------------------------------------------------------------


def test_batcher_shares_partition_every_global_batch():
    data = {"x": np.arange(24)}
    whole = [b["x"] for b in Batcher(data, 6, seed=2)]
    shares = [list(Batcher(data, 6, seed=2, process_index=p, process_count=3)) for p in range(3)]
    assert all(len(s) == len(whole) == 4 for s in shares)
    for step, batch in enumerate(whole):
        parts = [shares[p][step]["x"] for p in range(3)]
        assert [len(part) for part in parts] == [2, 2, 2]
        np.testing.assert_array_equal(np.concatenate(parts), batch)

    def noise(rng, batch):
        return {"x": batch["x"], "noise": rng.random(len(batch["x"]))}

    drawn = [
        next(iter(Batcher(data, 6, transform=noise, process_index=p, process_count=2)))["noise"]
        for p in range(2)
    ]
    assert not np.allclose(drawn[0], drawn[1])  # each process draws its own numbers

    with pytest.raises(ValueError, match="does not split over 4 processes"):
        Batcher(data, 6, process_count=4)
    with pytest.raises(ValueError, match="does not split over 4 processes"):
        Batcher({"x": np.arange(22)}, 8, process_count=4)  # the short last batch of 6
    Batcher({"x": np.arange(22)}, 8, process_count=4, drop_last=True)
    with pytest.raises(ValueError, match="process_index must lie"):
        Batcher(data, 6, process_index=2, process_count=2)


def test_trainer_refuses_a_batcher_that_reads_another_share():
    trainer, _ = make_run()
    other = Batcher({"x": np.zeros((64, 6)), "y": np.zeros((64, 3))}, 16, process_count=2)
    with pytest.raises(ValueError, match="process 0 of 1"):
        trainer.fit(other)


def test_shard_batch_keeps_values_and_rejects_ragged_batches():
    mesh = distributed.data_mesh()
    batch = {"x": np.arange(6.0).reshape(3, 2), "n": np.int32(4)}
    sharded = distributed.shard_batch(batch, mesh)
    assert sharded["x"].dtype == jnp.float32 and sharded["x"].sharding.mesh == mesh
    np.testing.assert_array_equal(np.asarray(sharded["x"]), batch["x"])
    assert int(sharded["n"]) == 4
    with pytest.raises(ValueError, match="share their leading"):
        distributed.shard_batch({"x": np.zeros((3, 2)), "y": np.zeros((2,))}, mesh)


# -- mixed precision --------------------------------------------------------------------


def test_bfloat16_compute_keeps_float32_state_and_tracks_float32_training():
    want = one_device_reference()
    trainer, batcher = make_run(compute_dtype="bfloat16")
    history = trainer.fit(batcher)
    got = state_arrays(trainer)
    assert all(x.dtype == np.float32 for x in got.values())
    moments = [x for x in jax.tree.leaves(trainer.opt_state) if x.ndim]
    assert moments and all(x.dtype == jnp.float32 for x in moments)
    assert np.isfinite(history[-1]["loss"]) and trainer.trace_count == 1
    assert_states_close(got, want, rtol=0.05, atol=0.02)
    assert not all(np.array_equal(got[k], want[k]) for k in want)  # it did compute in bf16
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        TrainConfig(compute_dtype="int8")


class _Stack(nnx.Module):
    def __init__(self, dtype, *, rngs):
        l2, l3 = H36M_17.layout(2), H36M_17.layout(3)
        self.a = ChiralConv1d(l2, l2, kernel_size=3, dtype=dtype, rngs=rngs)
        self.b = ChiralConv1d(l2, l2, kernel_size=3, dilation=3, dtype=dtype, rngs=rngs)
        self.c = ChiralLinear(l2, l3, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.c(jnp.tanh(self.b(jnp.tanh(self.a(x)))))


@pytest.mark.slow  # float32 equivariance of the same layers runs by default
def test_bfloat16_chiral_layers_stay_equivariant_to_the_stated_tolerance():
    l2, l3 = H36M_17.layout(2), H36M_17.layout(3)
    rngs = nnx.Rngs(3)
    x = jax.random.normal(jax.random.key(3), (8, 27, 34))
    linear = ChiralLinear(l2, l3, dtype=jnp.bfloat16, rngs=rngs)
    conv = ChiralConv1d(l2, l3, kernel_size=3, dtype=jnp.bfloat16, rngs=rngs)
    stack = _Stack(jnp.bfloat16, rngs=rngs)
    assert linear(x).dtype == jnp.bfloat16
    assert_equivariant(linear, l2, l3, x, rtol=BF16_LAYER_RTOL)
    assert_equivariant(conv, l2, l3, x, rtol=BF16_LAYER_RTOL)
    assert_equivariant(stack, l2, l3, x, rtol=BF16_STACK_RTOL)


# -- command line -----------------------------------------------------------------------


def test_distributed_flags_default_to_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed, "initialize", lambda *args: calls.append(args))
    monkeypatch.setenv(cli.ENV_COORDINATOR, "10.0.0.1:1234")
    monkeypatch.setenv(cli.ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(cli.ENV_PROCESS_ID, "1")
    parser = argparse.ArgumentParser()
    cli.add_distributed_args(parser)
    assert cli.maybe_initialize(parser.parse_args([])) is True
    assert cli.maybe_initialize(parser.parse_args(["--process-id", "0"])) is True
    assert calls == [("10.0.0.1:1234", 2, 1), ("10.0.0.1:1234", 2, 0)]

    for name in (cli.ENV_COORDINATOR, cli.ENV_NUM_PROCESSES, cli.ENV_PROCESS_ID):
        monkeypatch.delenv(name)
    parser = argparse.ArgumentParser()
    cli.add_distributed_args(parser)
    assert cli.maybe_initialize(parser.parse_args([])) is False
    with pytest.raises(cli.UsageError, match="needs --num-processes"):
        cli.maybe_initialize(parser.parse_args(["--coordinator", "h:1", "--process-id", "0"]))
    with pytest.raises(cli.UsageError, match="need --coordinator"):
        cli.maybe_initialize(parser.parse_args(["--num-processes", "2"]))
    assert len(calls) == 2


def test_initialize_rejects_bad_arguments_before_starting():
    with pytest.raises(ValueError, match="host:port"):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"process_id must lie in \[0, 2\)"):
        distributed.initialize("localhost:1", 2, 2)


def test_train_args_carry_compute_dtype_and_join_the_run(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(distributed, "initialize", lambda *args: calls.append(args))
    for name in (cli.ENV_COORDINATOR, cli.ENV_NUM_PROCESSES, cli.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser()
    cli.add_train_args(parser)
    args = parser.parse_args(["--compute-dtype", "bfloat16"])
    assert cli.config_from_args(args, TrainConfig()).compute_dtype == "bfloat16"
    assert cli.config_from_args(parser.parse_args([]), TrainConfig()).compute_dtype is None
    assert calls == []
    flags = ["--coordinator", "h:9", "--num-processes", "4", "--process-id", "3"]
    cli.config_from_args(parser.parse_args(flags), TrainConfig())
    assert calls == [("h:9", 4, 3)]
