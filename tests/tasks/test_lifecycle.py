"""The run lifecycle of the three tasks, through the real ``chiral`` entry point.

Each task is driven as a user would: ``chiral <task> generate``, then ``train`` or
``demo`` in a fresh working folder, twice, with other settings, interrupted by
SIGINT, SIGTERM or SIGKILL at a random epoch, and with a damaged checkpoint. The
tiny settings below keep a run to seconds; the interruption tests are ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from _files import snapshot
from flax import nnx

TINY = {
    "lifting": {
        "generate": ["--frames", "24", "--trials", "1"],
        "model": ["--filter-widths", "3", "3", "--channels", "34", "--batch-size", "128"],
        "train": ["--train-subjects", "S1"],
    },
    "forecasting": {
        "generate": ["--num-videos", "16", "--min-frames", "20", "--max-frames", "30"],
        "model": ["--hidden", "26", "--batch-size", "64"],
        "train": [],
    },
    "recognition": {
        "generate": ["--classes", "waving", "squat", "--clips-per-class", "4"],
        "model": ["--widths", "36", "36", "36", "36", "--strides", "2", "--window", "16"]
        + ["--batch-size", "3"],
        "train": [],
    },
}
TASKS = list(TINY)


def chiral_command() -> list[str]:
    """The installed ``chiral`` script beside this Python, else ``python -m chiral_tasks``."""
    script = Path(sys.executable).with_name("chiral")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "chiral_tasks"]


def chiral(
    cwd: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*chiral_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=env,
    )


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def one_line_error(done: subprocess.CompletedProcess, status: int = 1) -> str:
    """The single stderr line of a failed command (no traceback), after checking it."""
    assert done.returncode == status, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chiral: error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Each task's tiny generated dataset, written once through ``generate``."""
    root = tmp_path_factory.mktemp("datasets")
    for task, tiny in TINY.items():
        ok(chiral(root, task, "generate", "--out", f"data/{task}", *tiny["generate"]))
    return {task: root / "data" / task for task in TASKS}


@pytest.fixture
def workdir(tmp_path, datasets) -> Path:
    """A fresh working folder holding every task's data at its default place."""
    for task, folder in datasets.items():
        shutil.copytree(folder, tmp_path / "data" / task)
    return tmp_path


def table(stdout: str) -> str:
    """The results table a demo prints (from its header line to the end)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    return "\n".join(lines[start:])


def train_args(task: str, *extra: str) -> list[str]:
    return [task, "train", *TINY[task]["model"], *TINY[task]["train"], *extra]


# -- rerun rule -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_demo_twice_reuses_the_finished_run_and_prints_the_same_table(workdir, task):
    demo = [task, "demo", *TINY[task]["model"], "--epochs", "1"]
    first = ok(chiral(workdir, *demo))
    assert "training in" in first.stdout
    run = workdir / "runs" / task / "demo"
    before = snapshot(run)

    second = ok(chiral(workdir, *demo))
    assert table(second.stdout) == table(first.stdout)
    assert "training in" not in second.stdout and "resuming" not in second.stdout
    assert snapshot(run) == before  # nothing retrained, rewritten or added

    # Other settings into the finished run: refused, naming the difference and the ways out.
    error = one_line_error(chiral(workdir, *demo[:-1], "2"))
    assert "train.epochs was 1, now 2" in error and "--overwrite" in error
    # lifting's batch-norm schedule depends on the epoch count: no --resume to more epochs
    assert ("--resume" in error) == (task != "lifting")
    assert snapshot(run) == before


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_other_settings_into_an_existing_run_are_refused_and_change_nothing(workdir, task):
    out = ["--out", "runs/x", "--epochs", "1", "--max-steps", "1"]
    ok(chiral(workdir, *train_args(task, *out)))
    run = workdir / "runs" / "x"
    before = snapshot(run)
    again = ok(chiral(workdir, *train_args(task, *out)))  # the same command reuses the run
    assert "finished earlier" in again.stdout
    assert snapshot(run) == before

    error = one_line_error(chiral(workdir, *train_args(task, *out, "--model", "plain")))
    assert "model.chiral was True, now False" in error and "--resume" not in error
    error = one_line_error(chiral(workdir, *train_args(task, *out, "--lr", "0.5")))
    assert "train.lr was" in error
    assert snapshot(run) == before

    ok(chiral(workdir, *train_args(task, *out, "--model", "plain", "--overwrite")))
    assert snapshot(run) != before


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_generate_into_existing_files_refuses_and_changes_nothing(workdir, task):
    folder = workdir / "data" / task
    before = snapshot(folder)
    generate = [task, "generate", "--out", f"data/{task}", *TINY[task]["generate"]]
    error = one_line_error(chiral(workdir, *generate))
    assert str(Path("data") / task) in error and "--overwrite" in error
    assert snapshot(folder) == before


def test_bad_usage_is_one_line_and_starts_nothing(tmp_path):
    error = one_line_error(chiral(tmp_path, "lifting", "train", "--dropout", "1.5"), status=2)
    assert "argument --dropout: must lie in [0, 1), got 1.5" in error
    assert not any(tmp_path.iterdir())
    error = one_line_error(chiral(tmp_path, "nosuchtask"), status=2)
    assert "invalid choice: 'nosuchtask'" in error


# -- interruptions ----------------------------------------------------------------------

EPOCHS = 5
INTERRUPTIBLE = ["--epochs", str(EPOCHS), "--checkpoint-every", "3"]


def model_arrays(task: str, run: Path) -> list[np.ndarray]:
    """The trained model's parameters and statistics, read back from the run folder."""
    if task == "lifting":
        from chiral_tasks.lifting.train import load_model

        model = load_model(run / "model").model
    elif task == "forecasting":
        from chiral_tasks.forecasting.train import load_run

        model = load_run(run)[0]
    else:
        from chiral_tasks.recognition.train import load_run

        model = load_run(run)[0]
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param, nnx.BatchStat))]


