"""Strict JAX for every test: rank promotion raises, as in equinox's suite."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
