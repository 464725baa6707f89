"""The persistent compilation cache of the ``chiral`` command: where it goes, when it is
off, and that a second run loads the compiled training step instead of compiling it."""

from __future__ import annotations

import json
import os

import jax
import pytest
from test_lifecycle import TINY, chiral, ok, train_args

from chiral_tasks.common import compile_cache

OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_compilation_cache_max_size",
)


@pytest.fixture
def jax_options():
    """No cache folder configured; JAX's options as they were afterwards."""
    before = {name: getattr(jax.config, name) for name in OPTIONS}
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def test_cache_folder_follows_the_documented_order(jax_options, tmp_path):
    assert compile_cache.cache_dir({"CHIRAL_COMPILE_CACHE": "off"}) is None
    assert compile_cache.cache_dir({"CHIRAL_COMPILE_CACHE": " 0 "}) is None
    assert compile_cache.cache_dir({"CHIRAL_COMPILE_CACHE": str(tmp_path)}) == tmp_path
    xdg = {"XDG_CACHE_HOME": str(tmp_path)}
    assert compile_cache.cache_dir(xdg) == tmp_path / "chiral_jax" / "jax"
    # A folder the user already gave JAX wins over ours, and "off" over both.
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    assert compile_cache.cache_dir(xdg) == tmp_path / "theirs"
    assert compile_cache.cache_dir({**xdg, "CHIRAL_COMPILE_CACHE": "off"}) is None


def test_enable_points_jax_at_the_folder(jax_options, tmp_path):
    folder = tmp_path / "new" / "cache"
    assert compile_cache.enable({"CHIRAL_COMPILE_CACHE": str(folder)}) == folder
    assert folder.is_dir() and jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.1
    assert jax.config.jax_compilation_cache_max_size == 2**30
    # Settings the user made are kept.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
    jax.config.update("jax_compilation_cache_max_size", 5)
    env = {
        "CHIRAL_COMPILE_CACHE": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "2",
        "JAX_COMPILATION_CACHE_MAX_SIZE": "5",
    }
    compile_cache.enable(env)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.0
    assert jax.config.jax_compilation_cache_max_size == 5


def test_a_folder_that_cannot_be_made_warns_and_runs_without(jax_options, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.warns(UserWarning, match="no compilation cache .*CHIRAL_COMPILE_CACHE"):
        assert compile_cache.enable({"CHIRAL_COMPILE_CACHE": str(blocked / "cache")}) is None
    assert jax.config.jax_compilation_cache_dir is None
    assert compile_cache.enable({"CHIRAL_COMPILE_CACHE": "off"}) is None
    assert jax.config.jax_compilation_cache_dir is None


@pytest.mark.slow
def test_a_second_run_loads_the_compiled_training_step(tmp_path):
    """Through the real entry point: the first run writes the cache, the second one (into
    another run folder) hits it for the training step, and both give the same results."""
    task = "lifting"
    ok(chiral(tmp_path, task, "generate", "--out", f"data/{task}", *TINY[task]["generate"]))
    env = {
        **os.environ,
        "CHIRAL_COMPILE_CACHE": str(tmp_path / "cache"),
        "JAX_DEBUG_LOG_MODULES": "jax._src.compiler",
    }
    runs = []
    for name in ("first", "second"):
        runs.append(ok(chiral(tmp_path, *train_args(task, "--epochs", "1", "--out", name),
                              env=env)))
        assert any((tmp_path / "cache").iterdir())
    hit = "Persistent compilation cache hit for 'jit__train_step'"
    assert hit not in runs[0].stderr and hit in runs[1].stderr
    test = [json.loads((tmp_path / name / "results.json").read_text())["test"]
            for name in ("first", "second")]
    for metrics in test:
        metrics.pop("seconds")  # the evaluation's wall time
    assert test[0] == test[1]
