"""pxp.core.camera.Camera on synthetic poses (no simulator; see test_scene.py for MuJoCo renders)."""
import numpy as np
import pytest

from pxp.core.camera import Camera


def _look_down(height=2.0, fovy=90.0, w=100, h=80):
    """MuJoCo camera at (0, 0, height) looking straight down, image up = world +y."""
    return Camera.from_fovy(fovy, w, h, [0.0, 0.0, height], np.eye(3))


def test_intrinsics_from_fovy():
    cam = _look_down(fovy=90.0, w=100, h=80)
    assert np.allclose(cam.K, [[40.0, 0, 50.0], [0, 40.0, 40.0], [0, 0, 1]])  # f = (H/2)/tan(fovy/2)


def test_opencv_axes_and_pixel_convention():
    cam = _look_down()
    assert np.allclose(cam.project([0.0, 0.0, 0.0]), [50.0, 40.0])  # optical axis → image centre
    # world +x is image right, world +y (MuJoCo camera up) is image up = smaller row
    u, v = cam.project([0.5, 0.0, 0.0])
    assert u > 50 and np.isclose(v, 40)
    u, v = cam.project([0.0, 0.5, 0.0])
    assert np.isclose(u, 50) and v < 40
    assert np.allclose(cam.position, [0, 0, 2.0])
    assert np.allclose(cam.world_to_camera([0, 0, 0]), [0, 0, 2.0])  # z forward


def test_points_behind_the_camera_are_nan():
    assert np.isnan(_look_down().project([0.0, 0.0, 3.0])).all()


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_random_pose(seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    pos = rng.normal(size=3)
    cam = Camera.from_fovy(45.0, 64, 48, pos, R)
    pts = pos - 2.0 * R[:, 2] + 0.3 * rng.normal(size=(20, 3))  # in front (MuJoCo looks along -z)
    uv = cam.project(pts)
    assert np.abs(cam.unproject(uv, pts[:, 2]) - pts).max() < 1e-9
    rays = cam.ray(uv)
    assert np.allclose(np.linalg.norm(rays, axis=-1), 1.0)


def test_scaled_and_dict_round_trip():
    cam = _look_down()
    p = [0.3, -0.2, 0.1]
    big = cam.scaled(200, 160)
    assert np.allclose(big.project(p), 2 * cam.project(p))  # continuous coordinates scale exactly
    back = Camera.from_dict(cam.to_dict())
    assert np.allclose(back.K, cam.K) and np.allclose(back.extrinsics, cam.extrinsics)
    assert (back.width, back.height) == (cam.width, cam.height)
