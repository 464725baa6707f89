"""Pinhole cameras with Human3.6M's distortion model, in VideoPose3D's conventions.

Frames and units:

- world: metres, z up. A camera's ``orientation`` is the unit quaternion
  ``(w, x, y, z)`` rotating camera axes into world axes, and ``translation`` is
  the camera centre in world coordinates, so ``X_world = qrot(q, X_cam) + t``.
- camera: metres, x right, y down, z forward (along the optical axis).
- pixels: ``(u, v)`` with the origin at the top-left corner of the image.
- normalised screen coordinates: ``X / w * 2 - [1, h / w]``, so ``u`` spans
  ``[-1, 1]`` and the aspect ratio is kept.

Projection (Human3.6M's radial and tangential model, with the ray clipped to
``[-1, 1]`` as VideoPose3D does)::

    XX = clip(X[:2] / X[2], -1, 1);  r2 = |XX|^2
    radial = 1 + k . [r2, r2^2, r2^3];  tan = p . XX
    uv = f * (XX * (radial + tan) + p * r2) + c

The same formula maps to pixels with pixel intrinsics and to normalised screen
coordinates with :meth:`Camera.intrinsics_normalized` (``f / w * 2`` and the
centre normalised like any point), because both unit changes are affine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
"""Human3.6M's camera ids; their position in this tuple is the camera index."""


# -- quaternions and frames -----------------------------------------------------------


