"""PCK on hand-computed cases."""

import numpy as np
import pytest

from chiral_tasks.forecasting.metrics import pck


def _poses(rng, n=3, steps=4, joints=13):
    return rng.normal(size=(n, steps, joints, 2))


def test_exact_predictions_score_one():
    target = _poses(np.random.default_rng(0))
    per_step, average = pck(target, target, np.ones(target.shape[:3], dtype=bool))
    np.testing.assert_array_equal(per_step, np.ones(4))
    assert average == 1.0


def test_threshold_is_strict_and_euclidean():
    target = np.zeros((1, 1, 4, 2))
    pred = target.copy()
    pred[0, 0, 0] = (0.06, 0.079)  # distance 0.0991: correct
    pred[0, 0, 1] = (0.06, 0.081)  # distance 0.1008: wrong, though each axis is < 0.1
    pred[0, 0, 2] = (0.1, 0.0)  # exactly the threshold: wrong
    pred[0, 0, 3] = (0.0, -0.0999)  # correct
    per_step, average = pck(pred, target, np.ones((1, 1, 4)))
    np.testing.assert_allclose(per_step, [0.5])
    assert average == 0.5


def test_threshold_argument():
    target = np.zeros((1, 1, 2, 2))
    pred = np.array([[[[0.15, 0.0], [0.25, 0.0]]]])
    assert pck(pred, target, np.ones((1, 1, 2)))[1] == 0.0
    assert pck(pred, target, np.ones((1, 1, 2)), threshold=0.2)[1] == 0.5


def test_invisible_joints_are_ignored():
    target = np.zeros((2, 2, 3, 2))
    pred = target.copy()
    pred[:, :, 0] = 5.0  # far off, but invisible
    visible = np.ones((2, 2, 3), dtype=bool)
    visible[:, :, 0] = False
    pred[1, 1, 2] = 1.0  # visible and wrong: step 1 has 3 of 4 visible joints right
    per_step, average = pck(pred, target, visible)
    np.testing.assert_allclose(per_step, [1.0, 0.75])
    assert average == pytest.approx(0.875)


def test_joints_are_pooled_over_samples_per_step():
    target = np.zeros((2, 1, 2, 2))
    pred = target.copy()
    pred[0, 0, 0] = 1.0  # sample 0: 0 of 1 visible right; sample 1: 2 of 2 right
    visible = np.array([[[True, False]], [[True, True]]])
    per_step, _ = pck(pred, target, visible)
    np.testing.assert_allclose(per_step, [2 / 3])  # not the mean of 0 and 1


def test_step_without_visible_joint_is_nan():
    target = np.zeros((1, 3, 2, 2))
    pred = target.copy()
    pred[0, 2] = 1.0
    visible = np.ones((1, 3, 2), dtype=bool)
    visible[0, 1] = False
    per_step, average = pck(pred, target, visible)
    assert per_step[0] == 1.0 and np.isnan(per_step[1]) and per_step[2] == 0.0
    assert average == 0.5
    assert np.isnan(pck(pred, target, np.zeros((1, 3, 2)))[1])


def test_xy_pairing_matters():
    """Reading a flat [x0..x12, y0..y12] vector as interleaved [x0, y0, ...] pairs
    the wrong coordinates and gives another score: the metric takes (J, 2)."""
    j = 13
    target = np.zeros((1, 1, j, 2))
    pred = target.copy()
    pred[0, 0, :, 1] = np.where(np.arange(j) < 6, 0.3, 0.0)  # joints 0-5 off in y only
    visible = np.ones((1, 1, j))
    per_step, _ = pck(pred, target, visible)
    np.testing.assert_allclose(per_step, [7 / 13])

    def misread(poses):  # the flat layout, read back as if interleaved
        flat = np.concatenate([poses[..., 0], poses[..., 1]], axis=-1)
        return flat.reshape(*poses.shape[:-2], j, 2)

    wrong, _ = pck(misread(pred), misread(target), visible)
    assert not np.allclose(wrong, per_step)
    with pytest.raises(ValueError, match="\\(N, S, J, 2\\)"):
        pck(pred.reshape(1, 1, 2 * j), target.reshape(1, 1, 2 * j), visible)


@pytest.mark.parametrize(
    ("pred_shape", "target_shape", "visible_shape", "message"),
    [
        ((1, 2, 13, 2), (1, 2, 12, 2), (1, 2, 13), "target shape"),
        ((1, 2, 13, 2), (1, 2, 13, 2), (1, 2, 12), "visible must have shape"),
        ((2, 13, 2), (2, 13, 2), (2, 13), "\\(N, S, J, 2\\)"),
        ((1, 2, 13, 3), (1, 2, 13, 3), (1, 2, 13), "\\(N, S, J, 2\\)"),
    ],
)
def test_shape_mismatch_raises(pred_shape, target_shape, visible_shape, message):
    with pytest.raises(ValueError, match=message):
        pck(np.zeros(pred_shape), np.zeros(target_shape), np.ones(visible_shape))


def test_nan_prediction_raises():
    pred = np.zeros((1, 1, 2, 2))
    pred[0, 0, 1, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        pck(pred, np.zeros_like(pred), np.ones((1, 1, 2)))
