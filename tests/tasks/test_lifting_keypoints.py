"""Reading one person's 2D keypoints from detector files, filling gaps, converting skeletons."""

import json

import numpy as np
import pytest

from chiral_jax.skeletons import COCO_17, H36M_17, MPII_16
from chiral_tasks.lifting.keypoints import (
    KeypointsError,
    coco_to_h36m,
    convert_keypoints,
    fill_gaps,
    normalise,
    read_array,
    read_coco_json,
    read_keypoints,
    read_videopose3d_custom,
    with_image_size,
    write_coco_json,
)

T, J = 6, COCO_17.num_joints
COCO = {name: j for j, name in enumerate(COCO_17.joint_names)}
H36M = {name: j for j, name in enumerate(H36M_17.joint_names)}


def _poses(seed=0, frames=T):
    """Random pixel keypoints (frames, J, 2) and scores (frames, J) in [0.5, 1)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 640, (frames, J, 2)).astype(np.float32)
    score = rng.uniform(0.5, 1.0, (frames, J)).astype(np.float32)
    return xy, score


def _one_line_error(match, call, *args, **kwargs) -> str:
    """Call, expect a KeypointsError matching ``match`` on one line; return its message."""
    with pytest.raises(KeypointsError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _custom_npz(path, videos):
    """Write VideoPose3D's data_2d_custom file: ``videos`` maps name -> (xy, (w, h))."""
    positions = {name: {"custom": [xy]} for name, (xy, _) in videos.items()}
    metadata = {
        "layout_name": "coco",
        "num_joints": 17,
        "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]],
        "video_metadata": {name: {"w": w, "h": h} for name, (_, (w, h)) in videos.items()},
    }
    np.savez(
        path,
        positions_2d=np.array(positions, dtype=object),
        metadata=np.array(metadata, dtype=object),
    )
    return path


# -- COCO JSON ------------------------------------------------------------------------


def test_coco_results_round_trip(tmp_path):
    xy, score = _poses()
    path = write_coco_json(tmp_path / "results.json", xy, score)
    kp = read_keypoints(path)
    np.testing.assert_array_equal(kp.xy, xy)
    np.testing.assert_array_equal(kp.score, score)
    assert kp.xy.dtype == kp.score.dtype == np.float32
    assert kp.skeleton == COCO_17
    assert kp.frame_ids == tuple(range(T))
    assert (kp.width, kp.height, kp.missing) == (None, None, ())


def test_coco_frames_in_natural_order(tmp_path):
    xy, score = _poses(frames=3)
    path = write_coco_json(
        tmp_path / "r.json", xy, score, image_ids=["10.jpg", "000002.jpg", "1.jpg"]
    )
    kp = read_coco_json(path)
    assert kp.frame_ids == ("1.jpg", "000002.jpg", "10.jpg")
    np.testing.assert_array_equal(kp.xy, xy[[2, 1, 0]])


def test_write_coco_json_refuses_to_overwrite(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("keep")
    with pytest.raises(FileExistsError):
        write_coco_json(path, *_poses())
    assert path.read_text() == "keep"


def test_full_coco_annotation_file_gives_size_and_unannotated_frames(tmp_path):
    xy, _ = _poses(frames=2)
    flags = np.tile([2.0, 1.0, 0.0], J)[:J]
    keypoints = [np.column_stack([xy[t], flags]).ravel().tolist() for t in range(2)]
    data = {
        "images": [
            {"id": i, "width": 640, "height": 480, "file_name": f"{i:06d}.jpg"} for i in (3, 1, 2)
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "keypoints": keypoints[0]},
            {"id": 11, "image_id": 3, "category_id": 1, "keypoints": keypoints[1]},
        ],
    }
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(data))
    kp = read_coco_json(path)
    assert kp.frame_ids == (1, 2, 3)
    assert (kp.width, kp.height, kp.missing) == (640, 480, (1,))
    np.testing.assert_array_equal(kp.xy[[0, 2]], xy)
    assert np.isnan(kp.xy[1]).all()
    np.testing.assert_array_equal(kp.score[0], (flags > 0).astype(np.float32))
    np.testing.assert_array_equal(kp.score[1], np.zeros(J))


def test_best_scoring_person_is_kept(tmp_path):
    xy, score = _poses()
    other_xy, other_score = _poses(seed=1)
    other_score[:] = 0.1
    other_score[4] = 1.0  # frame 4: the other person scores higher
    path = write_coco_json(tmp_path / "r.json", xy, score, extra_people=[(other_xy, other_score)])
    kp = read_coco_json(path)
    expected = xy.copy()
    expected[4] = other_xy[4]
    np.testing.assert_array_equal(kp.xy, expected)