def _check_last(x, size: int, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have a last axis of size {size}, got shape {x.shape}")
    return x


def qrot(q, v) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4) ``(w, x, y, z)``.

    Leading axes broadcast. Implements ``v + 2 w (u x v) + 2 u x (u x v)`` with
    ``u`` the vector part of ``q``.
    """
    q = _check_last(q, 4, "quaternion")
    v = _check_last(v, 3, "vectors")
    u = q[..., 1:]
    uv = np.cross(u, v)
    uuv = np.cross(u, uv)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def qinverse(q) -> np.ndarray:
    """The inverse (conjugate) of unit quaternions ``q`` (..., 4)."""
    q = _check_last(q, 4, "quaternion")
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quaternion_from_matrix(matrix) -> np.ndarray:
    """The unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix (3, 3).

    Raises ``ValueError`` unless ``matrix`` is a proper rotation (orthonormal,
    determinant +1).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"rotation matrix must have shape (3, 3), got {m.shape}")
    if not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or np.linalg.det(m) < 0:
        raise ValueError(f"not a proper rotation matrix:\n{m}")
    # The eigenvector of the largest eigenvalue of Bar-Itzhack's symmetric 4x4
    # matrix is the quaternion; this is stable for every rotation angle.
    (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = m
    k = np.array(
        [
            [xx - yy - zz, yx + xy, zx + xz, zy - yz],
            [yx + xy, yy - xx - zz, zy + yz, xz - zx],
            [zx + xz, zy + yz, zz - xx - yy, yx - xy],
            [zy - yz, xz - zx, yx - xy, xx + yy + zz],
        ]
    )
    _, vectors = np.linalg.eigh(k)
    x, y, z, w = vectors[:, -1]
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


def world_to_camera(X, R, t) -> np.ndarray:
    """World points ``X`` (..., 3) into the frame of a camera with orientation ``R`` (4,)
    and position ``t`` (3,): rotate ``X - t`` by the inverse quaternion."""
    X = _check_last(X, 3, "points")
    return qrot(qinverse(R), X - _check_last(t, 3, "translation"))


def camera_to_world(X, R, t) -> np.ndarray:
    """Camera-frame points ``X`` (..., 3) back to the world: ``qrot(R, X) + t``."""
    return qrot(R, X) + _check_last(t, 3, "translation")


# -- screen coordinates ---------------------------------------------------------------


def normalize_screen_coordinates(X, w: int, h: int) -> np.ndarray:
    """Pixels (..., 2) to normalised screen coordinates: ``X / w * 2 - [1, h / w]``."""
    X = _check_last(X, 2, "screen coordinates")
    return X / w * 2.0 - np.array([1.0, h / w])


def image_coordinates(X, w: int, h: int) -> np.ndarray:
    """Normalised screen coordinates (..., 2) back to pixels (inverse of the above)."""
    X = _check_last(X, 2, "screen coordinates")
    return (X + np.array([1.0, h / w])) * w / 2.0


# -- projection -----------------------------------------------------------------------


def project_to_2d(X_cam, intrinsics) -> np.ndarray:
    """Project camera-frame points ``X_cam`` (..., 3) with distortion.

    Args:
      X_cam: points in the camera frame, metres; every depth must be positive.
      intrinsics: (9,) ``[f (2), c (2), k (3), p (2)]``; normalised intrinsics give
        normalised screen coordinates, pixel intrinsics give pixels.

    Returns:
      (..., 2) image coordinates in the units of ``intrinsics``.
    """
    X = _check_last(X_cam, 3, "camera-frame points")
    params = np.asarray(intrinsics, dtype=np.float64)
    if params.shape != (9,):
        raise ValueError(f"intrinsics must have shape (9,), got {params.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("camera-frame points contain NaN or infinite values")
    if np.any(X[..., 2] <= 0):
        raise ValueError(
            f"{int(np.sum(X[..., 2] <= 0))} points lie at or behind the camera plane (z <= 0)"
        )
    f, c, k, p = params[:2], params[2:4], params[4:7], params[7:9]
    XX = np.clip(X[..., :2] / X[..., 2:], -1.0, 1.0)
    r2 = np.sum(XX**2, axis=-1, keepdims=True)
    radial = 1.0 + np.concatenate([r2, r2**2, r2**3], axis=-1) @ k[:, None]
    tan = XX @ p[:, None]
    return f * (XX * (radial + tan) + p * r2) + c


def flip_camera_intrinsics(intrinsics) -> np.ndarray:
    """The intrinsics (9,) of the mirrored camera: negate the x-centre and ``p[0]``.

    With normalised intrinsics, projecting ``(-x, y, z)`` with the flipped
    intrinsics gives exactly ``(-u, v)`` of projecting ``(x, y, z)`` with the
    original ones (VideoPose3D's flip augmentation). The dtype is kept.
    """
    params = np.array(intrinsics)
    if params.shape != (9,):
        raise ValueError(f"intrinsics must have shape (9,), got {params.shape}")
    params[2] *= -1
    params[7] *= -1
    return params


# -- cameras --------------------------------------------------------------------------

_SHAPES = {
    "center": (2,),
    "focal_length": (2,),
    "radial": (3,),
    "tangential": (2,),
    "orientation": (4,),
    "translation": (3,),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera.

    Attributes:
      id: camera id, e.g. ``"54138969"``.
      center: (2,) principal point, pixels.
      focal_length: (2,) pixels.
      radial: (3,) radial distortion ``k``.
      tangential: (2,) tangential distortion ``p``.
      res_w, res_h: image size, pixels.
      orientation: (4,) unit quaternion ``(w, x, y, z)``, camera -> world rotation.
      translation: (3,) camera position in the world, metres.
    """

    id: str
    center: np.ndarray
    focal_length: np.ndarray
    radial: np.ndarray
    tangential: np.ndarray
    res_w: int
    res_h: int
    orientation: np.ndarray
    translation: np.ndarray

    def __post_init__(self):
        for name, shape in _SHAPES.items():
            value = np.array(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(
                    f"camera {self.id}: {name} must have shape {shape}, got {value.shape}"
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"camera {self.id}: {name} has NaN or infinite values: {value}")
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        for name in ("res_w", "res_h"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise ValueError(
                    f"camera {self.id}: {name} must be a positive integer, got {value}"
                )
            object.__setattr__(self, name, int(value))
        if abs(np.linalg.norm(self.orientation) - 1.0) > 1e-6:
            raise ValueError(
                f"camera {self.id}: orientation must be a unit quaternion, got norm "
                f"{np.linalg.norm(self.orientation):.6f}"
            )
        object.__setattr__(self, "id", str(self.id))

    def intrinsics_pixels(self) -> np.ndarray:
        """(9,) float64 ``[f, c, k, p]`` with ``f`` and ``c`` in pixels."""
        return np.concatenate([self.focal_length, self.center, self.radial, self.tangential])

    def intrinsics_normalized(self) -> np.ndarray:
        """(9,) float32 ``[f, c, k, p]`` in normalised screen units (VideoPose3D's intrinsic)."""
        f = self.focal_length / self.res_w * 2.0
        c = normalize_screen_coordinates(self.center, self.res_w, self.res_h)
        return np.concatenate([f, c, self.radial, self.tangential]).astype(np.float32)

    def world_to_camera(self, X) -> np.ndarray:
        """World points (..., 3) into this camera's frame."""
        return world_to_camera(X, self.orientation, self.translation)

    def camera_to_world(self, X) -> np.ndarray:
        """This camera's frame (..., 3) back to world points."""
        return camera_to_world(X, self.orientation, self.translation)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays for pickle-free storage (``np.savez`` and back)."""
        out = {name: np.array(getattr(self, name)) for name in _SHAPES}
        out["id"] = np.array(self.id)
        out["res_w"] = np.array(self.res_w)
        out["res_h"] = np.array(self.res_h)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, np.ndarray]) -> Camera:
        """Inverse of :meth:`to_dict`; raises ``KeyError`` naming any missing key."""
        keys = ("id", "res_w", "res_h", *_SHAPES)
        missing = [k for k in keys if k not in data]
        if missing:
            raise KeyError(f"camera record lacks keys {missing} (has {sorted(data)})")
        return cls(
            id=str(np.asarray(data["id"])),
            res_w=int(np.asarray(data["res_w"])),
            res_h=int(np.asarray(data["res_h"])),
            **{name: np.asarray(data[name]) for name in _SHAPES},
        )


def project_to_pixels(X_cam, camera: Camera) -> np.ndarray:
    """Camera-frame points (..., 3) to pixel coordinates (..., 2) of ``camera``."""
    return project_to_2d(X_cam, camera.intrinsics_pixels())


def look_at(position, target) -> np.ndarray:
    """The orientation quaternion (4,) of a camera at ``position`` looking at ``target``.

    The image x axis stays horizontal (perpendicular to the world z axis) and the
    image y axis points down. Raises ``ValueError`` when the view is vertical.
    """
    position = _check_last(position, 3, "position")
    forward = _check_last(target, 3, "target") - position
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9 * max(np.linalg.norm(forward), 1.0):
        raise ValueError("look_at needs a non-vertical viewing direction")
    forward = forward / np.linalg.norm(forward)
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    return quaternion_from_matrix(np.stack([right, down, forward], axis=1))


def make_cameras(seed: int = 0) -> list[Camera]:
    """Four Human3.6M-like cameras around the capture volume, deterministic in ``seed``.

    Intrinsics: focal length ~1147 px, principal point within ~12 px of the
    image middle, distortion close to Human3.6M's (``k ~ [-0.2, 0.24, -0.002]``,
    ``|p| < 0.002``); images 1000x1002 for cameras 0 and 3, 1000x1000 otherwise.
    Extrinsics: one camera per quadrant, 4.5-5.5 m from the z axis, 1.2-1.8 m
    high, looking at a point near ``(0, 0, 1)``. Ids are :data:`CAMERA_IDS`.
    """
    rng = np.random.default_rng(seed)
    cameras = []
    for index, cam_id in enumerate(CAMERA_IDS):
        res_w, res_h = 1000, 1002 if index in (0, 3) else 1000
        azimuth = np.pi / 4 + index * np.pi / 2 + rng.uniform(-0.25, 0.25)
        distance = rng.uniform(4.5, 5.5)
        position = np.array(
            [distance * np.cos(azimuth), distance * np.sin(azimuth), rng.uniform(1.2, 1.8)]
        )
        target = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.9, 1.1)])
        cameras.append(
            Camera(
                id=cam_id,
                center=np.array([res_w, res_h]) / 2.0 + rng.uniform(-12.0, 12.0, size=2),
                focal_length=1147.0 + rng.uniform(-4.0, 4.0, size=2),
                radial=np.array([-0.2, 0.24, -0.002]) + rng.uniform(-0.01, 0.01, size=3),
                tangential=rng.uniform(-0.002, 0.002, size=2),
                res_w=res_w,
                res_h=res_h,
                orientation=look_at(position, target),
                translation=position,
            )
        )
    return cameras
