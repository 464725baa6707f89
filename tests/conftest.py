"""Strict JAX for every test: rank promotion raises, as in equinox's suite."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# No test writes a compilation cache (not the chiral command, in process or as a
# subprocess, nor a cache a developer set for JAX); the cache's own tests turn it on in
# a temporary folder.
os.environ["CHIRAL_COMPILE_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_compilation_cache", False)


@pytest.fixture
def key():
    return jax.random.key(0)
