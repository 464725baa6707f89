"""Penn Action label files and the TP-RNN sampling protocol."""

import numpy as np
import pytest
import scipy.io

from chiral_tasks.forecasting import penn


def _video_arrays(rng, num_frames=20):
    x = rng.uniform(50, 400, size=(num_frames, 13))
    y = rng.uniform(30, 300, size=(num_frames, 13))
    visibility = rng.random((num_frames, 13)) > 0.2
    bbox = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
    return dict(x=x, y=y, visibility=visibility, bbox=bbox)


def _write(path, rng, num_frames=20, **overrides):
    fields = dict(
        _video_arrays(rng, num_frames),
        action="tennis_serve",
        pose="front",
        train=True,
        dimensions=(360, 480),
    )
    fields.update(overrides)
    penn.write_video_mat(path, **fields)
    return fields


def _video(joints, visibility=None, name="0001"):
    joints = np.asarray(joints, dtype=np.float32)
    if visibility is None:
        visibility = np.ones(joints.shape[:2], dtype=bool)
    return penn.PennVideo(
        name=name,
        joints=joints,
        visibility=visibility,
        action="squat",
        pose="side",
        train=True,
        bbox=np.zeros((len(joints), 4), dtype=np.float32),
        image_size=(100, 100),
    )


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    fields = _write(tmp_path / "0007.mat", rng, num_frames=20)
    video = penn.load_video_mat(tmp_path / "0007.mat")
    assert video.name == "0007"
    assert video.joints.shape == (20, 13, 2) and video.joints.dtype == np.float32
    np.testing.assert_allclose(video.joints[..., 0], fields["x"], rtol=1e-6)
    np.testing.assert_allclose(video.joints[..., 1], fields["y"], rtol=1e-6)
    np.testing.assert_array_equal(video.visibility, fields["visibility"])
    np.testing.assert_allclose(video.bbox, fields["bbox"], rtol=1e-6)
    assert (video.action, video.pose, video.train) == ("tennis_serve", "front", True)
    assert video.image_size == (360, 480)
    assert video.action_index == penn.PENN_ACTIONS.index("tennis_serve")


def test_written_matlab_types(tmp_path):
    _write(tmp_path / "0001.mat", np.random.default_rng(1), num_frames=5, train=False)
    types = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(tmp_path / "0001.mat")}
    assert types["action"][1] == "char" and types["pose"][1] == "char"
    assert types["x"] == ((5, 13), "double") and types["y"] == ((5, 13), "double")
    assert types["visibility"] == ((5, 13), "logical")
    assert types["bbox"] == ((5, 4), "double")
    assert types["dimensions"] == ((1, 3), "double")
    assert types["nframes"] == ((1, 1), "double")
    mat = scipy.io.loadmat(tmp_path / "0001.mat")
    assert mat["train"].item() == -1.0
    np.testing.assert_array_equal(mat["dimensions"], [[360, 480, 5]])


def test_single_frame_video_keeps_its_shape(tmp_path):
    _write(tmp_path / "0001.mat", np.random.default_rng(2), num_frames=1)
    assert penn.load_video_mat(tmp_path / "0001.mat").joints.shape == (1, 13, 2)


