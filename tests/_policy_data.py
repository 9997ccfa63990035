"""Shared fixtures for the policy and training tests: a camera, small demo files written with the
real DemoWriter (so batches come through the real loader), and a stand-in runner context."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from pxp.core.camera import Camera
from pxp.testing import plugin_registry


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread only adds contention
    (measured 6 s vs 57 s for the same 100 steps under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reg():
    return plugin_registry()


def look_at_camera(width=64, height=64, eye=(0.9, 0.0, 1.55), target=(0.0, 0.0, 0.95), fovy=50.0) -> Camera:
    """A LIBERO-agentview-like camera: in front of the table, looking down at it."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    f = target - eye
    f /= np.linalg.norm(f)
    x = np.cross(f, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(-f, x)  # MuJoCo camera frame: x right, y up, looking along -z
    R = np.stack([x, y, -f], axis=1)
    return Camera.from_fovy(fovy, width, height, eye, R)


def _disk(img, uv, radius, color):
    H, W = img.shape[:2]
    yy, xx = np.mgrid[0:H, 0:W]
    mask = (xx + 0.5 - uv[0]) ** 2 + (yy + 0.5 - uv[1]) ** 2 <= radius**2
    img[mask] = color


def synth_episode(rng, camera: Camera, T: int = 12, goal_y=(-0.18, 0.18)) -> dict:
    """The end effector moves from home to a random goal on the table and closes its gripper at the
    end; the image shows the end effector (red) and the goal (blue), like a bowl→plate scene."""
    home = np.array([0.0, 0.0, 1.15])
    goal = np.array([rng.uniform(-0.12, 0.12), rng.uniform(*goal_y), rng.uniform(0.92, 0.98)])
    s = np.linspace(0, 1, T)[:, None]
    eef = home + s * (goal - home)
    pix = camera.project(eef)
    gripper = (s[:, 0] > 0.6).astype(float)
    images = np.zeros((T, camera.height, camera.width, 3), np.uint8)
    images[:] = (90, 110, 80)
    for t in range(T):
        _disk(images[t], camera.project(goal), camera.width / 16, (40, 60, 220))
        _disk(images[t], pix[t], camera.width / 24, (230, 40, 40))
    actions = np.concatenate([eef, gripper[:, None]], axis=1)
    return {"obs": {"agentview_rgb": images, "eef_pos": eef, "gripper": gripper, "eef_pixel": pix},
            "actions": actions, "camera": camera}


def write_demos(path: Path, n_demos: int = 2, T: int = 12, size: int = 64, seed: int = 0, goal_y=(-0.18, 0.18)) -> Path:
    from pxp.experiment.data import DemoWriter

    rng = np.random.default_rng(seed)
    cam = look_at_camera(size, size)
    with DemoWriter(path, config_hash=f"synthetic-{n_demos}-{T}-{size}-{seed}-{goal_y}", attrs={"generator": "synthetic"}) as w:
        for i in range(n_demos):
            w.write(i, synth_episode(rng, cam, T, goal_y), {"cell": i}, success=True)
        w.finish()
    return path


class Ctx:
    """The parts of the runner's StageContext that training uses."""

    def __init__(self, root: Path, registry, device: str = "cpu"):
        from collections import defaultdict
        from types import SimpleNamespace

        from pxp.core.contracts import DatasetConfig

        self.root, self.registry, self.device = Path(root), registry, device
        self.spec = SimpleNamespace(datasets=defaultdict(DatasetConfig))  # every dataset: recorded in the spec's scene
        self.messages: list[str] = []

    def log(self, msg: str) -> None:
        self.messages.append(msg)

    @contextlib.contextmanager
    def progress(self, description, total=None):
        class _Task:
            n = 0

            def advance(self, n=1):
                self.n += n

        yield _Task()

    def dataset_path(self, name: str) -> Path:
        return self.root / "data" / f"{name}.hdf5"

    def checkpoint_dir(self, name: str) -> Path:
        return Path(name) if "/" in name else self.root / "checkpoints" / name

    def create(self, kind, config, *args, **kwargs):
        return self.registry.create(kind, config, *args, **kwargs)

    def scene_config(self, **overrides):
        """The LIBERO scene's config (pydantic only, no simulator): its workspace box holds the synthetic demos."""
        from pxp.plugins.scenes.libero import LiberoSceneConfig

        return LiberoSceneConfig(**overrides)


SCENE_SIZE = 64


@pytest.fixture(scope="module")
def scene():
    """A real 64 px LIBERO scene shared by a test module (import timm before it renders: see the modules)."""
    from pxp.plugins.scenes.libero import LiberoSceneConfig, make_scene

    with make_scene(LiberoSceneConfig(image_size=SCENE_SIZE)) as s:
        yield s
