"""The spatial-temporal transformer lifter: exact equivariance of the chiral model (fp32
to 1e-5, fp64 to 1e-12, under jit, vmap and grad), the plain twin, training through the
task's commands, saving and loading, and whole-sequence evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from chiral_jax import flip_average
from chiral_jax.skeletons import COCO_17, H36M_17, MPII_16
from chiral_jax.testing import assert_equivariant, equivariance_error
from chiral_tasks.cli import main
from chiral_tasks.lifting.data import camera_sequences
from chiral_tasks.lifting.evaluate import predict_sequences
from chiral_tasks.lifting.synth import SynthConfig, generate_dataset
from chiral_tasks.lifting.train import (
    QUICK_TRANSFORMER,
    QUICK_TRANSFORMER_TRAIN,
    build_model,
    load_model,
    save_model,
    train,
)
from chiral_tasks.lifting.transformer import PoseTransformer

SMALL = dict(frames=9, dims=12, depth=1, heads=2, dropout=0.0)
SKELETONS = [
    pytest.param(COCO_17, H36M_17, marks=pytest.mark.slow),
    pytest.param(H36M_17, H36M_17, marks=pytest.mark.slow),
    pytest.param(MPII_16, MPII_16, marks=pytest.mark.slow),
]


def _randomised(model: nnx.Module, seed: int) -> nnx.Module:
    """Every parameter redrawn at unit scale (initial offsets and embeddings are small)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree.leaves(params))))
    params = jax.tree.map(lambda p: 0.5 * jax.random.normal(next(keys), p.shape, p.dtype), params)
    return nnx.merge(graphdef, params, rest)


def _flat(model: PoseTransformer):
    """The model on flattened ``[B, T, J_in * 2] -> [B, T, J_out * 3]``."""

    def fn(x):
        return model(x).reshape(*x.shape[:-1], -1)

    return fn


def _clips(model: PoseTransformer, batch=3, frames=9, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(1), (batch, frames, model.layout_in.size), dtype)


@pytest.mark.parametrize(
    ("skeleton_in", "skeleton_out"), SKELETONS, ids=["coco-h36m", "h36m-h36m", "mpii-mpii"]
)
def test_chiral_transformer_is_equivariant(skeleton_in, skeleton_out):
    model = PoseTransformer(skeleton_in, skeleton_out, chiral=True, rngs=nnx.Rngs(0), **SMALL)
    model = _randomised(model, 0)
    fn, x = _flat(model), _clips(model)
    li, lo = model.layout_in, model.layout_out
    assert_equivariant(fn, li, lo, x, rtol=1e-5)
    assert_equivariant(jax.jit(fn), li, lo, x, rtol=1e-5)
    assert_equivariant(jax.jit(jax.vmap(fn)), li, lo, x[None], rtol=1e-5)

    def field(x):  # the gradient of an invariant function is equivariant with T_in
        return jax.grad(lambda x: 0.5 * jnp.sum(jnp.square(fn(x))))(x)

    assert_equivariant(jax.jit(field), li, li, x, rtol=1e-4)
    # Shorter clips than the frame embedding: the same contract.
    assert_equivariant(jax.jit(fn), li, lo, x[:, :4], rtol=1e-5)


@pytest.mark.slow
def test_chiral_transformer_is_equivariant_in_float64():
    with jax.enable_x64(True):
        model = PoseTransformer(
            COCO_17, H36M_17, chiral=True, param_dtype=jnp.float64, rngs=nnx.Rngs(0), **SMALL
        )
        model = _randomised(model, 1)
        fn, x = _flat(model), _clips(model, dtype=jnp.float64)
        assert fn(x).dtype == jnp.float64
        assert_equivariant(jax.jit(fn), model.layout_in, model.layout_out, x, rtol=1e-12)


@pytest.mark.slow
def test_parameter_gradients_of_mirrored_clips_are_equal():
    """Training on a clip or on its mirror moves the free parameters the same way."""
    model = _randomised(
        PoseTransformer(H36M_17, H36M_17, chiral=True, rngs=nnx.Rngs(0), **SMALL), 2
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = _clips(model)
    y = jax.random.normal(jax.random.key(3), (3, 9, model.layout_out.size))

    def loss(p, x, y):
        return jnp.mean(jnp.square(_flat(nnx.merge(graphdef, p, rest))(x) - y))

    a = jax.jit(jax.grad(loss))(params, x, y)
    b = jax.jit(jax.grad(loss))(params, model.layout_in.transform(x), model.layout_out.transform(y))
    scale = max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(a))
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-5 * scale), a, b)


