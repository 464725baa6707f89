"""Lifting metrics on hand-computed cases."""

import numpy as np
import pytest

from chiral_tasks.lifting import metrics


def _pose(seed: int, shape=(17, 3)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_mpjpe_of_constant_offset_is_offset_norm():
    target = _pose(0, (5, 17, 3))
    offset = np.array([0.03, -0.04, 0.12])
    errors = metrics.mpjpe(target + offset, target)
    assert errors.shape == (5,)
    np.testing.assert_allclose(errors, 0.13)


def test_mpjpe_hand_computed():
    target = np.zeros((2, 3))
    predicted = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    assert metrics.mpjpe(predicted, target) == pytest.approx(3.0)


def test_p_mpjpe_of_similar_copy_is_zero():
    target = _pose(1, (4, 17, 3))
    predicted = 2.5 * target @ _rotation(2) + np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(metrics.p_mpjpe(predicted, target), 0.0, atol=1e-10)
    assert metrics.mpjpe(predicted, target).min() > 0.1


def test_p_mpjpe_excludes_reflections():
    target = _pose(3)
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    # The mirror image is a similarity only with det -1, which Procrustes must refuse.
    assert metrics.p_mpjpe(mirrored, target) > 0.05
    aligned = metrics.procrustes_align(mirrored, target)
    assert metrics.mpjpe(aligned, target) == pytest.approx(metrics.p_mpjpe(mirrored, target))


def test_p_mpjpe_is_at_most_mpjpe_and_matches_brute_force_rotation():
    target = _pose(4)
    predicted = target + 0.1 * _pose(5)
    assert metrics.p_mpjpe(predicted, target) <= metrics.mpjpe(predicted, target)
    # Rotations about z near the optimum never beat the Procrustes answer.
    best = metrics.p_mpjpe(predicted, target)
    centred = predicted - predicted.mean(0)
    for angle in np.linspace(-0.2, 0.2, 9):
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        candidate = centred @ rot + target.mean(0)
        assert metrics.mpjpe(candidate, target) >= best - 1e-12


def test_p_mpjpe_of_collapsed_prediction_is_spread_of_target():
    target = _pose(6)
    predicted = np.ones_like(target)
    expected = np.linalg.norm(target - target.mean(0), axis=-1).mean()
    assert metrics.p_mpjpe(predicted, target) == pytest.approx(expected)


def test_n_mpjpe_of_scaled_copy_is_zero():
    target = _pose(7, (3, 17, 3))
    scales = np.array([0.5, 1.0, 3.0])[:, None, None]
    np.testing.assert_allclose(metrics.n_mpjpe(scales * target, target), 0.0, atol=1e-12)
    # Scale only: a translated copy keeps an error.
    assert metrics.n_mpjpe(target + 1.0, target).min() > 0.1


def test_mpjve_of_constant_velocity_shift():
    t = np.arange(6.0)[:, None, None]
    target = _pose(8) + t * np.array([0.1, 0.0, 0.0])
    # A shift growing by 0.02 m per frame along y: velocity error 0.02 everywhere.
    predicted = target + t * np.array([0.0, 0.02, 0.0])
    errors = metrics.mpjve(predicted, target)
    assert errors.shape == (5,)
    np.testing.assert_allclose(errors, 0.02)
    # A constant offset has no velocity error.
    np.testing.assert_allclose(metrics.mpjve(target + 1.0, target), 0.0, atol=1e-12)


def test_mpjve_time_axis():
    target = np.zeros((2, 4, 17, 3))
    predicted = target + np.arange(2.0)[:, None, None, None] * np.array([0.0, 0.0, 0.3])
    np.testing.assert_allclose(metrics.mpjve(predicted, target, time_axis=0), 0.3)
    with pytest.raises(ValueError, match="joint or coordinate"):
        metrics.mpjve(predicted, target, time_axis=-2)


def test_action_wise_groups_by_first_word_and_weights_frames():
    errors = [np.full(1, 1.0), np.full(3, 3.0), np.full((2, 2), 10.0)]
    names = ["Walking", "Walking 1", "Sitting 2"]
    per_action, overall = metrics.action_wise(errors, names)
    # Walking: frame-weighted (1 + 3 * 3) / 4 = 2.5, not the mean of sequence means (2.0).
    assert per_action == pytest.approx({"Walking": 2.5, "Sitting": 10.0})
    assert overall == pytest.approx(6.25)


@pytest.mark.parametrize(
    ("predicted", "target", "message"),
    [
        (np.zeros((17, 3)), np.zeros((16, 3)), "shapes differ"),
        (np.zeros(3), np.zeros(3), r"\(\.\.\., J, D\)"),
        (np.full((17, 3), np.nan), np.zeros((17, 3)), "predicted holds NaN"),
    ],
)
def test_bad_inputs_raise(predicted, target, message):
    with pytest.raises(ValueError, match=message):
        metrics.mpjpe(predicted, target)


def test_action_wise_bad_inputs_raise():
    with pytest.raises(ValueError, match="2 error arrays for 1"):
        metrics.action_wise([np.ones(2), np.ones(2)], ["Walking"])
    with pytest.raises(ValueError, match="no frames"):
        metrics.action_wise([np.ones(0)], ["Walking"])