def assert_same_model(task: str, a: Path, b: Path) -> None:
    for x, y in zip(model_arrays(task, a), model_arrays(task, b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, datasets) -> dict[str, Path]:
    """Each task's run of the interruptible command, left to finish."""
    root = tmp_path_factory.mktemp("uninterrupted")
    for task, folder in datasets.items():
        shutil.copytree(folder, root / "data" / task)
        ok(chiral(root, *train_args(task, "--out", f"runs/{task}", *INTERRUPTIBLE)))
    return {task: root / "runs" / task for task in TASKS}


def interrupt_at_epoch(cwd: Path, args: list[str], epoch: int, sig: int):
    """Start ``chiral *args``, send ``sig`` once it reports finishing ``epoch``."""
    process = subprocess.Popen(
        [*chiral_command(), *args], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith(f"chiral: epoch {epoch}/"):
            process.send_signal(sig)
            break
    _, rest = process.communicate(timeout=600)
    return process.returncode, "".join(lines) + rest


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
@pytest.mark.parametrize("task", TASKS)
def test_interrupted_training_resumes_to_identical_parameters(workdir, uninterrupted, task, sig):
    epoch = int(np.random.default_rng([sig, TASKS.index(task)]).integers(1, EPOCHS - 1))
    command = train_args(task, "--out", "runs/cut", *INTERRUPTIBLE)
    status, stderr = interrupt_at_epoch(workdir, command, epoch, sig)
    if sig == signal.SIGKILL:
        assert status == -signal.SIGKILL
    else:
        assert status == (143 if sig == signal.SIGTERM else 130), stderr
        assert "saved step" in stderr and "rerun the same command to resume" in stderr
        assert "Traceback" not in stderr
    assert not (workdir / "runs" / "cut" / "results.json").exists()

    resumed = ok(chiral(workdir, *command))
    assert "Traceback" not in resumed.stderr
    assert_same_model(task, workdir / "runs" / "cut", uninterrupted[task])


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(workdir, uninterrupted, task):
    total = json.loads((uninterrupted[task] / "results.json").read_text())["history"][-1]["step"]
    command = train_args(task, "--out", "runs/cut", *INTERRUPTIBLE)
    ok(chiral(workdir, *command, "--max-steps", str(total - 1)))
    checkpoints = workdir / "runs" / "cut" / "checkpoints"
    steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    assert len(steps) >= 2 and steps[-1] == total - 1, steps
    for path in (checkpoints / str(total - 1)).rglob("*"):
        if path.is_file():
            os.truncate(path, path.stat().st_size // 2)

    resumed = ok(chiral(workdir, *command, "--resume"))
    assert f"chiral: warning: cannot read checkpoint step {total - 1}" in resumed.stderr
    assert "trying the previous checkpoint" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert_same_model(task, workdir / "runs" / "cut", uninterrupted[task])