@pytest.mark.slow
def test_plain_twin_is_not_equivariant_but_its_flip_average_is():
    plain = _randomised(
        PoseTransformer(H36M_17, H36M_17, chiral=False, rngs=nnx.Rngs(0), **SMALL), 0
    )
    chiral = PoseTransformer(H36M_17, H36M_17, chiral=True, rngs=nnx.Rngs(0), **SMALL)
    fn, x = _flat(plain), _clips(plain)
    assert equivariance_error(fn, plain.layout_in, plain.layout_out, x) > 1e-2
    averaged = flip_average(fn, plain.layout_in, plain.layout_out)
    assert_equivariant(averaged, plain.layout_in, plain.layout_out, x, rtol=1e-5)
    assert 0.4 < chiral.num_params / plain.num_params < 0.65


def test_bad_settings_and_inputs_name_the_problem():
    with pytest.raises(ValueError, match="dims=10 must split evenly into heads=4"):
        PoseTransformer(H36M_17, H36M_17, chiral=True, dims=10, heads=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        PoseTransformer(H36M_17, H36M_17, chiral=False, depth=0, rngs=nnx.Rngs(0))
    model = PoseTransformer(H36M_17, H36M_17, chiral=True, rngs=nnx.Rngs(0), **SMALL)
    with pytest.raises(ValueError, match="clips of 1 to 9 frames, got 10"):
        model(jnp.zeros((1, 10, 17, 2)))
    with pytest.raises(ValueError, match=r"expects 2D poses \[\*batch, frames, 17, 2\]"):
        model(jnp.zeros((1, 5, 16, 2)))


@pytest.fixture(scope="module")
def dataset():
    dataset, _ = generate_dataset(SynthConfig(frames=40, trials=1, keypoints="coco"))
    return dataset


@pytest.mark.slow
def test_train_save_load_and_evaluate_whole_sequences(dataset, tmp_path):
    """A few steps on COCO-input clips; the loaded model lifts sequences longer than its
    clips (in chunks of at most ``frames``) to the trained model's poses, and its chiral
    answer needs no flip averaging."""
    config = QUICK_TRANSFORMER.__class__(arch="transformer", frames=9, channels=12, depth=1,
                                         heads=2, dropout=0.1)  # fmt: skip
    settings = QUICK_TRANSFORMER_TRAIN.__class__(
        epochs=1, batch_size=8, checkpoint_dir=str(tmp_path / "checkpoints"), progress=False
    )
    sequences = camera_sequences(dataset, ["S1"])
    trained = train(sequences, dataset.skeleton_2d, dataset.skeleton, config, settings,
                    max_steps=3)  # fmt: skip
    assert trained.history == [] or np.isfinite(trained.history[-1]["loss"])
    save_model(trained, tmp_path / "model")
    loaded = load_model(tmp_path / "model", dataset.skeleton, dataset.skeleton_2d)
    assert loaded.config == config and isinstance(loaded.model, PoseTransformer)
    test = camera_sequences(dataset, ["S9"])
    trained.model.eval()
    ours = predict_sequences(loaded.model, test.inputs[:2])
    np.testing.assert_allclose(ours[0], predict_sequences(trained.model, test.inputs[:2])[0],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert ours[0].shape == (40, 17, 3)
    averaged = predict_sequences(loaded.model, test.inputs[:2], tta=True)
    np.testing.assert_allclose(averaged[1], ours[1], rtol=1e-4, atol=1e-5)
    assert build_model(config, COCO_17, H36M_17, seed=0).num_params == loaded.model.num_params


def test_options_of_the_other_architecture_are_refused(capsys):
    assert main(["lifting", "train", "--arch", "temporal", "--frames", "9"]) == 2
    assert "--frames is an option of --arch transformer, not temporal" in capsys.readouterr().err
    assert main(["lifting", "train", "--arch", "transformer", "--filter-widths", "3"]) == 2
    assert "--filter-widths is an option of --arch temporal" in capsys.readouterr().err
    assert main(["lifting", "train", "--arch", "transformer", "--channels", "30",
                 "--heads", "4"]) == 2  # fmt: skip
    assert "--channels 30 must split evenly into --heads 4" in capsys.readouterr().err
