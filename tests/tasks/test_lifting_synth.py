"""The synthetic lifting data: both file formats, read back by the real loaders."""

import json

import numpy as np
import pytest
from _files import modes, snapshot, umask

from chiral_jax.skeletons import COCO_17, H36M_17, HUMANEVA_15
from chiral_tasks.lifting import synth
from chiral_tasks.lifting.cameras import load_cameras_json
from chiral_tasks.lifting.data import camera_sequences, default_split, load_dataset
from chiral_tasks.lifting.dataset import LiftingDataset
from chiral_tasks.lifting.keypoints import read_coco_json
from chiral_tasks.lifting.npz import load_npz
from chiral_tasks.lifting.synth import (
    EXAMPLE_EMPTY_FRAMES,
    EXAMPLE_SOURCE,
    EXTRA_2D_FRAMES,
    NoiseConfig,
    SynthConfig,
    generate_dataset,
    write_dataset,
)
from chiral_tasks.lifting.videopose3d import H36M_KEPT_JOINTS, UntrustedPickleError


@pytest.fixture(scope="module")
def h36m(tmp_path_factory):
    folder = tmp_path_factory.mktemp("h36m")
    return write_dataset(SynthConfig(frames=30, trials=1), folder)


def assert_same_dataset(a: LiftingDataset, b: LiftingDataset):
    assert (a.name, a.fps, a.skeleton, a.skeleton_2d) == (b.name, b.fps, b.skeleton, b.skeleton_2d)
    assert list(a.subjects) == list(b.subjects)
    for subject, data in a.subjects.items():
        other = b.subjects[subject]
        assert list(data.recordings) == list(other.recordings)
        for action, rec in data.recordings.items():
            np.testing.assert_array_equal(rec.positions_3d, other.recordings[action].positions_3d)
            for x, y in zip(rec.positions_2d, other.recordings[action].positions_2d, strict=True):
                np.testing.assert_array_equal(x, y)
        for cam, other_cam in zip(data.cameras, other.cameras, strict=True):
            assert cam.id == other_cam.id
            np.testing.assert_allclose(cam.intrinsics_pixels(), other_cam.intrinsics_pixels())
            np.testing.assert_allclose(cam.orientation, other_cam.orientation)
            np.testing.assert_allclose(cam.translation, other_cam.translation)


def test_official_files_and_ours_hold_the_same_17_joint_data(h36m):
    ours = load_npz(h36m["ours"])
    official = load_dataset(
        h36m["data_3d"], path_2d=h36m["data_2d"], cameras=h36m["cameras"], allow_pickle=True
    )
    assert_same_dataset(ours, official)
    assert list(ours.subjects) == ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]
    assert ours.skeleton == H36M_17 and ours.fps == 50.0
    assert {c.id for c in ours.subjects["S9"].cameras} == {
        "54138969", "55011271", "58860488", "60457274"
    }  # fmt: skip

    # The raw files: 32 mocap joints with ours at the kept indices, longer detections.
    with np.load(h36m["data_3d"], allow_pickle=True) as npz:
        raw_3d = npz["positions_3d"].item()
    with np.load(h36m["data_2d"], allow_pickle=True) as npz:
        raw_2d, metadata = npz["positions_2d"].item(), npz["metadata"].item()
    walking = raw_3d["S1"]["Walking"]
    assert walking.shape == (30, 32, 3) and np.isfinite(walking).all()
    kept = list(H36M_KEPT_JOINTS)
    np.testing.assert_array_equal(
        walking[:, kept], ours.subjects["S1"].recordings["Walking"].positions_3d
    )
    # Filler joints lie near the body (toes, hands, duplicated sites), not at the origin.
    filler = sorted(set(range(32)) - set(kept))
    gaps = np.linalg.norm(walking[:, filler, None] - walking[:, None, kept], axis=-1)
    assert gaps.min(-1).max() < 0.2
    assert [len(v) for v in raw_2d["S1"]["Walking"]] == [30 + EXTRA_2D_FRAMES] * 4
    assert metadata == {
        "layout_name": "h36m",
        "num_joints": 17,
        "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]],
    }


