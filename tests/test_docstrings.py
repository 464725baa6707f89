"""The public API documents itself: docstrings everywhere, shapes on every layer, and the
examples of docs/layers.md run as printed."""

import inspect
import pathlib
import pydoc
import re

import pytest

import chiral_jax

LAYERS_DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md"
LAYERS = (
    "ChiralActivation",
    "ChiralBatchNorm",
    "ChiralConv1d",
    "ChiralGRUCell",
    "ChiralInvariant",
    "ChiralLSTMCell",
    "ChiralLinear",
    "ChiralRNN",
)


def _own_doc(obj) -> str | None:
    """The docstring written for ``obj`` itself (a class's, not one inherited from a base)."""
    if inspect.isclass(obj):
        return obj.__dict__.get("__doc__")
    if isinstance(obj, property):
        return obj.fget.__doc__
    return getattr(obj, "__doc__", None)


def _public_members(cls) -> dict[str, object]:
    """Public methods and properties of ``cls`` defined in chiral_jax (inherited ones too)."""
    members = {}
    for base in reversed(cls.__mro__):
        if not base.__module__.startswith("chiral_jax"):
            continue
        for name, member in vars(base).items():
            if name.startswith("_"):
                continue
            if inspect.isfunction(member) or isinstance(member, property | classmethod):
                members[name] = member.__func__ if isinstance(member, classmethod) else member
    return members


def test_every_public_symbol_has_a_docstring():
    missing = []
    for name in chiral_jax.__all__:
        obj = getattr(chiral_jax, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not _own_doc(obj):
            missing.append(name)
    assert not missing, f"public symbols without a docstring: {missing}"


def test_every_public_method_has_a_docstring():
    missing = []
    for name in chiral_jax.__all__:
        obj = getattr(chiral_jax, name)
        if not inspect.isclass(obj) or not obj.__module__.startswith("chiral_jax"):
            continue
        for method, member in _public_members(obj).items():
            if not _own_doc(member):
                missing.append(f"{name}.{method}")
    assert not missing, f"public methods and properties without a docstring: {sorted(missing)}"


def test_every_layer_states_its_shapes():
    for name in LAYERS:
        doc = _own_doc(getattr(chiral_jax, name))
        assert doc and "Shapes" in doc, f"{name}'s docstring does not state its shapes"


def test_help_renders_the_layer_documentation():
    text = pydoc.render_doc(chiral_jax.ChiralLinear, renderer=pydoc.plaintext)
    assert "ChiralLinear" in text
    assert "Shapes" in text
    assert "layout_in" in text


@pytest.mark.slow
def test_layers_doc_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", LAYERS_DOC.read_text(), re.S)
    assert len(blocks) >= 8, "docs/layers.md lost its examples"
    namespace: dict = {}
    for block in blocks:  # one namespace: later examples use the setup block's names
        exec(compile(block, str(LAYERS_DOC), "exec"), namespace)
