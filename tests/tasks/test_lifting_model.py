"""The lifting models: shapes, equivariance, strided == dilated, causality, flip TTA.

Every forward pass goes through one jitted function of ``(graphdef, state, x)`` and the
inputs share a few shapes, so models of the same configuration reuse compilations.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from chiral_jax import ChiralBatchNorm, EvenOdd, assert_equivariant, flip_average
from chiral_jax.skeletons import H36M_17, HUMANEVA_15
from chiral_tasks.lifting import model as lifting
from chiral_tasks.lifting.model import SingleFrameModel, TemporalModel

CHANNELS = 17 * 4
WIDTHS = (3, 3)
FIELD = 9
L2 = H36M_17.layout(2)
L3 = H36M_17.layout(3)


def _model(chiral: bool, **kwargs) -> TemporalModel:
    kwargs = {"filter_widths": WIDTHS, "channels": CHANNELS, **kwargs}
    return TemporalModel(H36M_17, H36M_17, chiral=chiral, rngs=nnx.Rngs(0), **kwargs)


def _poses(seed: int, *shape: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape)


X = _poses(1, 4, FIELD + 2, 17, 2)  # -> 3 output frames
# The first window of each sequence of X, laid end to end two by two: the strided path
# gives one frame per window, equal to the first output frame of X.
WINDOWS = X[:, :FIELD].reshape(2, 2 * FIELD, 17, 2)


@functools.partial(jax.jit, static_argnames=("graphdef", "strided"))
def _apply(graphdef, state, x, strided=False):
    model = nnx.merge(graphdef, state)
    return model(x, strided=strided), nnx.state(model)


def _pure(model: nnx.Module, strided: bool = False):
    """``x -> model(x)`` on a snapshot of the model (state updates are dropped)."""
    graphdef, state = nnx.split(model)
    return lambda x: _apply(graphdef, state, x, strided=strided)[0]


def _train_mode(model: TemporalModel) -> TemporalModel:
    """A copy that uses batch statistics, without dropout.

    Dropout masks are not tied across the mirror: equivariance holds for the network
    itself, so the tests switch dropout off while BN keeps training behaviour.
    """
    model = nnx.clone(model)
    model.train()
    model.set_attributes(nnx.Dropout, deterministic=True)
    return model


def _warm(model: TemporalModel) -> TemporalModel:
    """A copy in evaluation mode whose BN running statistics have seen data."""
    model = _train_mode(model)
    graphdef, state = nnx.split(model)
    nnx.update(model, _apply(graphdef, state, X * 2.0 + 0.5)[1])
    model.eval()
    return model


@pytest.fixture(scope="module")
def chiral_model() -> TemporalModel:
    return _warm(_model(True))


@pytest.fixture(scope="module")
def plain_model() -> TemporalModel:
    return _warm(_model(False))


def test_shapes_and_receptive_field(chiral_model, plain_model):
    for model in (chiral_model, plain_model):
        assert (model.receptive_field, model.pad, model.causal_shift) == (FIELD, 4, 0)
        assert _pure(model)(X).shape == (4, 3, 17, 3)
        assert _pure(model, strided=True)(WINDOWS).shape == (2, 2, 17, 3)
    np.testing.assert_array_equal(
        _pure(plain_model)(X.reshape(4, FIELD + 2, 34)), _pure(plain_model)(X)
    )


def test_receptive_fields_and_reference_parameter_count():
    fields = [
        nnx.eval_shape(lambda w=w: _model(False, filter_widths=w)).receptive_field
        for w in [(3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3, 3), (3, 5, 1)]
    ]
    assert fields == [27, 81, 243, 15]
    big = nnx.eval_shape(lambda: _model(False, filter_widths=(3,) * 5, channels=1024))
    assert big.num_params == 16_952_371  # VideoPose3D's 243-frame model at 1024 channels


def test_chiral_has_about_half_the_parameters():
    counts = {
        chiral: nnx.eval_shape(
            lambda c=chiral: _model(c, filter_widths=(3, 3, 3), channels=1020)
        ).num_params
        for chiral in (True, False)
    }
    ratio = counts[True] / counts[False]
    print(
        f"parameters at 1020 channels, widths 3,3,3: chiral {counts[True]:,}, "
        f"plain {counts[False]:,}, ratio {ratio:.3f}"
    )
    assert 0.45 < ratio < 0.55


def test_chiral_equivariant_in_evaluation_under_jit_and_vmap(chiral_model):
    f = _pure(chiral_model)
    assert_equivariant(f, L2, L3, X)
    assert_equivariant(jax.vmap(f), L2, L3, X.reshape(2, 2, FIELD + 2, 17, 2))
    assert_equivariant(_pure(chiral_model, strided=True), L2, L3, WINDOWS)


def test_chiral_equivariant_in_training_with_batch_statistics(chiral_model):
    model = _train_mode(chiral_model)
    assert_equivariant(_pure(model), L2, L3, X * 2.0 + 0.5)
    assert_equivariant(_pure(model, strided=True), L2, L3, WINDOWS)


def test_chiral_gradients_equal_for_mirrored_data():
    # One conv each side of a batch-norm keeps the compile of the backward pass short.
    model = _train_mode(_model(True, filter_widths=(3,)))

    @nnx.jit
    @nnx.grad
    def grad(model, x, y):
        return jnp.mean(jnp.linalg.norm(model(x) - y, axis=-1))

    y = _poses(5, 4, FIELD, 17, 3)
    g = grad(model, X, y)
    g_mirror = grad(model, L2.transform(X), L3.transform(y))
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(g))
    assert scale > 0
    chex.assert_trees_all_close(g_mirror, g, rtol=1e-4, atol=1e-5 * scale)


def _even_odd_twin(model: TemporalModel) -> TemporalModel:
    """The same weights and statistics with activations held in the even/odd basis."""
    twin = nnx.clone(model)
    twin.impl = "even_odd"
    return twin


def test_even_odd_path_equals_flat_path(chiral_model):
    """The even/odd form is the same function: evaluation, training, strided, causal."""
    assert chiral_model.impl == "dense"  # 68 channels: too narrow for the even/odd form
    twin = _even_odd_twin(chiral_model)
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_pure(twin)(X), _pure(chiral_model)(X), **tol)
    np.testing.assert_allclose(
        _pure(twin, strided=True)(WINDOWS), _pure(chiral_model, strided=True)(WINDOWS), **tol
    )
    train, train_twin = _train_mode(chiral_model), _train_mode(twin)
    (y, state), (y_twin, state_twin) = (
        _apply(*nnx.split(m), X * 2.0 + 0.5) for m in (train, train_twin)
    )
    np.testing.assert_allclose(y_twin, y, **tol)
    # Batch statistics computed in the even/odd basis update the running averages alike.
    chex.assert_trees_all_close(
        nnx.state(state_twin, nnx.BatchStat), nnx.state(state, nnx.BatchStat), **tol
    )
    causal = _model(True, causal=True)
    causal.eval()
    np.testing.assert_allclose(_pure(_even_odd_twin(causal))(X), _pure(causal)(X), **tol)


def test_even_odd_gradients_equal_flat_gradients_and_stay_equivariant():
    model = _train_mode(_model(True, filter_widths=(3,)))
    twin = _even_odd_twin(model)

    @nnx.jit
    @nnx.grad
    def grad(model, x, y):
        return jnp.mean(jnp.linalg.norm(model(x) - y, axis=-1))

    y = _poses(5, 4, FIELD, 17, 3)
    g, g_twin = grad(model, X, y), grad(twin, X, y)
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(g))
    chex.assert_trees_all_close(g_twin, g, rtol=1e-4, atol=1e-5 * scale)
    g_mirror = grad(twin, L2.transform(X), L3.transform(y))
    chex.assert_trees_all_close(g_mirror, g_twin, rtol=1e-4, atol=1e-5 * scale)


def test_even_odd_model_equivariant_under_jit_and_vmap(chiral_model):
    twin = _even_odd_twin(chiral_model)
    f = _pure(twin)
    assert_equivariant(f, L2, L3, X)
    assert_equivariant(jax.vmap(f), L2, L3, X.reshape(2, 2, FIELD + 2, 17, 2))
    assert_equivariant(_pure(_train_mode(twin), strided=True), L2, L3, WINDOWS)


@pytest.mark.slow  # the library's dropout tests run by default
def test_even_odd_dropout_masks_joint_basis_channels():
    """Dropout in the even/odd form drops joint-basis activations: some pose channels of
    the first hidden layer are exactly zero, as with plain dropout."""
    model = _model(True, filter_widths=(1,), dropout=0.5, impl="even_odd")
    z = EvenOdd.from_joint(X.reshape(4, FIELD + 2, 34), L2)

    def first_hidden():
        h = lifting._apply(model.expand_bn, lifting._apply(model.expand_conv, z))
        return model.post.even_odd(h).to_joint()

    model.train()
    zero = float(jnp.mean(first_hidden() == 0.0))
    assert 0.4 < zero < 0.6, zero
    model.eval()
    assert float(jnp.mean(first_hidden() == 0.0)) == 0.0


def test_default_form_follows_width():
    def make(channels):
        return nnx.eval_shape(lambda: _model(True, channels=channels))

    assert (make(1020).impl, make(CHANNELS).impl) == ("even_odd", "dense")
    with pytest.raises(ValueError, match="impl='even_odd' needs chiral=True"):
        _model(False, impl="even_odd")
    with pytest.raises(ValueError, match="impl must be one of"):
        _model(True, impl="eigen")


@pytest.mark.slow
def test_mixed_activation_model_is_equivariant_in_both_forms():
    """tanh on negated hidden channels and ReLU on the others: equivariant, and the
    even/odd form is the same function; a plain model refuses the option."""
    model = _warm(_model(True, even_activation="relu"))
    twin = _even_odd_twin(model)
    for m in (model, twin):
        assert_equivariant(_pure(m), L2, L3, X, rtol=1e-5)
    np.testing.assert_allclose(_pure(twin)(X), _pure(model)(X), rtol=1e-5, atol=1e-5)
    assert not np.allclose(_pure(model)(X), _pure(_tanh_everywhere(model))(X), atol=1e-3)
    with pytest.raises(ValueError, match="even_activation is for chiral models"):
        _model(False, even_activation="relu")


def _tanh_everywhere(model: TemporalModel) -> TemporalModel:
    """The same weights with tanh on every channel."""
    other = _model(True)
    nnx.update(other, nnx.state(model))
    other.eval()
    return other


def test_plain_model_is_not_equivariant(plain_model):
    with pytest.raises(AssertionError, match="not chirality equivariant"):
        assert_equivariant(_pure(plain_model), L2, L3, X)


@pytest.mark.parametrize("chiral, causal", [(True, False), (False, False), (False, True)])
def test_strided_path_equals_dilated_path(chiral, causal, chiral_model, plain_model):
    model = {True: chiral_model, False: plain_model}[chiral]
    if causal:
        model = _model(chiral, causal=True)
        model.eval()
    first_frames = _pure(model)(X)[:, 0].reshape(2, 2, 17, 3)
    strided = _pure(model, strided=True)(WINDOWS)
    np.testing.assert_allclose(strided, first_frames, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of receptive_field"):
        model(WINDOWS[:, :-1], strided=True)


def test_phase_split_dilation_matches_native_dilated_conv(plain_model):
    conv = plain_model.expand_conv  # an undilated nnx.Conv, kernel 3, no bias

    @jax.jit
    def both(x):  # 23 frames: not a multiple of either dilation
        return [
            (
                lifting._dilated_conv(conv, x, 3, d),
                jax.lax.conv_general_dilated(
                    x,
                    conv.kernel[...],
                    (1,),
                    "VALID",
                    rhs_dilation=(d,),
                    dimension_numbers=("NWC", "WIO", "NWC"),
                ),
            )
            for d in (3, 7)
        ]

    for phases, native in both(_poses(9, 2, 23, 34)):
        assert phases.shape == native.shape
        np.testing.assert_allclose(phases, native, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "causal, seen, residual_only",
    [(False, range(1, 10), [4, 5, 6]), (True, range(-3, 6), [3, 4, 5])],
)
def test_causal_model_only_uses_past_frames(causal, seen, residual_only):
    """Which frames of a sequence reach output frame ``t = 5``, as the data pipeline pads it.

    The residual logic is shared by both variants; the plain one compiles faster.
    """
    model = _model(False, causal=causal, activation="tanh")
    model.eval()
    assert model.causal_shift == (model.pad if causal else 0)
    left, right = model.pad + model.causal_shift, model.pad - model.causal_shift
    t, frames = 5, 12

    def frames_reaching_t(model):
        graphdef, state = nnx.split(model)

        def out_t(seq):
            padded = jnp.pad(seq, ((0, 0), (left, right), (0, 0), (0, 0)), mode="edge")
            return jnp.sum(_apply(graphdef, state, padded)[0][:, t])

        grad = jax.grad(out_t)(_poses(11, 1, frames, 17, 2))
        return np.flatnonzero(np.asarray(jnp.any(grad != 0, axis=(0, 2, 3)))).tolist()

    # Edge padding folds frames before 0 onto frame 0.
    assert frames_reaching_t(model) == sorted({min(max(s, 0), frames - 1) for s in seen})
    # Without the block convs only the residual path is left: the centre (causal:
    # last) frames of the expand conv's window.
    for block in model.blocks:
        nnx.update(block.conv, jax.tree.map(jnp.zeros_like, nnx.state(block.conv, nnx.Param)))
    assert frames_reaching_t(model) == residual_only


def test_flip_tta(chiral_model, plain_model):
    chiral = _pure(chiral_model)
    np.testing.assert_allclose(flip_average(chiral, L2, L3)(X), chiral(X), rtol=1e-5, atol=1e-5)
    plain = _pure(plain_model)
    assert not np.allclose(flip_average(plain, L2, L3)(X), plain(X), atol=1e-3)
    # Averaging over the mirror makes any model equivariant.
    assert_equivariant(flip_average(plain, L2, L3), L2, L3, X)


def test_custom_skeleton_humaneva():
    model = TemporalModel(
        HUMANEVA_15,
        HUMANEVA_15,
        chiral=True,
        filter_widths=(3,),
        channels=15 * 4,
        rngs=nnx.Rngs(0),
    )
    model.eval()
    x = _poses(13, 2, 5, 15, 2)
    assert _pure(model)(x).shape == (2, 3, 15, 3)
    assert_equivariant(_pure(model), HUMANEVA_15.layout(2), HUMANEVA_15.layout(3), x)


def test_single_frame_model_lifts_each_frame_alone():
    model = SingleFrameModel(H36M_17, H36M_17, chiral=True, channels=CHANNELS, rngs=nnx.Rngs(0))
    model.eval()
    assert model.filter_widths == (1, 1, 1) and model.receptive_field == 1
    f = _pure(model)
    y = f(X)
    assert y.shape == X.shape[:-1] + (3,)
    changed = f(X.at[:, 2].add(1.0))
    np.testing.assert_array_equal(np.delete(changed, 2, axis=1), np.delete(y, 2, axis=1))
    assert not np.allclose(changed[:, 2], y[:, 2])
    assert_equivariant(f, L2, L3, X)


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="multiple of the 17 joints"):
        _model(True, channels=100)
    with pytest.raises(ValueError, match="not odd"):
        nnx.eval_shape(lambda: _model(True, activation=jax.nn.relu))
    with pytest.raises(ValueError, match="unknown activation"):
        _model(True, activation="relu")
    with pytest.raises(ValueError, match="odd positive"):
        _model(False, filter_widths=(3, 2))
    with pytest.raises(ValueError, match="mode must be"):
        _model(False, mode="dense")
    # Plain models need no divisibility; chiral ones accept any odd callable.
    assert nnx.eval_shape(lambda: _model(False, channels=100)).num_params > 0
    assert nnx.eval_shape(lambda: _model(True, activation=jax.nn.soft_sign)).num_params > 0


def test_bad_inputs_raise_clear_errors(plain_model):
    with pytest.raises(ValueError, match=r"\[\*batch, frames, 17, 2\]"):
        plain_model(jnp.zeros((2, FIELD, 16, 2)))
    with pytest.raises(ValueError, match="shorter than the receptive field"):
        plain_model(jnp.zeros((2, FIELD - 1, 17, 2)))


def test_bn_momentum_schedule_and_setter(chiral_model):
    assert lifting.videopose3d_bn_momentum(0, 80) == pytest.approx(0.9)
    assert lifting.videopose3d_bn_momentum(40, 80) == pytest.approx(0.99)
    assert lifting.videopose3d_bn_momentum(80, 80) == pytest.approx(0.999)
    model = nnx.clone(chiral_model)
    lifting.set_bn_momentum(model, 0.95)
    norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, ChiralBatchNorm)]
    assert len(norms) == 1 + 2 * (len(WIDTHS) - 1)
    np.testing.assert_allclose([m.momentum[...] for m in norms], 0.95)
    # The running mean moves from zero by (1 - momentum) of the mirror-averaged batch mean.
    norm = norms[0]
    norm.mean[...] = jnp.zeros_like(norm.mean[...])
    h = _poses(15, 8, norm.layout.size)
    nnx.jit(lambda norm, h: norm(h, use_running_average=False))(norm, h)
    batch_mean = (jnp.mean(h, 0) + norm.layout.transform(jnp.mean(h, 0))) / 2
    np.testing.assert_allclose(norm.mean[...], 0.05 * batch_mean, rtol=1e-5, atol=1e-7)
    # Momentum is state: a jitted step keeps its compilation across a change.
    traces = []

    @nnx.jit
    def step(model, x):
        traces.append(1)
        return model(x)

    step(model, X)
    lifting.set_bn_momentum(model, 0.5)
    step(model, X)
    assert len(traces) == 1
    with pytest.raises(ValueError, match="Flax convention"):
        lifting.set_bn_momentum(model, 1.5)
    with pytest.raises(ValueError, match="no batch-norm"):
        lifting.set_bn_momentum(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 0.9)