def test_pickled_files_need_the_trust_flag(h36m):
    with pytest.raises(UntrustedPickleError, match="trust_pickle"):
        load_dataset(h36m["data_3d"], path_2d=h36m["data_2d"], cameras=h36m["cameras"])


def test_generation_is_deterministic_and_varied():
    config = SynthConfig(frames=12, trials=1)
    a, _ = generate_dataset(config)
    b, _ = generate_dataset(config)
    np.testing.assert_array_equal(
        a.subjects["S7"].recordings["Boxing"].positions_2d[2],
        b.subjects["S7"].recordings["Boxing"].positions_2d[2],
    )
    # Subjects differ in build: their thigh lengths (hip -> knee) are not all equal.
    thighs = [
        np.linalg.norm(np.diff(d.recordings["Walking"].positions_3d[0, [1, 2]], axis=0))
        for d in a.subjects.values()
    ]
    assert np.ptp(thighs) > 0.01
    # Another seed gives other motion.
    c, _ = generate_dataset(SynthConfig(frames=12, trials=1, seed=1))
    assert not np.allclose(
        a.subjects["S1"].recordings["Waving"].positions_3d,
        c.subjects["S1"].recordings["Waving"].positions_3d,
    )


def test_default_generation_is_unchanged():
    # The generator's output before the 2D keypoints became a choice: the committed
    # results were measured on this data.
    dataset, _ = generate_dataset(SynthConfig(frames=12, trials=1))
    rec = dataset.subjects["S9"].recordings["Boxing"]
    assert dataset.skeleton_2d == dataset.skeleton == H36M_17
    np.testing.assert_allclose(
        rec.positions_3d[5, [0, 13, 16]],
        [[-0.311445, -0.164083, 0.964671], [0.119324, -0.147851, 1.602096],
         [-0.132019, -0.539622, 1.587281]],
        atol=1e-5,
    )  # fmt: skip
    np.testing.assert_allclose(
        rec.positions_2d[2][5, [0, 13, 16]],
        [[490.1269, 531.8068], [537.6761, 380.0107], [582.7687, 387.0161]],
        atol=1e-3,
    )


SILENT = NoiseConfig(sigma=0.0, drift_sigma=0.0, outlier_rate=0.0)


def _joints(x: np.ndarray, skeleton, *names: str) -> np.ndarray:
    """``x[..., J, D]`` at the joints of ``skeleton`` named ``names``."""
    return x[..., [skeleton.joint_names.index(n) for n in names], :]


def test_coco_keypoints_are_views_of_the_same_body():
    h36m, _ = generate_dataset(SynthConfig(frames=40, trials=1, noise=SILENT))
    coco, detections = generate_dataset(
        SynthConfig(frames=40, trials=1, noise=SILENT, keypoints="coco")
    )
    assert (coco.skeleton, coco.skeleton_2d) == (H36M_17, COCO_17)
    rec, ref = coco.subjects["S9"].recordings["Boxing"], h36m.subjects["S9"].recordings["Boxing"]
    np.testing.assert_array_equal(rec.positions_3d, ref.positions_3d)
    assert detections["S9"]["Boxing"][0].shape == (40 + EXTRA_2D_FRAMES, 17, 2)
    coco_2d, h36m_2d = np.stack(rec.positions_2d), np.stack(ref.positions_2d)  # (4, 40, 17, 2)

    # Hips, knees, ankles, shoulders, elbows, wrists: the Human3.6M joints, projected.
    shared = [n for n in COCO_17.joint_names if n in H36M_17.joint_names]
    assert len(shared) == 12
    np.testing.assert_allclose(
        _joints(coco_2d, COCO_17, *shared), _joints(h36m_2d, H36M_17, *shared), atol=1e-3
    )
    # The face (nose, eyes, ears) lies below the head top and above the shoulders;
    # image y points down.
    face_y = _joints(coco_2d, COCO_17, *COCO_17.joint_names[:5])[..., 1]
    shoulders_y = _joints(coco_2d, COCO_17, "left_shoulder", "right_shoulder")[..., 1]
    assert (face_y.min(-1) > _joints(h36m_2d, H36M_17, "head")[..., 0, 1]).all()
    assert (face_y.max(-1) < shoulders_y.min(-1)).all()

    # Left and right: eyes and ears lie the way the shoulders do, wherever those are apart.
    def x_gap(left: str, right: str) -> np.ndarray:
        x = _joints(coco_2d, COCO_17, left, right)[..., 0]
        return x[..., 0] - x[..., 1]

    shoulders = x_gap("left_shoulder", "right_shoulder")
    apart = np.abs(shoulders) > 20  # pixels: not seen side-on
    assert apart.mean() > 0.5
    for part in ("eye", "ear"):
        gap = x_gap(f"left_{part}", f"right_{part}")
        np.testing.assert_array_equal(np.sign(gap[apart]), np.sign(shoulders[apart]))


