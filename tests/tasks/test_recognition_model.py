"""The skeleton classifier: exact mirror invariance of the chiral model, and training."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from chiral_jax import ChiralLayout, assert_equivariant
from chiral_tasks.common.data import Batcher
from chiral_tasks.common.train import Trainer, count_params, with_mode
from chiral_tasks.recognition.model import INPUT_LAYOUT, ModelConfig, build
from chiral_tasks.recognition.train import QUICK, loss_fn

SMALL = dict(num_classes=4, widths=(36, 36, 36, 36), strides=(2,), kernel=3)


def clips(n=6, frames=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.2, size=(n, 3, frames, 18, 2)).astype(np.float32)
    x[:, 2] = rng.uniform(0.0, 1.0, size=x[:, 2].shape)
    return x


def as_joints(x):
    """(N, C, T, V, M) -> (N, M, T, V, C): the joint and dim axes last, for the layout."""
    return jnp.transpose(jnp.asarray(x), (0, 4, 2, 3, 1))


def from_joints(h):
    return jnp.transpose(h, (0, 4, 2, 3, 1))


def assert_invariant(model, x):
    """``model(mirror(x)) == model(x)`` in evaluation and in training mode (jitted)."""
    for train in (False, True):
        graphdef, state = nnx.split(with_mode(model, train=train))
        apply = jax.jit(lambda state, h, g=graphdef: nnx.merge(g, state)(from_joints(h)))
        assert_equivariant(functools.partial(apply, state), INPUT_LAYOUT, None, as_joints(x))


@functools.cache
def trained(chiral: bool):
    """(initial model, model after 4 SGD steps, the training batch)."""
    config = ModelConfig(**SMALL, chiral=chiral)
    x = clips(16, seed=1)
    labels = np.arange(16) % config.num_classes
    settings = dataclasses.replace(QUICK, batch_size=8, epochs=2, lr=0.05, progress=False)
    batcher = Batcher({"data": x, "label": labels}, 8, seed=0)
    trainer = Trainer(build(config), loss_fn, settings, len(batcher))
    trainer.fit(batcher, max_steps=4)
    return build(config), trainer.model(), {"data": jnp.asarray(x), "label": jnp.asarray(labels)}


def test_layouts_shrink_the_negated_share_then_turn_invariant():
    spaces = ModelConfig(**{**SMALL, "widths": (216,) * 5}).spaces()
    assert spaces[0] == INPUT_LAYOUT and spaces[0].negated == (0,)
    assert [len(s.negated) for s in spaces[1:4]] == [4, 2, 1]  # 1/3, 1/6, 1/12 of 12 dims
    assert all(s.num_joints == 18 for s in spaces[:4]) and spaces[4:] == [216, 216]
    assert ModelConfig(**SMALL, chiral=False).spaces() == [54, 36, 36, 36, 36]
    with pytest.raises(ValueError, match="multiples of 18"):
        ModelConfig(**{**SMALL, "widths": (40,) * 4})
    with pytest.raises(ValueError, match="not odd"):
        ModelConfig(**SMALL, activation=lambda v: jnp.maximum(v, 0))


def test_chiral_logits_are_mirror_invariant_before_and_after_training():
    initial, after, _ = trained(True)
    x = clips()
    assert_invariant(initial, x)
    assert_invariant(after, x)


def test_invariance_layer_placement_is_configurable():
    config = ModelConfig(**{**SMALL, "invariant_block": 1, "negated_fractions": (0.5,)})
    assert isinstance(config.spaces()[1], ChiralLayout) and config.spaces()[2:] == [36] * 3
    assert_invariant(build(config), clips())


@pytest.mark.slow
def test_mixed_activations_keep_the_invariance():
    """tanh on negated channels and ReLU on the others before the invariance layer: the
    logits stay mirror invariant, and differ from the tanh-everywhere model's."""
    mixed = build(ModelConfig(**SMALL, even_activation="relu"))
    assert_invariant(mixed, clips())
    x = jnp.asarray(clips())
    tanh = build(ModelConfig(**SMALL))
    nnx.update(tanh, nnx.state(mixed))
    assert not np.allclose(with_mode(mixed, train=False)(x), with_mode(tanh, train=False)(x))
    with pytest.raises(ValueError, match="unknown activation"):
        ModelConfig(**SMALL, even_activation="swish2")


def test_plain_logits_change_under_mirroring():
    with pytest.raises(AssertionError, match="not chirality invariant"):
        assert_invariant(trained(False)[0], clips())


def test_chiral_model_has_fewer_parameters():
    assert count_params(trained(True)[0]) < count_params(trained(False)[0])


@pytest.mark.parametrize("chiral", [True, False])
def test_a_few_training_steps_lower_the_loss(chiral):
    initial, after, batch = trained(chiral)

    graphdef = nnx.graphdef(initial)

    @jax.jit
    def training_loss(state):
        return loss_fn(with_mode(nnx.merge(graphdef, state), train=True), batch)[0]

    before = training_loss(nnx.state(initial))
    assert float(training_loss(nnx.state(after))) < float(before)


def test_bad_input_shape_is_refused():
    model = trained(True)[0]
    with pytest.raises(ValueError, match="expected clips"):
        model(jnp.zeros((2, 2, 16, 18, 2)))
