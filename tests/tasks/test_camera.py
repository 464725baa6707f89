"""Camera model: quaternions, frames, distortion, screen coordinates, flips."""

import numpy as np
import pytest

from chiral_tasks.common import camera as cam


def _random_quaternions(rng, n):
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def test_qrot_matches_rotation_matrix_and_inverse_undoes_it():
    rng = np.random.default_rng(0)
    q = _random_quaternions(rng, 8)
    v = rng.normal(size=(8, 5, 3))
    rotated = cam.qrot(q[:, None], v)
    back = cam.qrot(cam.qinverse(q)[:, None], rotated)
    np.testing.assert_allclose(back, v, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(v, axis=-1))
    # A quarter turn about z maps x to y.
    quarter = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(cam.qrot(quarter, [1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)


def test_quaternion_from_matrix_round_trip():
    rng = np.random.default_rng(1)
    for q in _random_quaternions(rng, 20):
        q = q if q[0] >= 0 else -q
        matrix = cam.qrot(q, np.eye(3)).T  # columns: images of the basis vectors
        np.testing.assert_allclose(cam.quaternion_from_matrix(matrix), q, atol=1e-9)
    with pytest.raises(ValueError, match="proper rotation"):
        cam.quaternion_from_matrix(np.diag([1.0, 1.0, -1.0]))


def test_world_camera_round_trip():
    rng = np.random.default_rng(2)
    (camera,) = cam.make_cameras(seed=3)[:1]
    X = rng.normal(size=(4, 17, 3))
    X_cam = camera.world_to_camera(X)
    np.testing.assert_allclose(camera.camera_to_world(X_cam), X, atol=1e-12)
    # The camera centre maps to the camera-frame origin.
    np.testing.assert_allclose(camera.world_to_camera(camera.translation), 0.0, atol=1e-12)


def test_point_on_optical_axis_projects_to_principal_point():
    camera = cam.make_cameras()[0]
    np.testing.assert_allclose(cam.project_to_pixels([0.0, 0.0, 4.0], camera), camera.center)
    normalized = cam.project_to_2d([0.0, 0.0, 4.0], camera.intrinsics_normalized())
    expected = cam.normalize_screen_coordinates(camera.center, camera.res_w, camera.res_h)
    np.testing.assert_allclose(normalized, expected, atol=1e-6)


def test_distortion_free_projection_is_pinhole():
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.uniform(-1, 1, size=(50, 2)), rng.uniform(3, 6, size=(50, 1))], -1)
    f, c = np.array([1100.0, 1120.0]), np.array([500.0, 490.0])
    intrinsics = np.concatenate([f, c, np.zeros(5)])
    np.testing.assert_allclose(cam.project_to_2d(X, intrinsics), f * X[:, :2] / X[:, 2:] + c)


def test_distortion_moves_off_axis_points():
    camera = cam.make_cameras()[1]
    X = np.array([0.8, 0.5, 3.0])
    pinhole = camera.focal_length * X[:2] / X[2] + camera.center
    assert np.linalg.norm(cam.project_to_pixels(X, camera) - pinhole) > 1.0


def test_pixel_and_normalized_projections_agree():
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.uniform(-1, 1, size=(30, 2)), rng.uniform(3, 6, size=(30, 1))], -1)
    for camera in cam.make_cameras(seed=5):
        normalized = cam.project_to_2d(X, camera.intrinsics_normalized().astype(np.float64))
        pixels = cam.image_coordinates(normalized, camera.res_w, camera.res_h)
        np.testing.assert_allclose(pixels, cam.project_to_pixels(X, camera), atol=1e-3)


def test_normalize_and_image_coordinates_are_inverse():
    rng = np.random.default_rng(6)
    px = rng.uniform(0, 1000, size=(3, 7, 2))
    normalized = cam.normalize_screen_coordinates(px, 1000, 1002)
    np.testing.assert_allclose(cam.image_coordinates(normalized, 1000, 1002), px)
    corners = cam.normalize_screen_coordinates(np.array([[0.0, 0.0], [1000.0, 1002.0]]), 1000, 1002)
    np.testing.assert_allclose(corners, [[-1.0, -1.002], [1.0, 1.002]])


def test_intrinsics_normalized_layout():
    camera = cam.make_cameras()[0]
    intr = camera.intrinsics_normalized()
    assert intr.shape == (9,) and intr.dtype == np.float32
    np.testing.assert_allclose(intr[:2], camera.focal_length / camera.res_w * 2, rtol=1e-6)
    np.testing.assert_allclose(intr[4:7], camera.radial, rtol=1e-6)
    np.testing.assert_allclose(intr[7:], camera.tangential, rtol=1e-6)


