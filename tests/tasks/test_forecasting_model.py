"""The seq2seq forecaster: chiral equivariance over the decoded steps, gradients, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from chiral_jax import ChiralLSTMCell, assert_equivariant, flip_average
from chiral_tasks.common.data import Batcher
from chiral_tasks.common.train import TrainConfig, Trainer, with_mode
from chiral_tasks.forecasting.model import (
    POSE_LAYOUT,
    Forecaster,
    ForecasterConfig,
    forecast_loss,
)

HIDDEN = 26  # 13 joints x 2 dims: small, and compile time does not depend on it much


def _model(chiral, **kw):
    return Forecaster(ForecasterConfig(chiral=chiral, hidden=HIDDEN, **kw), rngs=nnx.Rngs(0))


def _jitted(model):
    graphdef, state = nnx.split(with_mode(model, train=False))
    return jax.jit(lambda x: nnx.merge(graphdef, state)(x))


def _batch(n=8, seed=0, observed=2):
    rng = np.random.default_rng(seed)
    observed = rng.normal(scale=0.5, size=(n, observed, 13, 2)).astype(np.float32)
    future = observed[:, -1:] + 0.05 * np.cumsum(rng.normal(size=(n, 16, 13, 2)), axis=1)
    visible = (rng.random((n, 16, 13, 1)) > 0.2).astype(np.float32)
    return {"observed": observed, "future": future.astype(np.float32), "visible": visible}


def test_chiral_forecast_is_equivariant_over_16_autoregressive_steps():
    f = _jitted(_model(chiral=True))
    x = jnp.asarray(_batch()["observed"])
    y = f(x)
    assert y.shape == (8, 16, 13, 2)
    assert float(jnp.std(y[:, -1] - y[:, 0])) > 1e-3  # the decoder moves: a real test
    assert_equivariant(f, POSE_LAYOUT, POSE_LAYOUT, x, rtol=1e-4)


def test_plain_forecast_is_not_equivariant_but_its_flip_average_is():
    model = _model(chiral=False)
    x = jnp.asarray(_batch()["observed"])
    with pytest.raises(AssertionError, match="not chirality equivariant"):
        assert_equivariant(_jitted(model), POSE_LAYOUT, POSE_LAYOUT, x, rtol=1e-4)
    graphdef, state = nnx.split(with_mode(model, train=False))
    tta = jax.jit(lambda x: flip_average(nnx.merge(graphdef, state), POSE_LAYOUT, POSE_LAYOUT)(x))
    assert_equivariant(tta, POSE_LAYOUT, POSE_LAYOUT, x, rtol=1e-4)


def test_teacher_forcing_reads_the_truth_and_dropout_is_off_in_eval():
    graphdef, state = nnx.split(with_mode(_model(chiral=False), train=False))
    run = jax.jit(lambda *args: nnx.merge(graphdef, state)(*args))
    batch = _batch()
    free = run(batch["observed"])
    forced = run(batch["observed"], batch["future"])
    np.testing.assert_allclose(forced[:, 0], free[:, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(forced[:, 1:], free[:, 1:])
    np.testing.assert_array_equal(run(batch["observed"]), free)


@pytest.mark.slow  # the cells' own gate test runs by default (test_recurrent.py)
def test_gradients_reach_every_gate_of_every_lstm_layer():
    model = with_mode(_model(chiral=True), train=False)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # Three encoder steps: in the first, c = h = 0, so the forget gate and the
    # recurrent kernels get no gradient there by construction.
    batch = _batch(observed=4)

    def loss(params):
        return forecast_loss(nnx.merge(graphdef, params, rest), batch)[0]

    grads = nnx.merge(graphdef, jax.grad(loss)(params), rest)
    hidden = HIDDEN // 13
    for part in ("encoder", "decoder"):
        cells = getattr(grads, part)
        assert len(cells) == 2
        for cell in cells:
            assert isinstance(cell, ChiralLSTMCell)
            # assembled from the gradient blocks: columns [joint, gate, dim]
            for linear in (cell.input_gates, cell.hidden_gates):
                kernel = np.asarray(linear.dense_kernel()[0]).reshape(-1, 13, 3, hidden)
                for gate in range(3):  # input, forget, output
                    assert np.abs(kernel[:, :, gate]).max() > 0, (part, gate)
            for linear in (cell.input_candidate, cell.hidden_candidate):
                assert np.abs(np.asarray(linear.dense_kernel()[0])).max() > 0, part


@pytest.mark.slow  # training is also checked by the lifting and recognition defaults
def test_a_few_training_steps_lower_the_loss():
    batch = _batch(n=64)
    config = TrainConfig(epochs=6, batch_size=64, lr=5e-3, clip_norm=5.0, progress=False)
    batcher = Batcher(batch, 64, seed=0)
    model = _model(chiral=False)
    before = float(forecast_loss(with_mode(model, train=False), batch)[0])
    trainer = Trainer(model, forecast_loss, config, len(batcher))
    history = trainer.fit(batcher)
    after = float(forecast_loss(trainer.model(), batch)[0])
    assert history[-1]["loss"] < history[0]["loss"]
    assert after < 0.8 * before


def test_bad_shapes_and_configs_are_refused():
    model = _model(chiral=False)
    with pytest.raises(ValueError, match="observed must be"):
        model(jnp.zeros((2, 2, 12, 2)))
    with pytest.raises(ValueError, match="future must be"):
        model(jnp.zeros((2, 2, 13, 2)), jnp.zeros((2, 15, 13, 2)))
    with pytest.raises(ValueError, match="multiple of 13"):
        ForecasterConfig(hidden=100)
