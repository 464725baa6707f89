"""Procedural humanoid: skeleton mapping, subjects, actions, kinematic plausibility."""

import dataclasses

import numpy as np
import pytest

from chiral_jax import skeletons
from chiral_tasks.common import camera as cam
from chiral_tasks.common import motion as m
from chiral_tasks.common.actions import ACTION_INFO, ACTIONS

J = {name: j for j, name in enumerate(m.BODY_JOINTS)}
FPS = 50.0
FRAMES = 500


@pytest.fixture(scope="module")
def subject():
    return m.make_subjects(1, seed=0)[0]


@pytest.fixture(scope="module")
def sequences(subject):
    """Every action, right- and left-handed, with the same seed."""
    return {
        (action, hand): m.simulate(action, subject, FRAMES, fps=FPS, seed=5, handedness=hand)
        for action in ACTIONS
        for hand in ("right", "left")
    }


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# -- skeletons ------------------------------------------------------------------------


def test_every_dataset_skeleton_maps_by_name(sequences):
    x = sequences["walking", "right"]
    for skeleton in skeletons.SKELETONS.values():
        y = m.to_skeleton(x, skeleton)
        assert y.shape == (FRAMES, skeleton.num_joints, 3)
        assert len(set(m.skeleton_indices(skeleton).tolist())) == skeleton.num_joints
    h36m = m.to_skeleton(x, skeletons.H36M_17)
    np.testing.assert_array_equal(h36m[:, 0], x[:, J["pelvis"]])
    np.testing.assert_array_equal(h36m[:, 9], x[:, J["upper_neck"]])
    np.testing.assert_array_equal(h36m[:, 10], x[:, J["head_top"]])
    np.testing.assert_array_equal(h36m[:, 16], x[:, J["right_wrist"]])
    # OpenPose's neck is the midpoint of the shoulders.
    openpose = m.to_skeleton(x, skeletons.OPENPOSE_18)
    shoulders = (x[:, J["left_shoulder"]] + x[:, J["right_shoulder"]]) / 2
    np.testing.assert_allclose(openpose[:, 1], shoulders, atol=1e-5)
    # Works on 2D arrays too.
    assert m.to_skeleton(x[..., :2], skeletons.PENN_ACTION_13).shape == (FRAMES, 13, 2)


def test_to_skeleton_rejects_unknown_joints_and_bad_shapes(sequences):
    tail = dataclasses.replace(
        skeletons.PENN_ACTION_13,
        name="tailed",
        joint_names=("tail",) + skeletons.PENN_ACTION_13.joint_names[1:],
    )
    with pytest.raises(ValueError, match="tail"):
        m.to_skeleton(sequences["walking", "right"], tail)
    with pytest.raises(ValueError, match="body positions"):
        m.to_skeleton(np.zeros((10, 17, 3)), skeletons.H36M_17)


def test_mirror_body_matches_the_skeleton_chirality_transform(sequences):
    x = sequences["golf_swing", "right"][:20]
    np.testing.assert_array_equal(m.mirror_body(m.mirror_body(x)), x)
    for skeleton in (skeletons.H36M_17, skeletons.OPENPOSE_18, skeletons.HUMANEVA_15):
        expected = np.asarray(skeleton.layout(3).transform(m.to_skeleton(x, skeleton)))
        np.testing.assert_array_equal(m.to_skeleton(m.mirror_body(x), skeleton), expected)


# -- subjects -------------------------------------------------------------------------


def test_subjects_vary_in_height_and_proportions():
    subjects = m.make_subjects(12, seed=3)
    heights = np.array([s.height for s in subjects])
    assert np.all((heights >= 1.5) & (heights <= 1.95)) and np.ptp(heights) > 0.2
    legs = np.array([(s.thigh + s.shin) / s.height for s in subjects])
    arms = np.array([(s.upper_arm + s.forearm) / s.height for s in subjects])
    assert np.ptp(legs) > 0.02 and np.ptp(arms) > 0.02
    assert [s.name for s in subjects[:2]] == ["S1", "S2"]
    assert m.make_subjects(12, seed=3) == subjects
    assert m.make_subjects(12, seed=4) != subjects
    with pytest.raises(ValueError, match="thigh"):
        dataclasses.replace(subjects[0], thigh=-0.1)
    with pytest.raises(ValueError, match="forearm"):
        dataclasses.replace(subjects[0], forearm=float("nan"))