def test_coco_files_carry_videopose3d_coco_metadata(tmp_path):
    paths = write_dataset(SynthConfig(frames=20, trials=1, keypoints="coco"), tmp_path)
    ours = load_npz(paths["ours"])
    official = load_dataset(
        paths["data_3d"], path_2d=paths["data_2d"], cameras=paths["cameras"], allow_pickle=True
    )
    assert_same_dataset(ours, official)
    assert (ours.skeleton, ours.skeleton_2d) == (H36M_17, COCO_17)
    with np.load(paths["data_2d"], allow_pickle=True) as npz:
        metadata = npz["metadata"].item()
    assert metadata == {  # as in VideoPose3D's data_2d_h36m_detectron_pt_coco.npz
        "layout_name": "coco",
        "num_joints": 17,
        "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]],
    }


def test_coco_data_comes_with_an_example_detector_clip(tmp_path):
    """The example clip is a test subject's detections as a COCO results file: the
    subject kept over the bystander, the empty frames known to be missing."""
    config = SynthConfig(frames=100, trials=1, keypoints="coco")
    paths = write_dataset(config, tmp_path)
    clip = read_coco_json(paths["example"])
    _, detections = generate_dataset(config)
    subject, sequence, camera = EXAMPLE_SOURCE
    expected = detections[subject][sequence][camera]
    assert clip.missing == EXAMPLE_EMPTY_FRAMES
    kept = np.setdiff1d(np.arange(len(expected)), EXAMPLE_EMPTY_FRAMES)
    np.testing.assert_allclose(clip.xy[kept], expected[kept], atol=1e-3)
    assert "example" not in write_dataset(SynthConfig(frames=10, trials=1), tmp_path / "h36m")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"keypoints": "openpose18"}, "keypoints must be 'h36m' or 'coco', got 'openpose18'"),
        (
            {"dataset": "humaneva15", "keypoints": "coco"},
            "COCO keypoints are generated for dataset 'h36m' only, not 'humaneva15'",
        ),
    ],
)
def test_bad_keypoints_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**changes)


def test_detections_are_noisy_projections():
    clean, _ = generate_dataset(SynthConfig(frames=40, trials=1, noise=SILENT))
    noisy, _ = generate_dataset(SynthConfig(frames=40, trials=1))
    error = np.linalg.norm(
        clean.subjects["S1"].recordings["Walking"].positions_2d[0]
        - noisy.subjects["S1"].recordings["Walking"].positions_2d[0],
        axis=-1,
    )
    assert 2.0 < np.median(error) < 15.0  # a few pixels, like a good detector
    # The 3D poses are the same; only the 2D detections carry noise.
    np.testing.assert_array_equal(
        clean.subjects["S1"].recordings["Walking"].positions_3d,
        noisy.subjects["S1"].recordings["Walking"].positions_3d,
    )