def _resave(path, **changes):
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    mat.update(changes)
    for key, value in list(mat.items()):
        if value is None:
            del mat[key]
    scipy.io.savemat(path, mat)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"visibility": None}, "missing fields \\['visibility'\\]"),
        ({"x": np.zeros((20, 12))}, "'x' must have shape"),
        ({"y": np.zeros((19, 13))}, "same shape"),
        ({"nframes": 21.0}, "'nframes' is 21"),
        ({"dimensions": np.array([360.0, 480.0, 19.0])}, "'dimensions'"),
        ({"train": 0.0}, "'train' must be 1 or -1"),
        ({"action": "juggling"}, "unknown action"),
        ({"bbox": np.zeros((20, 3))}, "'bbox'"),
        ({"visibility": np.full((20, 13), 2, dtype=np.uint8)}, "only 0 and 1"),
        # Finite in float64 (the file's type), inf in the float32 the loader returns.
        ({"x": np.full((20, 13), 1e300)}, "field 'x' holds values beyond the float32 range"),
        ({"y": np.full((20, 13), -1e39)}, "field 'y' holds values beyond the float32 range"),
        ({"bbox": np.full((20, 4), 1e300)}, "field 'bbox' holds values beyond the float32"),
        # MATLAB logical and char arrays are not coordinates.
        ({"x": np.ones((20, 13), dtype=bool)}, "field 'x' must hold numbers, got dtype bool"),
        ({"bbox": np.ones((20, 4), dtype=bool)}, "field 'bbox' must hold numbers"),
        ({"dimensions": "360 480 20"}, "field 'dimensions' must hold numbers"),
        ({"train": np.array([[True]])}, "field 'train' must be a number"),
        ({"dimensions": np.array([0.0, 480.0, 20.0])}, "must start with positive integers H, W"),
        ({"dimensions": np.array([360.0, np.nan, 20.0])}, "must start with positive integers"),
        ({"dimensions": np.array([360.5, 480.0, 20.0])}, "must start with positive integers"),
        (
            {"x": np.full((20, 13), 7.0), "y": np.full((20, 13), 7.0)},
            "every joint of every frame lies on one point",
        ),
    ],
)
def test_invalid_fields_raise_naming_file_and_field(tmp_path, changes, message):
    path = tmp_path / "0003.mat"
    _write(path, np.random.default_rng(3), num_frames=20)
    _resave(path, **changes)
    with pytest.raises(ValueError, match=message) as err:
        penn.load_video_mat(path)
    assert "0003.mat" in str(err.value)


def test_nan_coordinate_raises(tmp_path):
    path = tmp_path / "0004.mat"
    fields = _write(path, np.random.default_rng(4))
    x = fields["x"].copy()
    x[3, 5] = np.nan
    _resave(path, x=x)
    with pytest.raises(ValueError, match="0004.mat: field 'x' holds NaN"):
        penn.load_video_mat(path)


def test_writer_rejects_bad_input(tmp_path):
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="unknown action"):
        _write(tmp_path / "0001.mat", rng, action="dance")
    with pytest.raises(ValueError, match="dimensions give 7 frames"):
        _write(tmp_path / "0001.mat", rng, dimensions=(360, 480, 7))
    assert not (tmp_path / "0001.mat").exists()


def test_load_penn_action_splits_in_numeric_order(tmp_path):
    rng = np.random.default_rng(6)
    for name, train in (("0010", True), ("0002", False), ("0001", True), ("0003", False)):
        _write(tmp_path / f"{name}.mat", rng, num_frames=4, train=train)
    (tmp_path / "notes.mat").write_bytes(b"not a label file")
    train, test = penn.load_penn_action(tmp_path)
    assert [v.name for v in train] == ["0001", "0010"]
    assert [v.name for v in test] == ["0002", "0003"]


def test_load_penn_action_refuses_a_video_number_twice(tmp_path):
    rng = np.random.default_rng(7)
    _write(tmp_path / "0001.mat", rng, num_frames=4)
    _write(tmp_path / "0002.mat", rng, num_frames=4)
    _write(tmp_path / "2.mat", rng, num_frames=4)
    with pytest.raises(ValueError, match="/2.mat: same video number as 0002.mat"):
        penn.load_penn_action(tmp_path)


def test_load_penn_action_missing_or_empty_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        penn.load_penn_action(tmp_path / "absent")
    with pytest.raises(ValueError, match="no Penn Action label files"):
        penn.load_penn_action(tmp_path)


def test_normalize_video_uses_box_of_all_joints():
    joints = np.zeros((2, 13, 2))
    joints[0, :, 0] = 10.0  # x spans [10, 50]
    joints[1, :, 0] = 50.0
    joints[0, :, 1] = 100.0  # y spans [100, 120]
    joints[1, :, 1] = 120.0
    joints[1, 3] = (50.0, 120.0)
    visibility = np.zeros((2, 13), dtype=bool)  # invisible joints still span the box
    poses, length = penn.normalize_video(_video(joints, visibility))
    assert length == 40.0
    # mid = (30, 110); (xy - mid) / 20
    np.testing.assert_allclose(poses[0, 0], [-1.0, -0.5])
    np.testing.assert_allclose(poses[1, 0], [1.0, 0.5])


