"""Lifting files: VideoPose3D's pickled layout, our pickle-free format, preprocessing."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from chiral_jax.skeletons import COCO_17, H36M_17, HUMANEVA_15, MPII_16, Skeleton
from chiral_tasks.common.camera import make_cameras, normalize_screen_coordinates
from chiral_tasks.lifting.archive import LiftingFormatError
from chiral_tasks.lifting.cameras import load_cameras_json, save_cameras_json
from chiral_tasks.lifting.data import load_dataset, to_camera_frames
from chiral_tasks.lifting.dataset import LiftingDataset, Recording, SubjectData
from chiral_tasks.lifting.npz import FORMAT_VERSION, load_npz, save_npz
from chiral_tasks.lifting.videopose3d import (
    H36M_KEPT_JOINTS,
    UntrustedPickleError,
    VideoPose3DDetections,
    convert_videopose3d,
    from_videopose3d,
    load_videopose3d_2d,
    load_videopose3d_3d,
)

H36M_METADATA = {
    "layout_name": "h36m",
    "num_joints": 17,
    "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]],
}
# VideoPose3D's Detectron detections of Human3.6M (data_2d_h36m_detectron_pt_coco.npz).
COCO_METADATA = {
    "layout_name": "coco",
    "num_joints": 17,
    "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]],
}
# Frames of mocap per (subject, action); "S11/Directions" is the corrupt one.
FRAMES = {"S1": {"Walking": 10, "Walking 1": 7}, "S11": {"Directions": 5, "Sitting": 6}}


def _official_h36m(tmp_path, *, extra_2d_frames=3, metadata=H36M_METADATA):
    """Write a tiny data_3d_h36m.npz / data_2d_h36m_cpn.npz pair; return paths and arrays."""
    rng = np.random.default_rng(0)
    poses, detections = {}, {}
    for subject, actions in FRAMES.items():
        poses[subject], detections[subject] = {}, {}
        for action, frames in actions.items():
            poses[subject][action] = rng.normal(size=(frames, 32, 3)).astype(np.float32)
            # Camera 1 has more detections than mocap frames: they must be cut.
            detections[subject][action] = [
                rng.uniform(0, 1000, size=(frames + extra_2d_frames * (k == 1), 17, 2)).astype(
                    np.float32
                )
                for k in range(4)
            ]
    path_3d, path_2d = tmp_path / "data_3d_h36m.npz", tmp_path / "data_2d_h36m_cpn.npz"
    np.savez_compressed(path_3d, positions_3d=poses)
    np.savez_compressed(path_2d, positions_2d=detections, metadata=metadata)
    return path_3d, path_2d, poses, detections


def _cameras():
    return {"S1": make_cameras(seed=1), "S11": make_cameras(seed=11)}


# -- VideoPose3D files -------------------------------------------------------------------


def test_official_3d_reduces_h36m_to_17_joints_and_drops_corrupt_sequence(tmp_path):
    path_3d, _, poses, _ = _official_h36m(tmp_path)
    loaded = load_videopose3d_3d(path_3d, trust_pickle=True)
    assert loaded.skeleton == H36M_17
    assert {s: list(a) for s, a in loaded.positions.items()} == {
        "S1": ["Walking", "Walking 1"],
        "S11": ["Sitting"],
    }
    kept = list(H36M_KEPT_JOINTS)
    walking = poses["S1"]["Walking"][:, kept]
    np.testing.assert_array_equal(loaded.positions["S1"]["Walking"], walking)
    assert loaded.positions["S11"]["Sitting"].shape == (6, 17, 3)


def test_official_2d_loads_per_camera_arrays(tmp_path):
    _, path_2d, _, detections = _official_h36m(tmp_path)
    loaded = load_videopose3d_2d(path_2d, trust_pickle=True)
    assert loaded.skeleton == H36M_17
    views = loaded.positions["S1"]["Walking 1"]
    assert len(views) == 4
    np.testing.assert_array_equal(views[1], detections["S1"]["Walking 1"][1])
    assert "Directions" not in loaded.positions["S11"]


def test_pickled_files_are_refused_without_trust(tmp_path):
    path_3d, path_2d, _, _ = _official_h36m(tmp_path)
    out = tmp_path / "ours.npz"
    for call in (
        lambda: load_videopose3d_3d(path_3d, trust_pickle=False),
        lambda: load_videopose3d_2d(path_2d, trust_pickle=False),
        lambda: convert_videopose3d(path_3d, path_2d, out, trust_pickle=False),
    ):
        with pytest.raises(UntrustedPickleError, match="trust_pickle=True") as info:
            call()
        assert "runs any code" in str(info.value) and "convert_videopose3d" in str(info.value)
    assert not out.exists()


def test_mpii_symmetry_is_compared_as_sets(tmp_path):
    # VideoPose3D's MPII lists: the right side runs ankle-to-hip, the left hip-to-ankle.
    metadata = {
        "layout_name": "mpii",
        "num_joints": 16,
        "keypoints_symmetry": [[3, 4, 5, 13, 14, 15], [0, 1, 2, 10, 11, 12]],
    }
    path = tmp_path / "data_2d_h36m_sh.npz"
    views = [np.zeros((4, 16, 2), np.float32)]
    np.savez_compressed(path, positions_2d={"S1": {"Walking": views}}, metadata=metadata)
    assert load_videopose3d_2d(path, trust_pickle=True).skeleton == MPII_16

    metadata["keypoints_symmetry"] = [[3, 4, 5, 13, 14, 6], [0, 1, 2, 10, 11, 12]]
    np.savez_compressed(path, positions_2d={"S1": {"Walking": views}}, metadata=metadata)
    with pytest.raises(LiftingFormatError, match="keypoints_symmetry .* does not match"):
        load_videopose3d_2d(path, trust_pickle=True)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({**H36M_METADATA, "num_joints": 16}, "metadata says 16 joints"),
        ({**H36M_METADATA, "layout_name": "blob"}, "unknown keypoint layout 'blob'"),
        ({"layout_name": "h36m"}, "missing keys"),
        ({**H36M_METADATA, "keypoints_symmetry": [1, 2]}, "must be \\[left_joints"),
    ],
)
def test_bad_2d_metadata_raises(tmp_path, metadata, message):
    _, path_2d, _, _ = _official_h36m(tmp_path, metadata=metadata)
    with pytest.raises(LiftingFormatError, match=message) as info:
        load_videopose3d_2d(path_2d, trust_pickle=True)
    assert str(path_2d) in str(info.value)


def test_official_values_beyond_float32_raise(tmp_path):
    # 1e300 is finite in the file's float64 and inf in the float32 the loaders return.
    path = tmp_path / "data_3d_h36m.npz"
    big = np.zeros((5, 32, 3))
    big[2, 4, 1] = 1e300
    np.savez_compressed(path, positions_3d={"S9": {"Eating": big}})
    with pytest.raises(LiftingFormatError, match="'S9', action 'Eating': holds NaN or inf"):
        load_videopose3d_3d(path, trust_pickle=True)
    views = [np.full((5, 17, 2), -1e40)]
    np.savez_compressed(path, positions_2d={"S9": {"Eating": views}}, metadata=H36M_METADATA)
    with pytest.raises(LiftingFormatError, match="'Eating', camera 0: holds NaN or inf"):
        load_videopose3d_2d(path, trust_pickle=True)
    views = [np.ones((5, 17, 2), dtype=bool)]
    np.savez_compressed(path, positions_2d={"S9": {"Eating": views}}, metadata=H36M_METADATA)
    with pytest.raises(LiftingFormatError, match="camera 0: expected numbers, got dtype bool"):
        load_videopose3d_2d(path, trust_pickle=True)


def test_malformed_official_arrays_raise_naming_the_sequence(tmp_path):
    path = tmp_path / "data_3d_h36m.npz"
    bad = np.zeros((5, 32, 3), np.float32)
    bad[2, 4, 1] = np.nan
    np.savez_compressed(path, positions_3d={"S9": {"Eating": bad}})
    with pytest.raises(LiftingFormatError, match="'S9', action 'Eating': holds NaN"):
        load_videopose3d_3d(path, trust_pickle=True)

    np.savez_compressed(path, positions_3d={"S9": {"Eating": np.zeros((5, 32, 2))}})
    with pytest.raises(LiftingFormatError, match=r"expected shape \(T>0, J, 3\)"):
        load_videopose3d_3d(path, trust_pickle=True)

    np.savez_compressed(path, positions_3d={"S9": {"Eating": np.zeros((5, 20, 3))}})
    with pytest.raises(LiftingFormatError, match="20-joint poses"):
        load_videopose3d_3d(path, trust_pickle=True)

    np.savez_compressed(path, poses=np.zeros(3))
    with pytest.raises(LiftingFormatError, match=r"missing keys \['positions_3d'\]"):
        load_videopose3d_3d(path, trust_pickle=True)

    views = [np.zeros((5, 17, 2), np.float32), None]
    np.savez_compressed(path, positions_2d={"S9": {"Eating": views}}, metadata=H36M_METADATA)
    with pytest.raises(LiftingFormatError, match="'Eating', camera 1: no detections"):
        load_videopose3d_2d(path, trust_pickle=True)


# -- conversion and our format -----------------------------------------------------------


def test_convert_trims_detections_and_round_trips(tmp_path):
    path_3d, path_2d, poses, detections = _official_h36m(tmp_path)
    out = tmp_path / "h36m_cpn.lifting"  # any name: no ".npz" is appended
    cameras = _cameras()
    written = convert_videopose3d(path_3d, path_2d, out, trust_pickle=True, cameras=cameras)
    loaded = load_npz(out)

    assert loaded.name == "h36m" and loaded.fps == 50.0 and loaded.skeleton == H36M_17
    assert list(loaded.subjects) == ["S1", "S11"]
    assert list(loaded.subjects["S11"].recordings) == ["Sitting"]
    kept = list(H36M_KEPT_JOINTS)
    for dataset in (written, loaded):
        rec = dataset.subjects["S1"].recordings["Walking"]
        np.testing.assert_array_equal(rec.positions_3d, poses["S1"]["Walking"][:, kept])
        assert [v.shape for v in rec.positions_2d] == [(10, 17, 2)] * 4
        # Camera 1 had 13 detections for 10 mocap frames: the first 10 are kept.
        np.testing.assert_array_equal(rec.positions_2d[1], detections["S1"]["Walking"][1][:10])
    for got, want in zip(loaded.subjects["S11"].cameras, cameras["S11"], strict=True):
        assert got.id == want.id and (got.res_w, got.res_h) == (want.res_w, want.res_h)
        np.testing.assert_array_equal(got.orientation, want.orientation)
        np.testing.assert_array_equal(got.radial, want.radial)


def test_round_trip_custom_skeleton_slashed_names_no_cameras(tmp_path):
    skeleton = Skeleton("tripod", ("base", "left_leg", "right_leg"), (-1, 0, 0), (1,), (2,))
    rng = np.random.default_rng(3)
    recordings = {
        "Walk 1 chunk0": Recording(rng.normal(size=(4, 3, 3)), (rng.normal(size=(4, 3, 2)),)),
        "Box 1 chunk2": Recording(rng.normal(size=(2, 3, 3)), (rng.normal(size=(2, 3, 2)),)),
    }
    dataset = LiftingDataset("mine", 25.0, skeleton, {"Train/S1": SubjectData(recordings)})
    path = tmp_path / "mine.npz"
    save_npz(dataset, path)
    loaded = load_npz(path)
    assert loaded.skeleton == skeleton and loaded.fps == 25.0 and loaded.name == "mine"
    got = loaded.subjects["Train/S1"]
    assert got.cameras is None and list(got.recordings) == list(recordings)
    for action, rec in recordings.items():
        assert got.recordings[action].positions_3d.dtype == np.float32
        np.testing.assert_array_equal(got.recordings[action].positions_3d, rec.positions_3d)
        np.testing.assert_array_equal(got.recordings[action].positions_2d[0], rec.positions_2d[0])
    with pytest.raises(ValueError, match="no camera parameters"):
        to_camera_frames(loaded)


def test_convert_humaneva_skips_unlabeled_detections(tmp_path):
    poses = {"Validate/S2": {"Jog 1 chunk0": np.ones((6, 15, 3), np.float32)}}
    views = [np.zeros((6, 15, 2), np.float32)] * 3
    detections = {"Validate/S2": {"Jog 1 chunk0": views}, "Unlabeled/S4": {"Jog 1": views}}
    metadata = {
        "layout_name": "humaneva15",
        "num_joints": 15,
        "keypoints_symmetry": [[2, 3, 4, 8, 9, 10], [5, 6, 7, 11, 12, 13]],
    }
    path_3d, path_2d = tmp_path / "data_3d_humaneva15.npz", tmp_path / "data_2d_gt.npz"
    np.savez_compressed(path_3d, positions_3d=poses)
    np.savez_compressed(path_2d, positions_2d=detections, metadata=metadata)
    dataset = convert_videopose3d(path_3d, path_2d, tmp_path / "he.npz", trust_pickle=True)
    assert dataset.skeleton == HUMANEVA_15 and dataset.fps == 60.0
    assert list(dataset.subjects) == ["Validate/S2"]
    assert dataset.subjects["Validate/S2"].num_cameras == 3


def test_detections_shorter_than_mocap_raise(tmp_path):
    path_3d, path_2d, _, _ = _official_h36m(tmp_path, extra_2d_frames=-2)
    with pytest.raises(LiftingFormatError, match="'Walking', camera 1: 8 frames of 2D"):
        convert_videopose3d(path_3d, path_2d, tmp_path / "o.npz", trust_pickle=True)


def test_convert_keeps_coco_detections_of_h36m_poses(tmp_path):
    path_3d, path_2d, poses, detections = _official_h36m(tmp_path, metadata=COCO_METADATA)
    out = tmp_path / "h36m_coco.npz"
    written = convert_videopose3d(path_3d, path_2d, out, trust_pickle=True, cameras=_cameras())
    for dataset in (written, load_npz(out)):
        assert (dataset.skeleton, dataset.skeleton_2d) == (H36M_17, COCO_17)
        rec = dataset.subjects["S1"].recordings["Walking 1"]
        np.testing.assert_array_equal(rec.positions_2d[1], detections["S1"]["Walking 1"][1][:7])
    with np.load(out) as npz:
        meta = json.loads(npz["meta_json"].item())
    assert meta["version"] == FORMAT_VERSION == 2
    assert (meta["skeleton"]["name"], meta["skeleton_2d"]["name"]) == ("h36m", "coco")


def test_round_trip_2d_skeleton_with_other_joints(tmp_path):
    rng = np.random.default_rng(5)
    rec = Recording(rng.normal(size=(4, 17, 3)), (rng.normal(size=(4, 16, 2)),) * 2)
    dataset = LiftingDataset("h36m", 50.0, H36M_17, {"S1": SubjectData({"Eating": rec})}, MPII_16)
    save_npz(dataset, tmp_path / "mpii.npz")
    loaded = load_npz(tmp_path / "mpii.npz")
    assert (loaded.skeleton, loaded.skeleton_2d) == (H36M_17, MPII_16)
    got = loaded.subjects["S1"].recordings["Eating"]
    np.testing.assert_array_equal(got.positions_3d, rec.positions_3d)
    np.testing.assert_array_equal(got.positions_2d[1], rec.positions_2d[1])
    # Without a 2D skeleton the views need the 3D skeleton's 17 joints.
    with pytest.raises(ValueError, match=r"camera 0, positions_2d: .*\(T>0, 17, 2\), got \(4, 16"):
        LiftingDataset("h36m", 50.0, H36M_17, {"S1": SubjectData({"Eating": rec})})


def test_version_1_files_are_read_with_the_3d_skeleton_for_2d(ours):
    path, arrays = ours

    def to_version_1(meta):
        meta["version"] = 1
        del meta["skeleton_2d"]

    with open(path, "wb") as f:
        np.savez(f, **_edit_meta(arrays, to_version_1))
    loaded = load_npz(path)
    assert loaded.skeleton == loaded.skeleton_2d == H36M_17
    np.testing.assert_array_equal(
        loaded.subjects["S1"].recordings["Walking"].positions_2d[0],
        arrays["S1/Walking/0/positions_2d"],
    )


def test_layouts_that_disagree_with_the_arrays_and_missing_cameras_raise(tmp_path):
    path_3d, path_2d, _, _ = _official_h36m(tmp_path)
    poses = load_videopose3d_3d(path_3d, trust_pickle=True)
    detections = load_videopose3d_2d(path_2d, trust_pickle=True)
    mpii = VideoPose3DDetections(MPII_16, detections.positions)
    with pytest.raises(ValueError, match=r"camera 0, positions_2d: expected shape \(T>0, 16, 2\)"):
        from_videopose3d(poses, mpii)
    with pytest.raises(ValueError, match=r"no cameras given for subjects \['S11'\]"):
        from_videopose3d(poses, detections, cameras={"S1": make_cameras()})
    del detections.positions["S1"]["Walking 1"]
    with pytest.raises(ValueError, match="no 2D detections for subject 'S1', action 'Walking 1'"):
        from_videopose3d(poses, detections)


def test_dataset_checks_name_the_culprit():
    rng = np.random.default_rng(4)
    good = Recording(rng.normal(size=(5, 17, 3)), (rng.normal(size=(5, 17, 2)),) * 2)
    short_view = Recording(good.positions_3d, (good.positions_2d[0], np.zeros((4, 17, 2))))
    with pytest.raises(ValueError, match="'S1', action 'Eating', camera 1: 4 frames of 2D"):
        LiftingDataset("h36m", 50.0, H36M_17, {"S1": SubjectData({"Eating": short_view})})
    one_view = Recording(good.positions_3d, good.positions_2d[:1])
    subject = SubjectData({"Eating": good, "Posing": one_view})
    with pytest.raises(ValueError, match="action 'Posing': 1 cameras, but .* have 2"):
        LiftingDataset("h36m", 50.0, H36M_17, {"S1": subject})
    with pytest.raises(ValueError, match="4 cameras for 2 2D views"):
        LiftingDataset("h36m", 50.0, H36M_17, {"S1": SubjectData({"Eating": good}, make_cameras())})


def test_ambiguous_names_refused_on_save(tmp_path):
    rec = Recording(np.zeros((2, 17, 3)), (np.zeros((2, 17, 2)),))
    subjects = {"A/B": SubjectData({"C": rec}), "A": SubjectData({"B/C": rec})}
    dataset = LiftingDataset("h36m", 50.0, H36M_17, subjects)
    with pytest.raises(ValueError, match="ambiguous"):
        save_npz(dataset, tmp_path / "x.npz")


# -- corrupt and malformed files of our format -------------------------------------------


@pytest.fixture
def ours(tmp_path):
    path_3d, path_2d, _, _ = _official_h36m(tmp_path)
    out = tmp_path / "ours.npz"
    convert_videopose3d(path_3d, path_2d, out, trust_pickle=True, cameras=_cameras())
    with np.load(out) as npz:
        arrays = dict(npz)
    return out, arrays


def _edit_meta(arrays, edit):
    meta = json.loads(arrays["meta_json"].item())
    edit(meta)
    return {**arrays, "meta_json": np.array(json.dumps(meta))}


def _nan_3d(arrays):
    x = arrays["S1/Walking/positions_3d"].copy()
    x[3, 2, 0] = np.inf
    return {**arrays, "S1/Walking/positions_3d": x}


def _set(meta, keys, value):
    for key in keys[:-1]:
        meta = meta[key]
    meta[keys[-1]] = value


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: {k: v for k, v in a.items() if k != "meta_json"}, r"missing keys \['meta_json'"),
        (lambda a: {**a, "meta_json": np.array("{not json")}, "not valid JSON"),
        (
            lambda a: {k: v for k, v in a.items() if k != "S11/Sitting/2/positions_2d"},
            r"missing keys \['S11/Sitting/2/positions_2d'\]",
        ),
        (
            lambda a: {**a, "S1/Walking/positions_3d": np.zeros((10, 16, 3), np.float32)},
            r"'Walking', positions_3d: expected shape \(T>0, 17, 3\), got \(10, 16, 3\)",
        ),
        (
            lambda a: {**a, "S1/Walking/0/positions_2d": np.zeros((10, 16, 2), np.float32)},
            "'Walking', camera 0, positions_2d: expected shape",
        ),
        (_nan_3d, r"'Walking', positions_3d: 1 NaN/inf values \(first in frame 3\)"),
        (
            lambda a: {**a, "S1/Walking/positions_3d": np.full((10, 17, 3), "x")},
            "'Walking', positions_3d: expected numbers",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["skeleton", "parents", 3], 3)),
            "bad skeleton metadata .*joint 3 has invalid parent 3",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["skeleton", "left"], [4, 5])),
            "bad skeleton metadata",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["subjects", "S1", "actions", "Walking"], 9)),
            "metadata says 9 frames",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["version"], 7)),
            r"version 7; this reader knows versions \[1, 2\]; a newer chiral_jax reads newer",
        ),
        (lambda a: _edit_meta(a, lambda m: _set(m, ["version"], True)), "version True;"),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["format"], "other")),
            "format 'other', expected 'chiral_jax.lifting'",
        ),
        (
            lambda a: _edit_meta(a, lambda m: m.pop("skeleton_2d")),
            r"missing keys \['skeleton_2d'\]",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["skeleton_2d", "right"], [1, 2])),
            "bad skeleton_2d metadata",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["skeleton_2d"], COCO_17.joint_names)),
            "skeleton_2d metadata must be an object",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["subjects", "S1", "camera_ids", 0], "x")),
            "camera 0: id '54138969', metadata says 'x'",
        ),
        (
            lambda a: {k: v for k, v in a.items() if k != "S1/cameras/2/radial"},
            "camera 2: .*lacks keys \\['radial'\\]",
        ),
        (lambda a: {**a, "S1/Extra/positions_3d": np.zeros(3)}, "arrays not described"),
        # Values past float32's range (finite in the stored float64) and non-numbers.
        (
            lambda a: {**a, "S1/Walking/positions_3d": np.full((10, 17, 3), 1e300)},
            "'Walking', positions_3d: 510 NaN/inf values",
        ),
        (
            lambda a: {**a, "S1/cameras/0/focal_length": np.array([1e300, 1e300])},
            "camera 0: focal_length holds NaN, infinite or beyond-float32 values",
        ),
        (
            lambda a: {**a, "S1/cameras/3/translation": np.array([1e39, 0.0, 0.0])},
            "camera 3: translation holds NaN, infinite or beyond-float32 values",
        ),
        (
            lambda a: {**a, "S1/cameras/1/center": np.array(["500", "500"])},
            "camera 1: center must hold numbers, got dtype <U3",
        ),
        (
            lambda a: {**a, "S1/cameras/1/radial": np.array([True, False, True])},
            "camera 1: radial must hold numbers, got dtype bool",
        ),
        (
            lambda a: {**a, "S1/cameras/0/res_w": np.array(1000.7)},
            "camera 0: res_w must be a whole number of pixels, got 1000.7",
        ),
        (
            lambda a: {**a, "S1/cameras/0/res_h": np.array("1002")},
            "camera 0: res_h must hold numbers",
        ),
        (
            lambda a: {**a, "S1/cameras/0/id": np.array(["54138969", "x"])},
            "camera 0: id must be a string",
        ),
        (lambda a: _edit_meta(a, lambda m: _set(m, ["fps"], "50")), "'fps' must be a number"),
        (lambda a: _edit_meta(a, lambda m: _set(m, ["fps"], True)), "'fps' must be a number"),
        (lambda a: _edit_meta(a, lambda m: _set(m, ["dataset"], 7)), "'dataset' must be a string"),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["subjects", "S1", "num_cameras"], True)),
            "subject 'S1': num_cameras must be a positive integer",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["skeleton", "parents", 1], 0.5)),
            "skeleton parents must be a list of joint indices",
        ),
        (
            lambda a: _edit_meta(a, lambda m: _set(m, ["skeleton", "joint_names"], "x" * 17)),
            "skeleton joint_names must be a list of strings",
        ),
        (lambda a: {**a, "S1/Walking/positions_3d": np.array({"a": 1})}, "unreadable array"),
    ],
)
def test_malformed_files_raise(ours, mutate, message):
    path, arrays = ours
    with open(path, "wb") as f:
        np.savez(f, **mutate(arrays))
    with pytest.raises(LiftingFormatError, match=message) as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_one_recording_read_by_two_subjects_raises(tmp_path):
    # Subject "A" with action "B/C" and subject "A/B" with action "C" share array names.
    rec = Recording(np.ones((2, 17, 3)), (np.ones((2, 17, 2)),))
    dataset = LiftingDataset("h36m", 50.0, H36M_17, {"A": SubjectData({"B/C": rec})})
    path = tmp_path / "twice.npz"
    save_npz(dataset, path)
    with np.load(path) as npz:
        arrays = dict(npz)
    meta = json.loads(arrays["meta_json"].item())
    meta["subjects"]["A/B"] = {"num_cameras": 1, "camera_ids": None, "actions": {"C": 2}}
    with open(path, "wb") as f:
        np.savez(f, **{**arrays, "meta_json": np.array(json.dumps(meta))})
    with pytest.raises(LiftingFormatError, match="twice.npz: subject 'A/B' reads arrays"):
        load_npz(path)


def _cameras_json(tmp_path, **changes):
    path = tmp_path / "cameras.json"
    save_cameras_json({"S1": make_cameras(seed=1)}, path)
    data = json.loads(path.read_text())
    data["S1"][1].update(changes)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"focal_length": [1e300, 1e300]}, "focal_length holds NaN, infinite or beyond-float32"),
        ({"translation": [1.0, -1e39, 2.0]}, "translation holds NaN, infinite or beyond-float32"),
        ({"radial": [10**400, 0, 0]}, "radial: value out of range"),
        ({"center": ["500", "500"]}, "center must hold numbers, got \\['500', '500'\\]"),
        ({"tangential": [True, 0.0]}, "tangential must hold numbers"),
        ({"res_w": 1000.5}, "res_w must be a whole number of pixels, got 1000.5"),
        ({"res_h": "1000"}, "res_h must hold numbers, got '1000'"),
        ({"res_h": True}, "res_h must hold numbers, got True"),
        ({"id": 55011271}, "id must be a string, got 55011271"),
    ],
)
def test_cameras_json_refuses_bad_values(tmp_path, changes, message):
    path = _cameras_json(tmp_path, **changes)
    with pytest.raises(ValueError, match=f"cameras.json: subject 'S1', camera 1: {message}"):
        load_cameras_json(path)


def test_cameras_json_round_trip_accepts_whole_float_sizes(tmp_path):
    path = _cameras_json(tmp_path, res_w=1000.0)
    camera = load_cameras_json(path)["S1"][1]
    assert camera.res_w == 1000 and isinstance(camera.res_w, int)
    np.testing.assert_array_equal(camera.focal_length, make_cameras(seed=1)[1].focal_length)


def test_load_dataset_names_the_files_that_disagree(tmp_path):
    path_3d, path_2d, _, _ = _official_h36m(tmp_path)
    cameras = tmp_path / "cameras.json"
    save_cameras_json({"S1": make_cameras(seed=1)[:3], "S11": make_cameras(seed=11)}, cameras)
    with pytest.raises(LiftingFormatError, match="subject 'S1': 3 cameras for 4 2D views") as info:
        load_dataset(path_3d, path_2d=path_2d, cameras=cameras, allow_pickle=True)
    assert str(info.value).startswith(f"{path_3d} with {path_2d} and {cameras}: ")


def test_missing_truncated_and_corrupt_archives_raise(ours, tmp_path):
    path, _ = ours
    with pytest.raises(FileNotFoundError, match="nope.npz: no such file"):
        load_npz(tmp_path / "nope.npz")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(LiftingFormatError, match="truncated.npz: not an .npz archive"):
        load_npz(truncated)
    # Flip bytes inside the first compressed member: its CRC or deflate stream breaks.
    corrupt = bytearray(data)
    corrupt[100:140] = bytes(b ^ 0xFF for b in corrupt[100:140])
    broken = tmp_path / "broken.npz"
    broken.write_bytes(bytes(corrupt))
    with pytest.raises(LiftingFormatError, match="broken.npz: corrupt .npz archive"):
        load_npz(broken)


# -- preprocessing -----------------------------------------------------------------------


def test_to_camera_frames_matches_rotation_matrices(tmp_path):
    path_3d, path_2d, _, _ = _official_h36m(tmp_path)
    cameras = _cameras()
    dataset = convert_videopose3d(
        path_3d, path_2d, tmp_path / "o.npz", trust_pickle=True, cameras=cameras
    )
    views = to_camera_frames(dataset)
    rec = dataset.subjects["S11"].recordings["Sitting"]
    for k, camera in enumerate(cameras["S11"]):
        view = views["S11"]["Sitting"][k]
        assert view.camera is camera
        # Camera frame = R^T (X - t), R the camera-to-world rotation of the quaternion.
        rotation = Rotation.from_quat(camera.orientation, scalar_first=True).as_matrix()
        expected = (rec.positions_3d - camera.translation) @ rotation
        expected = expected - expected[:, :1]
        np.testing.assert_allclose(view.positions_3d, expected, atol=1e-5)
        np.testing.assert_array_equal(view.positions_3d[:, 0], 0.0)
        np.testing.assert_allclose(
            view.positions_2d,
            normalize_screen_coordinates(rec.positions_2d[k], camera.res_w, camera.res_h),
            rtol=1e-6,
        )
        assert view.positions_3d.dtype == view.positions_2d.dtype == np.float32
        assert np.abs(view.positions_2d[..., 0]).max() <= 1.0