def test_different_subjects_give_different_motion():
    a, b = m.make_subjects(2, seed=0)
    xa, xb = (m.simulate("squat", s, 100, seed=1) for s in (a, b))
    assert np.abs(xa - xb).max() > 0.05
    top = (xa[:, J["head_top"], 2].max(), xb[:, J["head_top"], 2].max())
    assert top[0] == pytest.approx(a.height, abs=0.03)
    assert top[1] == pytest.approx(b.height, abs=0.03)


# -- actions --------------------------------------------------------------------------


def test_action_catalogue_mixes_symmetries_and_rhythms():
    assert len(ACTIONS) >= 16 and len(set(ACTIONS)) == len(ACTIONS)
    assert set(ACTION_INFO) == set(ACTIONS)
    infos = ACTION_INFO.values()
    assert {i.symmetric for i in infos} == {True, False}
    assert {i.periodic for i in infos} == {True, False}
    assert {i.lead for i in infos} == {None, "arm", "leg"}
    assert {i.locomotion for i in infos} == {"path", "turn", "in_place"}
    for info in infos:
        assert (info.lead is None) == info.symmetric


def test_same_seed_same_motion_other_seed_other_motion(subject, sequences):
    again = m.simulate("boxing", subject, FRAMES, fps=FPS, seed=5)
    np.testing.assert_array_equal(again, sequences["boxing", "right"])
    assert again.dtype == np.float32
    other = m.simulate("boxing", subject, FRAMES, fps=FPS, seed=6)
    assert np.abs(other - again).max() > 0.05


def test_motion_is_a_function_of_time(subject):
    slow = m.simulate("tennis_serve", subject, 100, fps=25.0, seed=2)
    fast = m.simulate("tennis_serve", subject, 200, fps=50.0, seed=2)
    np.testing.assert_allclose(fast[::2], slow, atol=1e-5)


def test_left_handed_is_the_mirror_image_of_right_handed(sequences):
    for action in ACTIONS:
        right, left = sequences[action, "right"], sequences[action, "left"]
        np.testing.assert_allclose(m.mirror_body(right), left, atol=1e-5, err_msg=action)


def test_bones_keep_their_length(sequences):
    child = np.array([j for j, p in enumerate(m.BODY_PARENTS) if p >= 0])
    parent = np.array([p for p in m.BODY_PARENTS if p >= 0])
    for (action, _), x in sequences.items():
        lengths = np.linalg.norm(x[:, child] - x[:, parent], axis=-1)
        assert np.all(lengths.min(0) > 0.01), action
        np.testing.assert_allclose(lengths, lengths[:1].repeat(len(x), 0), atol=1e-5)
        # Mirror-symmetric bodies: each left bone as long as its right partner.
        mirrored = np.linalg.norm(m.mirror_body(x)[:, child] - m.mirror_body(x)[:, parent], axis=-1)
        np.testing.assert_allclose(np.sort(mirrored[0]), np.sort(lengths[0]), atol=1e-5)