def test_normalize_video_degenerate_raises():
    with pytest.raises(ValueError, match="one point"):
        penn.normalize_video(_video(np.ones((3, 13, 2))))


def test_sample_indices_step_and_clamp():
    # T = 35: step = 34 // 17 = 2.
    idx = penn.sample_indices(35, 17)
    assert idx.shape == (35, 17)
    np.testing.assert_array_equal(idx[0], np.arange(0, 34, 2))
    np.testing.assert_array_equal(idx[5], np.minimum(np.arange(5, 39, 2), 34))
    np.testing.assert_array_equal(idx[34], np.full(17, 34))
    # Initial-velocity variant draws 18 frames: step = 36 // 18 = 2 (not 36 // 17).
    np.testing.assert_array_equal(penn.sample_indices(37, 18)[0], np.arange(0, 36, 2))
    assert penn.sample_indices(36, 18)[0, 1] == 1


def _ramp_video(num_frames, name="0001"):
    """Frame t has every joint at (t, -t) plus a per-joint offset."""
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    joints = np.concatenate([t, -t], axis=-1) + np.arange(13)[None, :, None]
    visibility = np.ones((num_frames, 13), dtype=bool)
    visibility[:, 4] = False
    return _video(joints, visibility, name)


def test_make_samples_layout():
    videos = [_ramp_video(35), _ramp_video(40, "0002")]
    samples = penn.make_samples(videos)
    assert len(samples) == 75
    assert samples.observed.shape == (75, 1, 13, 2)
    assert samples.future.shape == (75, 16, 13, 2)
    assert samples.future_visible.shape == (75, 16, 13)
    np.testing.assert_array_equal(samples.video_index, [0] * 35 + [1] * 40)
    assert np.all(samples.action == penn.PENN_ACTIONS.index("squat"))
    np.testing.assert_allclose(samples.box_length, [46.0] * 35 + [51.0] * 40)
    # Sample 3 of video 0 (step 2): observed frame 3, futures 5, 7, ..., 33, 34 (clamped).
    poses, _ = penn.normalize_video(videos[0])
    np.testing.assert_array_equal(samples.observed[3, 0], poses[3])
    frames = np.minimum(np.arange(5, 37, 2), 34)
    np.testing.assert_array_equal(samples.future[3], poses[frames])
    assert not samples.future_visible[..., 4].any() and samples.future_visible[..., 5].all()


def test_make_samples_initial_velocity_variant():
    samples = penn.make_samples([_ramp_video(37)], observed=2)
    poses, _ = penn.normalize_video(_ramp_video(37))
    assert samples.observed.shape == (37, 2, 13, 2)
    assert samples.future.shape == (37, 16, 13, 2)
    np.testing.assert_array_equal(samples.observed[0], poses[[0, 2]])
    np.testing.assert_array_equal(samples.future[0], poses[np.arange(4, 36, 2)])


def test_make_samples_short_videos():
    short, long = _ramp_video(10), _ramp_video(18, "0002")
    kept = penn.make_samples([short, long])
    # step = 0 for T = 10: every pose of the sample is its start frame (TP-RNN keeps it).
    np.testing.assert_array_equal(kept.future[4], np.repeat(kept.observed[4], 16, axis=0))
    assert len(kept) == 28
    dropped = penn.make_samples([short, long], drop_short=True)
    assert len(dropped) == 18 and np.all(dropped.video_index == 1)
    with pytest.raises(ValueError, match="no forecasting samples"):
        penn.make_samples([short], drop_short=True)


@pytest.mark.parametrize("content", [b"", b"garbage " * 20])
def test_corrupt_file_raises(tmp_path, content):
    (tmp_path / "0005.mat").write_bytes(content)
    with pytest.raises(ValueError, match="0005.mat: not a readable MATLAB file"):
        penn.load_video_mat(tmp_path / "0005.mat")