def test_person_by_track_id(tmp_path):
    xy, score = _poses()
    other_xy, other_score = _poses(seed=1)
    other_xy[3] = np.nan  # the tracked person is not seen in frame 3
    path = write_coco_json(tmp_path / "r.json", xy, score, extra_people=[(other_xy, other_score)])
    for person in (1, "1"):
        kp = read_keypoints(path, person=person)
        assert kp.missing == (3,)
        np.testing.assert_array_equal(np.delete(kp.xy, 3, 0), np.delete(other_xy, 3, 0))
    message = _one_line_error("no person with id 7", read_coco_json, path, person=7)
    assert str(path) in message and "['0', '1']" in message


def test_person_needs_ids_in_the_file(tmp_path):
    entries = [{"image_id": 0, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.9}]
    path = tmp_path / "untracked.json"
    path.write_text(json.dumps(entries))
    _one_line_error("no entry has a person id", read_coco_json, path, person=0)


def test_frames_without_a_person_are_missing_and_filled(tmp_path):
    t = np.arange(T, dtype=np.float32)[:, None, None]
    xy = np.broadcast_to(10 + 3 * t + np.arange(J)[None, :, None], (T, J, 2)).copy()
    xy[[0, 2, 3]] = np.nan
    path = write_coco_json(tmp_path / "r.json", xy, np.ones((T, J)))
    kp = read_coco_json(path)
    # Integer ids are frame numbers: the ones between the first and the last missing
    # from the results list are frames nobody was detected in (before the first: unknown).
    assert kp.frame_ids == (1, 2, 3, 4, 5) and kp.missing == (1, 2)
    named = write_coco_json(
        tmp_path / "n.json", xy, np.ones((T, J)), image_ids=[f"{i}.jpg" for i in range(T)]
    )
    assert read_coco_json(named).frame_ids == ("1.jpg", "4.jpg", "5.jpg")  # names: no gaps known
    path = write_coco_json(tmp_path / "r2.json", xy, np.ones((T, J)), image_ids=range(T))
    full = {"images": [{"id": i} for i in range(T)], "annotations": json.loads(path.read_text())}
    (tmp_path / "full.json").write_text(json.dumps(full))
    kp = read_coco_json(tmp_path / "full.json")
    assert kp.missing == (0, 2, 3)
    filled, report = fill_gaps(kp, threshold=0.5)
    assert report == {"filled_joints": 3 * J, "missing_frames": [0, 2, 3]}
    expected = np.broadcast_to(10 + 3 * t + np.arange(J)[None, :, None], (T, J, 2)).copy()
    expected[0] = expected[1]  # before the first detection: the nearest value
    np.testing.assert_array_equal(filled.xy, expected)
    assert filled.missing == kp.missing


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[{", "not valid JSON"),
        ('{"images": []}', "annotations"),
        ('[{"image_id": 0, "keypoints": [1, 2]}]', "entry 0: 'keypoints' must hold 51"),
        ('[{"keypoints": []}]', "entry 0 is not an object with an 'image_id'"),
        ("[]", "not one frame"),
    ],
)
def test_bad_json_is_refused_in_one_line(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert str(path) in _one_line_error(match, read_keypoints, path)


def test_images_of_different_sizes_are_refused(tmp_path):
    data = {
        "images": [{"id": 0, "width": 640, "height": 480}, {"id": 1, "width": 320, "height": 240}],
        "annotations": [],
    }
    path = tmp_path / "sizes.json"
    path.write_text(json.dumps(data))
    _one_line_error("different sizes", read_coco_json, path)


# -- VideoPose3D's custom .npz --------------------------------------------------------


def test_videopose3d_custom_needs_allow_pickle(tmp_path):
    xy, _ = _poses()
    path = _custom_npz(tmp_path / "data_2d_custom_demo.npz", {"a.mp4": (xy, (1280, 720))})
    message = _one_line_error("--allow-pickle", read_keypoints, path)
    assert str(path) in message and "runs code" in message
    kp = read_keypoints(path, allow_pickle=True)
    np.testing.assert_array_equal(kp.xy, xy)
    np.testing.assert_array_equal(kp.score, np.ones((T, J)))
    assert (kp.width, kp.height, kp.frame_ids) == (1280, 720, tuple(range(T)))


def test_videopose3d_custom_with_several_videos(tmp_path):
    xy_a, _ = _poses()
    xy_b, _ = _poses(seed=1, frames=4)
    videos = {"a.mp4": (xy_a, (1280, 720)), "b.mp4": (xy_b, (640, 480))}
    path = _custom_npz(tmp_path / "data_2d_custom_two.npz", videos)
    message = _one_line_error(
        "name one with video=", read_videopose3d_custom, path, allow_pickle=True
    )
    assert "'a.mp4', 'b.mp4'" in message
    kp = read_videopose3d_custom(path, allow_pickle=True, video="b.mp4")
    np.testing.assert_array_equal(kp.xy, xy_b)
    assert (kp.width, kp.height) == (640, 480)
    _one_line_error(
        "no video 'c.mp4'", read_videopose3d_custom, path, allow_pickle=True, video="c.mp4"
    )


def test_videopose3d_custom_corrupt_archive(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip")
    _one_line_error("not an .npz archive", read_videopose3d_custom, path, allow_pickle=True)


# -- .npy and .csv --------------------------------------------------------------------


@pytest.mark.parametrize("with_score", [False, True])
def test_npy_round_trip(tmp_path, with_score):
    xy, score = _poses()
    values = np.concatenate([xy, score[..., None]], axis=-1) if with_score else xy
    np.save(tmp_path / "poses.npy", values)
    kp = read_keypoints(tmp_path / "poses.npy")
    np.testing.assert_array_equal(kp.xy, xy)
    np.testing.assert_array_equal(kp.score, score if with_score else np.ones((T, J)))
    assert (kp.width, kp.frame_ids, kp.missing) == (None, tuple(range(T)), ())


def test_npy_with_objects_is_refused(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object))
    _one_line_error("not a readable .npy", read_array, tmp_path / "objects.npy")


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("with_score", [False, True])
def test_csv_round_trip(tmp_path, header, with_score):
    xy, score = _poses()
    values = np.concatenate([xy, score[..., None]], axis=-1) if with_score else xy
    columns = [f"{n}_{c}" for n in COCO_17.joint_names for c in ("x", "y", "score")]
    lines = [",".join(columns[: values.shape[1] * values.shape[2]])] if header else []
    lines += [",".join(repr(float(v)) for v in row.ravel()) for row in values]
    (tmp_path / "poses.csv").write_text("\n".join(lines) + "\n")
    kp = read_keypoints(tmp_path / "poses.csv")
    np.testing.assert_array_equal(kp.xy, xy)
    np.testing.assert_array_equal(kp.score, score if with_score else np.ones((T, J)))


def test_wrong_joint_count_is_refused(tmp_path):
    np.save(tmp_path / "mpii.npy", np.zeros((T, 16, 2)))
    message = _one_line_error("16 joints per frame", read_array, tmp_path / "mpii.npy")
    assert "'coco' has 17" in message
    assert read_array(tmp_path / "mpii.npy", skeleton=MPII_16).skeleton == MPII_16
    (tmp_path / "short.csv").write_text("1,2,3\n4,5,6\n")
    _one_line_error("rows of 3 numbers.*34.*51", read_array, tmp_path / "short.csv")
    (tmp_path / "text.csv").write_text("x,y\n1,2\nthree,4\n")
    _one_line_error("row 3: 'three' is not a number", read_array, tmp_path / "text.csv")


def test_unknown_suffix_is_refused(tmp_path):
    (tmp_path / "poses.txt").write_text("")
    _one_line_error("unknown keypoint file type '.txt'", read_keypoints, tmp_path / "poses.txt")


# -- filling gaps ---------------------------------------------------------------------


def test_low_score_joints_are_interpolated_exactly(tmp_path):
    t = np.arange(T, dtype=np.float32)
    xy = np.stack([5 + 2 * t, 100 - 4 * t], axis=-1)[:, None, :] + np.arange(J)[None, :, None]
    score = np.ones((T, J), dtype=np.float32)
    score[1:4, 0] = 0.2  # inside: linear interpolation
    score[:2, 5] = 0.1  # at the start: the first detection
    score[5, 7] = 0.0  # at the end: the last detection
    noisy = xy.copy()
    noisy[score < 0.5] = 1e4
    np.save(tmp_path / "poses.npy", np.concatenate([noisy, score[..., None]], axis=-1))
    filled, report = fill_gaps(read_array(tmp_path / "poses.npy"), threshold=0.5)
    expected = xy.copy()
    expected[:2, 5] = xy[2, 5]
    expected[5, 7] = xy[4, 7]
    np.testing.assert_array_equal(filled.xy, expected)
    assert report == {"filled_joints": 6, "missing_frames": []}
    np.testing.assert_array_equal(filled.score, score)


def test_joint_never_seen_is_an_error(tmp_path):
    xy, score = _poses()
    score[:, COCO["left_ankle"]] = 0.2
    np.save(tmp_path / "p.npy", np.concatenate([xy, score[..., None]], axis=-1))
    kp = read_array(tmp_path / "p.npy")
    _one_line_error(
        r"joints \['left_ankle'\] never have a score >= 0.5", fill_gaps, kp, threshold=0.5
    )
    _one_line_error("no frame of 6 has a joint", fill_gaps, kp, threshold=1.0)
    _one_line_error("threshold must be in", fill_gaps, kp, threshold=1.5)


# -- skeletons and normalisation ------------------------------------------------------


def _hand_made_coco() -> np.ndarray:
    """A standing person facing the camera (image y down), (17, 2) pixels."""
    points = {
        "nose": (100, 50), "left_eye": (106, 44), "right_eye": (94, 44),
        "left_ear": (112, 48), "right_ear": (88, 48),
        "left_shoulder": (120, 80), "right_shoulder": (80, 80),
        "left_elbow": (126, 110), "right_elbow": (74, 110),
        "left_wrist": (130, 140), "right_wrist": (70, 140),
        "left_hip": (112, 150), "right_hip": (88, 150),
        "left_knee": (114, 200), "right_knee": (86, 200),
        "left_ankle": (116, 250), "right_ankle": (84, 250),
    }  # fmt: skip
    return np.array([points[name] for name in COCO_17.joint_names], dtype=np.float32)


def test_coco_to_h36m_derived_points():
    coco = _hand_made_coco()
    h36m = coco_to_h36m(coco)
    assert h36m.shape == (17, 2) and h36m.dtype == np.float32
    expected = {
        "hip": (100, 150), "thorax": (100, 80), "spine": (100, 115), "neck": (100, 50),
        "head": (100, 38),  # eyes' mean (100, 44) moved 6 px away from the nose
    }  # fmt: skip
    for name, point in expected.items():
        np.testing.assert_allclose(h36m[H36M[name]], point, err_msg=name)
    for name in H36M_17.joint_names:
        if name.startswith(("left_", "right_")):
            np.testing.assert_array_equal(h36m[H36M[name]], coco[COCO[name]], err_msg=name)


def test_coco_to_h36m_keeps_left_and_right():
    coco = np.random.default_rng(0).normal(size=(4, 17, 2))
    mirrored = COCO_17.layout(2).transform(coco)
    np.testing.assert_allclose(
        coco_to_h36m(mirrored), H36M_17.layout(2).transform(coco_to_h36m(coco))
    )
    # the same swap by hand
    by_hand = coco.copy()
    by_hand[:, COCO_17.left + COCO_17.right] = coco[:, COCO_17.right + COCO_17.left]
    by_hand[..., 0] *= -1
    np.testing.assert_allclose(by_hand, mirrored)


def test_convert_keypoints(tmp_path):
    xy, score = _poses()
    score[:, COCO["left_eye"]] = 0.25
    np.save(tmp_path / "p.npy", np.concatenate([xy, score[..., None]], axis=-1))
    kp = read_array(tmp_path / "p.npy")
    h36m = convert_keypoints(kp, H36M_17)
    assert h36m.skeleton == H36M_17
    np.testing.assert_allclose(h36m.xy, coco_to_h36m(xy))
    np.testing.assert_array_equal(h36m.score[:, H36M["head"]], np.full(T, 0.25, np.float32))
    hips = score[:, [COCO["left_hip"], COCO["right_hip"]]].min(axis=1)
    np.testing.assert_array_equal(h36m.score[:, H36M["hip"]], hips)
    np.testing.assert_array_equal(h36m.score[:, H36M["left_knee"]], score[:, COCO["left_knee"]])
    assert convert_keypoints(kp, COCO_17) is not kp
    np.testing.assert_array_equal(convert_keypoints(kp, COCO_17).xy, kp.xy)
    _one_line_error("from skeleton 'h36m' to 'coco'", convert_keypoints, h36m, COCO_17)


def test_normalise_matches_the_formula(tmp_path):
    xy, score = _poses()
    kp = read_coco_json(write_coco_json(tmp_path / "r.json", xy, score))
    _one_line_error("pass --width and --height", normalise, kp)
    out = normalise(with_image_size(kp, 1000, 500))
    np.testing.assert_allclose(out, xy / 1000 * 2 - np.array([1.0, 0.5]), atol=1e-6)
    assert out.shape == (T, J, 2) and out.dtype == np.float32
    _one_line_error("positive ints", with_image_size, kp, 0, 500)