def test_make_cameras_is_deterministic_and_human36m_like():
    a, b, c = cam.make_cameras(seed=7), cam.make_cameras(seed=7), cam.make_cameras(seed=8)
    assert [x.id for x in a] == list(cam.CAMERA_IDS)
    for x, y in zip(a, b, strict=True):
        for key, value in x.to_dict().items():
            np.testing.assert_array_equal(value, y.to_dict()[key])
    assert not np.allclose(a[0].translation, c[0].translation)
    for x in a:
        assert 4.5 <= np.linalg.norm(x.translation[:2]) <= 5.5
        assert 1.2 <= x.translation[2] <= 1.8
        assert abs(x.focal_length - 1147).max() < 10
        assert abs(x.center - [x.res_w / 2, x.res_h / 2]).max() < 15
    # One camera per quadrant.
    quadrants = {(bool(x.translation[0] > 0), bool(x.translation[1] > 0)) for x in a}
    assert len(quadrants) == 4


def test_every_camera_sees_a_standing_person_at_the_origin():
    heights = np.linspace(0.0, 1.9, 20)
    column = np.stack([np.zeros(20), np.zeros(20), heights], -1)
    arms = np.array([[-0.9, 0.0, 1.45], [0.9, 0.0, 1.45], [0.0, -0.9, 1.45], [0.0, 0.9, 1.45]])
    person = np.concatenate([column, arms])
    for seed in range(5):
        for camera in cam.make_cameras(seed):
            X_cam = camera.world_to_camera(person)
            assert np.all(X_cam[:, 2] > 3.0)
            uv = cam.project_to_pixels(X_cam, camera)
            assert np.all(uv > 0) and np.all(uv < [camera.res_w, camera.res_h])
            # Image y points down: the head is above the feet.
            assert uv[19, 1] < uv[0, 1]


def test_flipped_intrinsics_mirror_the_projection():
    rng = np.random.default_rng(9)
    X = np.concatenate([rng.uniform(-1, 1, size=(40, 2)), rng.uniform(2, 6, size=(40, 1))], -1)
    mirror = np.array([-1.0, 1.0, 1.0])
    for camera in cam.make_cameras(seed=9):
        intr = camera.intrinsics_normalized().astype(np.float64)
        flipped = cam.flip_camera_intrinsics(intr)
        np.testing.assert_array_equal(flipped[[2, 7]], -intr[[2, 7]])
        np.testing.assert_array_equal(np.delete(flipped, [2, 7]), np.delete(intr, [2, 7]))
        uv = cam.project_to_2d(X, intr)
        uv_mirror = cam.project_to_2d(X * mirror, flipped)
        np.testing.assert_allclose(uv_mirror, uv * [-1.0, 1.0], atol=1e-12)
        # Flipping without negating p[0] is not enough once p is non-zero.
        centre_only = intr * np.where(np.arange(9) == 2, -1.0, 1.0)
        assert not np.allclose(cam.project_to_2d(X * mirror, centre_only), uv * [-1.0, 1.0])
    assert cam.flip_camera_intrinsics(np.zeros(9, np.float32)).dtype == np.float32


def test_to_dict_round_trip_through_npz(tmp_path):
    camera = cam.make_cameras(seed=10)[2]
    np.savez(tmp_path / "cam.npz", **camera.to_dict())
    with np.load(tmp_path / "cam.npz") as data:
        loaded = cam.Camera.from_dict(dict(data))
    assert loaded.id == camera.id and (loaded.res_w, loaded.res_h) == (camera.res_w, camera.res_h)
    np.testing.assert_array_equal(loaded.intrinsics_normalized(), camera.intrinsics_normalized())
    np.testing.assert_array_equal(loaded.orientation, camera.orientation)
    np.testing.assert_array_equal(loaded.translation, camera.translation)


def test_bad_input_raises():
    camera = cam.make_cameras()[0]
    record = camera.to_dict()
    del record["radial"]
    with pytest.raises(KeyError, match="radial"):
        cam.Camera.from_dict(record)
    with pytest.raises(ValueError, match="center"):
        cam.Camera.from_dict({**camera.to_dict(), "center": np.zeros(3)})
    with pytest.raises(ValueError, match="unit quaternion"):
        cam.Camera.from_dict({**camera.to_dict(), "orientation": np.ones(4)})
    with pytest.raises(ValueError, match="behind"):
        cam.project_to_pixels(np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0]]), camera)
    with pytest.raises(ValueError, match="NaN"):
        cam.project_to_pixels(np.array([0.0, np.nan, 2.0]), camera)
    with pytest.raises(ValueError, match="shape"):
        cam.project_to_2d(np.ones(3), np.ones(8))
    with pytest.raises(ValueError, match="last axis"):
        camera.world_to_camera(np.ones((5, 2)))