def _angle(a, b):
    cos = np.sum(_unit(a) * _unit(b), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_joint_angles_stay_plausible(sequences):
    for (action, _), x in sequences.items():
        hip_axis = x[:, J["right_hip"]] - x[:, J["left_hip"]]
        for side in ("left", "right"):
            thigh = x[:, J[f"{side}_knee"]] - x[:, J[f"{side}_hip"]]
            shin = x[:, J[f"{side}_ankle"]] - x[:, J[f"{side}_knee"]]
            # Knee flexion turns the shin backwards about the hip's left-right axis.
            backwards = np.sum(np.cross(_unit(thigh), _unit(shin)) * _unit(hip_axis), axis=-1)
            assert backwards.max() < 1e-4, (action, side)
            assert _angle(thigh, shin).max() < 156, (action, side)
            upper = x[:, J[f"{side}_elbow"]] - x[:, J[f"{side}_shoulder"]]
            fore = x[:, J[f"{side}_wrist"]] - x[:, J[f"{side}_elbow"]]
            assert _angle(upper, fore).max() < 151, (action, side)


def test_motion_is_smooth(subject):
    # Sampled finer, a C1 motion's acceleration converges; a kink or a jump
    # would grow it with the frame rate (4x and 16x from 50 to 200 fps).
    for action in ACTIONS:
        peaks = []
        for fps in (50.0, 200.0):
            x = m.simulate(action, subject, int(4 * fps), fps=fps, seed=5).astype(np.float64)
            peaks.append(np.linalg.norm(np.diff(x, 2, axis=0), axis=-1).max() * fps**2)
        assert peaks[1] < 2.0 * peaks[0] + 1.0, (action, peaks)
        assert peaks[0] < 400.0, action  # m/s^2: a golfer's hands, not a glitch


def test_bodies_rest_on_the_floor_or_hang(subject, sequences):
    for action, info in ACTION_INFO.items():
        x = sequences[action, "right"]
        ankles = x[:, [J["left_ankle"], J["right_ankle"]], 2].min(axis=1)
        lowest = x[..., 2].min(axis=1)
        if info.posture == "hanging":
            assert ankles.min() > 0.15, action
        else:
            assert lowest.min() >= subject.ankle_height - 1e-5, action
            assert lowest.min() < subject.ankle_height + 0.01, action
            assert lowest.max() < subject.ankle_height + 0.12, action
        if info.posture == "standing":
            np.testing.assert_allclose(ankles, lowest, err_msg=action)
            assert x[:, J["head_top"], 2].min() > 0.5 * subject.height, action
        if info.posture in ("prone", "supine"):
            assert x[:, J["pelvis"], 2].max() < 0.5, action


def test_walking_travels_and_in_place_actions_stay(sequences):
    walk = sequences["walking", "right"][:, J["pelvis"], :2]
    assert np.sum(np.linalg.norm(np.diff(walk, axis=0), axis=-1)) > 0.9 * FRAMES / FPS
    assert np.ptp(walk, axis=0).max() > 1.0
    for action in ("waving", "clapping", "boxing", "pushup"):
        pelvis = sequences[action, "right"][:, J["pelvis"], :2]
        assert np.ptp(pelvis, axis=0).max() < 0.15, action
    # Turning spins in place: the hip axis turns by more than a full circle.
    x = sequences["turning", "right"]
    axis = x[:, J["right_hip"]] - x[:, J["left_hip"]]
    turned = np.unwrap(np.arctan2(axis[:, 1], axis[:, 0]))
    assert abs(turned[-1] - turned[0]) > 2 * np.pi
    assert np.ptp(x[:, J["pelvis"], :2], axis=0).max() < 0.3


def test_handedness_picks_the_lead_limb(sequences):
    def motion(x, joint):
        return np.linalg.norm(x[:, J[joint]] - x[:, J["pelvis"]], axis=-1).std()

    for action, limb in (("waving", "wrist"), ("kicking", "ankle")):
        right, left = sequences[action, "right"], sequences[action, "left"]
        assert motion(right, f"right_{limb}") > 4 * motion(right, f"left_{limb}"), action
        assert motion(left, f"left_{limb}") > 4 * motion(left, f"right_{limb}"), action


def test_every_camera_sees_every_action():
    subjects = m.make_subjects(3, seed=1)
    for seed in range(2):
        cameras = cam.make_cameras(seed)
        for action in ACTIONS:
            x = m.simulate(action, subjects[seed], 300, seed=seed)
            for camera in cameras:
                X_cam = camera.world_to_camera(x)
                assert X_cam[..., 2].min() > 2.0, (action, camera.id)
                uv = cam.project_to_pixels(X_cam, camera)
                assert np.all((uv > 0) & (uv < [camera.res_w, camera.res_h])), (action, camera.id)


def test_bad_arguments_raise(subject):
    with pytest.raises(ValueError, match="unknown action"):
        m.simulate("moonwalk", subject, 10)
    with pytest.raises(ValueError, match="handedness"):
        m.simulate("waving", subject, 10, handedness="both")
    with pytest.raises(ValueError, match="num_frames"):
        m.simulate("waving", subject, 0)
    with pytest.raises(ValueError, match="fps"):
        m.simulate("waving", subject, 10, fps=-1.0)
    with pytest.raises(TypeError, match="Subject"):
        m.simulate("waving", {"height": 1.7}, 10)


def test_keyframe_spline_is_periodic_and_passes_through_keys():
    times = np.array([0.0, 0.2, 0.5, 0.7])
    values = np.array([1.0, 3.0, -2.0, 0.5])
    np.testing.assert_allclose(m._periodic_spline(times, times, values), values)
    u = np.linspace(-1.0, 2.0, 301)
    np.testing.assert_allclose(
        m._periodic_spline(u, times, values), m._periodic_spline(u + 1.0, times, values)
    )
    # C1: one-sided slopes agree at every key.
    eps = 1e-6
    left = (values - m._periodic_spline(times - eps, times, values)) / eps
    right = (m._periodic_spline(times + eps, times, values) - values) / eps
    np.testing.assert_allclose(left, right, atol=1e-3)