def test_humaneva_layout_and_split(tmp_path):
    paths = write_dataset(SynthConfig(dataset="humaneva15", frames=20, trials=2), tmp_path)
    ours = load_npz(paths["ours"])
    official = load_dataset(
        paths["data_3d"], path_2d=paths["data_2d"], cameras=paths["cameras"], allow_pickle=True
    )
    assert_same_dataset(ours, official)
    assert ours.skeleton == HUMANEVA_15 and ours.fps == 60.0
    assert default_split(ours) == (
        ["Train/S1", "Train/S2", "Train/S3"],
        ["Validate/S1", "Validate/S2", "Validate/S3"],
    )
    assert list(ours.subjects["Train/S2"].recordings) == [
        "Walk chunk0", "Walk chunk1", "Jog chunk0", "Jog chunk1", "Box chunk0", "Box chunk1"
    ]  # fmt: skip
    assert [(c.id, c.res_w, c.res_h) for c in ours.subjects["Validate/S1"].cameras] == [
        ("C1", 640, 480), ("C2", 640, 480), ("C3", 640, 480)
    ]  # fmt: skip
    views = camera_sequences(ours, ["Validate/S1"])
    for x in views.inputs:  # the person stays in the picture
        assert np.abs(x[..., 0]).max() < 1.0


def test_camera_sequences_are_root_relative_and_subset(h36m):
    dataset = load_npz(h36m["ours"])
    full = camera_sequences(dataset, ["S1"])
    assert len(full.inputs) == 8 * 4 and full.keys[0] == ("S1", "Walking", 0)
    np.testing.assert_array_equal(full.targets[0][:, 0], 0.0)
    part = camera_sequences(dataset, ["S1"], fraction=0.1, seed=3)
    assert [len(x) for x in part.inputs] == [3] * 32
    with pytest.raises(ValueError, match=r"\['S2'\] are not in the dataset"):
        camera_sequences(dataset, ["S2"])


def test_cameras_json_errors_name_the_camera(h36m, tmp_path):
    data = json.loads(h36m["cameras"].read_text())
    del data["S5"][2]["focal_length"]
    bad = tmp_path / "cameras.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"subject 'S5', camera 2: .*focal_length"):
        load_cameras_json(bad)
    with pytest.raises(FileNotFoundError):
        load_cameras_json(tmp_path / "missing.json")


TINY_HUMANEVA = SynthConfig(dataset="humaneva15", frames=5, trials=1)


def test_write_dataset_refuses_existing_files_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "data_3d_h36m.npz").write_bytes(b"the real Human3.6M poses")
    (tmp_path / "notes.txt").write_text("unrelated")
    before = snapshot(tmp_path)

    def no_generation(config):
        raise AssertionError("generated before checking the folder")

    monkeypatch.setattr(synth, "generate_dataset", no_generation)
    with pytest.raises(FileExistsError) as err:
        write_dataset(SynthConfig(frames=5, trials=1), tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}: already holds data_3d_h36m.npz")
    assert "--overwrite" in message
    assert snapshot(tmp_path) == before


def test_write_dataset_leaves_other_files_alone(tmp_path):
    (tmp_path / "data_3d_h36m.npz").write_bytes(b"another dataset's file")
    (tmp_path / "notes.txt").write_text("unrelated")
    before = snapshot(tmp_path)
    with umask(0o022):
        paths = write_dataset(TINY_HUMANEVA, tmp_path)
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before
    assert set(after) == set(before) | {p.name for p in paths.values()}  # no temporaries
    assert modes(paths.values()) == {0o644}


def test_write_dataset_overwrite_replaces_its_files(tmp_path):
    (tmp_path / "cameras_humaneva15.json").write_text("stale")
    (tmp_path / "humaneva15.npz").write_bytes(b"stale")
    with umask(0o022):
        paths = write_dataset(TINY_HUMANEVA, tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    assert set(load_cameras_json(paths["cameras"])) == set(load_npz(paths["ours"]).subjects)
    assert modes(paths.values()) == {0o644}
