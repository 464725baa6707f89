"""Training step time against the number of data-parallel devices.

Each device count runs in its own process (the count is fixed when JAX starts),
training a VideoPose3D-like chiral temporal convolution network with the task
core's :class:`~chiral_tasks.common.train.Trainer` on a fixed global batch:

    python -m benchmarks.scaling --devices 1 2 4 8 --out runs/scaling

On a CPU-only machine the devices are simulated
(``--xla_force_host_platform_device_count``) and share the host's cores, so the
numbers show the overhead of sharding, not a speed-up; on a GPU host ``--gpu``
uses the first N real GPUs instead. Writes ``scaling.json`` and ``scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _worker(devices: int, batch: int, steps: int, warmup: int, gpu: bool) -> dict:
    """Time ``steps`` training steps on ``devices`` devices (run inside the child)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from chiral_jax import ChiralBatchNorm, ChiralConv1d, ChiralLayout
    from chiral_jax.skeletons import H36M_17
    from chiral_tasks.common.data import Batcher
    from chiral_tasks.common.distributed import data_mesh
    from chiral_tasks.common.train import TrainConfig, Trainer

    layout_in, layout_out = H36M_17.layout(2), H36M_17.layout(3)
    hidden = ChiralLayout.hidden(pairs=6, centre=5, dims=16, negated=0.5)  # 272 channels

    class Net(nnx.Module):
        """Dilated chiral convolutions, receptive field 27: ``[B, 27, 34] -> [B, 1, 51]``."""

        def __init__(self, rngs: nnx.Rngs):
            self.inp = ChiralConv1d(layout_in, hidden, kernel_size=3, rngs=rngs)
            self.mid = ChiralConv1d(hidden, hidden, kernel_size=3, dilation=3, rngs=rngs)
            self.end = ChiralConv1d(hidden, hidden, kernel_size=3, dilation=9, rngs=rngs)
            self.norms = nnx.List([ChiralBatchNorm(hidden, rngs=rngs) for _ in range(3)])
            self.out = ChiralConv1d(hidden, layout_out, kernel_size=1, rngs=rngs)

        def __call__(self, x):
            for conv, norm in zip((self.inp, self.mid, self.end), self.norms, strict=True):
                x = jnp.tanh(norm(conv(x)))
            return self.out(x)

    def loss(model, b):
        return jnp.mean((model(b["x"]) - b["y"]) ** 2), {}

    rng = np.random.default_rng(0)
    samples = batch * (warmup + steps + 1)  # the timed steps end mid-epoch
    data = {
        "x": rng.normal(size=(samples, 27, 34)).astype(np.float32),
        "y": rng.normal(size=(samples, 1, 51)).astype(np.float32),
    }
    available = jax.devices("gpu" if gpu else "cpu")
    if len(available) < devices:
        raise SystemExit(f"asked for {devices} devices, found {len(available)}")
    config = TrainConfig(epochs=1, batch_size=batch, progress=False)
    batcher = Batcher(data, batch, shuffle=False)
    trainer = Trainer(
        Net(nnx.Rngs(0)), loss, config, len(batcher), mesh=data_mesh(available[:devices])
    )
    trainer.fit(batcher, max_steps=warmup)  # compiles; fit returns after reading the loss
    started = time.perf_counter()
    trainer.fit(batcher, max_steps=warmup + steps)
    seconds = (time.perf_counter() - started) / steps
    return {
        "devices": devices,
        "platform": available[0].platform,
        "global_batch": batch,
        "step_ms": 1e3 * seconds,
        "samples_per_s": batch / seconds,
    }


def _run_child(devices: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if not args.gpu:
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    command = [
        sys.executable, "-m", "benchmarks.scaling", "--worker", str(devices),
        "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
    ]  # fmt: skip
    if args.gpu:
        command.append("--gpu")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the {devices}-device run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """A Markdown table of the runs, with the speed-up over the first row."""
    lines = [
        "| devices | platform | global batch | step (ms) | samples/s | speed-up |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['devices']} | {row['platform']} | {row['global_batch']} | "
            f"{row['step_ms']:.1f} | {row['samples_per_s']:.0f} | "
            f"{rows[0]['step_ms'] / row['step_ms']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=256, help="global batch size")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per count")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    parser.add_argument("--gpu", action="store_true", help="use real GPUs, not simulated CPUs")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per device count")
    parser.add_argument("--out", default="runs/scaling", help="folder for the JSON and table")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        result = _worker(args.worker, args.batch, args.steps, args.warmup, args.gpu)
        print(json.dumps(result))
        return 0
    bad = [d for d in args.devices if d < 1 or args.batch % d]
    if bad:
        parser.error(f"the global batch {args.batch} must split evenly over {bad} devices")
    rows = []
    for devices in args.devices:
        rows.append(_run_child(devices, args))
        print(table(rows).splitlines()[-1], flush=True)
    os.makedirs(args.out, exist_ok=True)
    record = {"cpu_count": os.cpu_count(), "simulated": not args.gpu, "runs": rows}
    with open(os.path.join(args.out, "scaling.json"), "w") as f:
        json.dump(record, f, indent=2)
    with open(os.path.join(args.out, "scaling.md"), "w") as f:
        f.write(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
