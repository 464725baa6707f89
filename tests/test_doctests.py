"""The ``>>>`` examples in the library's and the tasks' docstrings run as printed."""

import doctest
import importlib
import pkgutil

import pytest

import chiral_jax
import chiral_tasks


def _modules(package) -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        if not info.name.endswith("__main__")
    )


def _has_examples(name: str) -> bool:
    return any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(name)))


MODULES = [name for name in _modules(chiral_jax) + _modules(chiral_tasks) if _has_examples(name)]
# The tasks' examples build whole models (10 s each on 2 cores): the second test stage.
PARAMS = [
    pytest.param(name, marks=pytest.mark.slow) if name.startswith("chiral_tasks") else name
    for name in MODULES
]


def test_the_examples_are_found():
    assert {"chiral_jax._layout", "chiral_jax.even_odd", "chiral_jax._linear"} <= set(MODULES)


@pytest.mark.parametrize("name", PARAMS)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
