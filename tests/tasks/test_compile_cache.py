"""The persistent compilation cache of the ``chiral`` command: where it goes, when it is
off, and that a second run loads the compiled training step instead of compiling it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache
from test_lifecycle import TINY, chiral, ok, train_args

from chiral_tasks.common import compile_cache

OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_enable_compilation_cache",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_compilation_cache_max_size",
)


@pytest.fixture
def jax_options():
    """No cache configured; JAX's options and cache state as they were afterwards."""
    before = {name: getattr(jax.config, name) for name in OPTIONS}
    jax.config.update("jax_compilation_cache_dir", None)
    jax_cache.reset_cache()
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    jax_cache.reset_cache()


def test_cache_follows_the_documented_order(jax_options, tmp_path):
    assert compile_cache.cache_dir({"CHIRAL_COMPILE_CACHE": "off"}) is None
    assert compile_cache.cache_dir({"CHIRAL_COMPILE_CACHE": " 0 "}) is None
    assert compile_cache.cache_dir({"CHIRAL_COMPILE_CACHE": str(tmp_path)}) == str(tmp_path)
    xdg = {"XDG_CACHE_HOME": str(tmp_path)}
    assert compile_cache.cache_dir(xdg) == str(tmp_path / "chiral_jax" / "jax")
    home = str(Path.home() / ".cache" / "chiral_jax" / "jax")
    assert compile_cache.cache_dir({"XDG_CACHE_HOME": "relative"}) == home  # XDG: ignored
    # A cache the user already gave JAX (a folder or a URL, as given) wins over ours.
    jax.config.update("jax_compilation_cache_dir", "gs://bucket/cache")
    assert compile_cache.cache_dir(xdg) == "gs://bucket/cache"
    assert compile_cache.cache_dir({**xdg, "CHIRAL_COMPILE_CACHE": "off"}) is None


def test_enable_points_jax_at_our_folder_with_our_settings(jax_options, tmp_path):
    folder = tmp_path / "new" / "cache"
    assert compile_cache.enable({"CHIRAL_COMPILE_CACHE": str(folder)}) == str(folder)
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


def test_the_users_cache_is_left_as_configured(jax_options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jax.config.update("jax_compilation_cache_dir", "gs://bucket/cache")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_compilation_cache_max_size", -1)
    assert compile_cache.enable({}) == "gs://bucket/cache"
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
    assert jax.config.jax_compilation_cache_max_size == -1
    assert list(tmp_path.iterdir()) == []  # no local folder made of the URL


def test_off_turns_off_even_the_users_cache(jax_options, tmp_path):
    theirs = tmp_path / "theirs"
    jax.config.update("jax_compilation_cache_dir", str(theirs))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    assert compile_cache.enable({"CHIRAL_COMPILE_CACHE": "off"}) is None
    jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) * 3.25)(jnp.arange(7.0)))
    assert not theirs.exists() or not any(theirs.iterdir())
    # Turned on again, the same compilation lands there: the check above can fail.
    jax.config.update("jax_enable_compilation_cache", True)
    jax_cache.reset_cache()
    jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) * 3.5)(jnp.arange(7.0)))
    assert any(theirs.iterdir())


def test_an_unusable_folder_warns_and_runs_without(jax_options, tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.warns(UserWarning, match="no compilation cache .*CHIRAL_COMPILE_CACHE"):
        assert compile_cache.enable({"CHIRAL_COMPILE_CACHE": str(blocked / "cache")}) is None
    assert jax.config.jax_compilation_cache_dir is None
    # A folder that exists but cannot be written to (faked: tests may run as root).
    monkeypatch.setattr(compile_cache.os, "access", lambda path, mode: False)
    with pytest.warns(UserWarning, match="not writable"):
        assert compile_cache.enable({"CHIRAL_COMPILE_CACHE": str(tmp_path)}) is None
    assert jax.config.jax_compilation_cache_dir is None


@pytest.mark.slow
def test_a_second_run_loads_the_compiled_training_step(tmp_path):
    """Through the real entry point: the first run writes the training step into the
    cache, the second one (into another run folder) loads it, same results."""
    task = "lifting"
    ok(chiral(tmp_path, task, "generate", "--out", f"data/{task}", *TINY[task]["generate"]))
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(
        CHIRAL_COMPILE_CACHE=str(tmp_path / "cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_DEBUG_LOG_MODULES="jax._src.compiler",
    )
    runs = []
    for name in ("first", "second"):
        args = train_args(task, "--epochs", "1", "--out", name)
        runs.append(ok(chiral(tmp_path, *args, env=env)))
        assert list((tmp_path / "cache").glob("jit__train_step-*"))
    hit = "Persistent compilation cache hit for 'jit__train_step'"
    assert hit not in runs[0].stderr and hit in runs[1].stderr
    test = [
        json.loads((tmp_path / name / "results.json").read_text())["test"]
        for name in ("first", "second")
    ]
    for metrics in test:
        metrics.pop("seconds")  # the evaluation's wall time
    assert test[0] == test[1]
