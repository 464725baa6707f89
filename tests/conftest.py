"""Strict JAX for every test: rank promotion raises, as in equinox's suite."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The chiral command (in process or as a subprocess) writes no compilation cache into
# the home folder; the cache's own tests turn it on in a temporary one.
os.environ["CHIRAL_COMPILE_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
