"""LIBERO bowl→plate scene on the real simulator (issue 3). One env is shared by the whole session."""
import os
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from pxp.plugins.scenes.libero import LiberoSceneConfig, make_scene

SIZE = 128
ORBIT = (25.0, 30.0)


@pytest.fixture(scope="session")
def scene():
    os.environ.setdefault("MUJOCO_GL", "egl")
    pytest.importorskip("libero")
    with make_scene(LiberoSceneConfig(image_size=SIZE)) as s:
        yield s


# -- config (no simulator) ------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    ({"view": (-1.0, 0.0)}, "theta"),
    ({"offset": (0.0, 0.6)}, "off the table"),
    ({"offset": (-0.6, 0.0)}, "off the table"),
    ({"clutter": "messy"}, "unknown clutter"),
    ({"robot": "invisible"}, "unknown robot mode"),
    ({"grasp_rim": "left"}, "plus_y"),
    ({"colour": 1}, "Extra inputs"),
])
def test_config_rejects_bad_values_clearly(bad, message):
    with pytest.raises(ValidationError, match=message):
        LiberoSceneConfig(**bad)


@pytest.mark.parametrize("bowl_y, rule, grasp_y", [
    (0.2, "plus_y", 0.247), (-0.2, "plus_y", -0.153),  # one side everywhere: one grasp mode
    (0.2, "nearer_y0", 0.153), (-0.2, "nearer_y0", -0.153),  # switches at y = 0
])
def test_expert_grasps_the_rim_side_its_rule_names(bowl_y, rule, grasp_y):
    from pxp.plugins.scenes.libero.expert import GRASP_Z, rim_grasps

    first, other = rim_grasps(np.array([-0.1, bowl_y, 0.9]), rule)
    assert first == pytest.approx([-0.1, grasp_y, GRASP_Z]) and other[1] == pytest.approx(2 * bowl_y - grasp_y)


def test_plugin_import_is_cheap():
    code = ("import sys, pxp.plugins.scenes.libero as m; m.LiberoSceneConfig(); "
            "print([k for k in ('mujoco', 'libero', 'robosuite', 'torch', 'timm') if k in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- camera geometry ------------------------------------------------------------------------------
def _marker_centroid(scene, xyz):
    """Centroid (u, v) of a small emissive green sphere rendered at ``xyz`` with the robot hidden."""
    img = scene.render(robot="hidden", markers=[(xyz, (0.0, 1.0, 0.0, 1.0), 0.015)])
    mask = (img[..., 1] > 200) & (img[..., 0] < 60) & (img[..., 2] < 60)
    assert mask.sum() > 5, "marker not visible"
    jj, ii = np.nonzero(mask)
    return np.array([ii.mean() + 0.5, jj.mean() + 0.5])  # pixel centres


@pytest.mark.parametrize("view", [None, ORBIT])
def test_projected_eef_matches_rendered_marker(scene, view):
    obs = scene.reset(view=view or (0.0, 0.0))
    points = [obs["eef_pos"], obs["bowl_pos"] + [0, 0, 0.06], scene.lookat + [0.1, -0.2, 0.02]]
    errs = [np.linalg.norm(scene.camera.project(p) - _marker_centroid(scene, p)) for p in points]
    assert max(errs) < 1.5, f"projection off by {errs} px"
    assert np.mean(errs) < 0.35, f"systematic offset {errs}"  # a half-pixel convention slip fails here
    assert np.allclose(obs["eef_pixel"], scene.camera.project(obs["eef_pos"]))


@pytest.mark.parametrize("view", [(0.0, 0.0), ORBIT, (10.0, 200.0)])
def test_project_unproject_round_trip(scene, view):
    scene.reset(view=view)
    cam = scene.camera
    rng = np.random.default_rng(0)
    xyz = np.c_[rng.uniform(-0.4, 0.2, 50), rng.uniform(-0.4, 0.4, 50), rng.uniform(0.9, 1.2, 50)]
    back = cam.unproject(cam.project(xyz), xyz[:, 2])
    assert np.abs(back - xyz).max() < 1e-6


@pytest.mark.parametrize("theta, phi", [(25.0, 0.0), (25.0, 90.0), (10.0, 217.0)])
def test_orbit_is_a_rigid_rotation_about_the_lookat_point(scene, theta, phi):
    scene.reset(view=(0.0, 0.0))
    default = scene.camera
    scene.reset(view=(theta, phi))
    cam = scene.camera
    centre = np.array([SIZE / 2, SIZE / 2])
    assert np.allclose(cam.project(scene.lookat), centre, atol=1e-6)  # still looks at the same point
    d0, d1 = default.position - scene.lookat, cam.position - scene.lookat
    assert np.isclose(np.linalg.norm(d0), np.linalg.norm(d1), atol=1e-9)  # same distance
    cos = d0 @ d1 / np.linalg.norm(d0) / np.linalg.norm(d1)
    assert np.isclose(np.degrees(np.arccos(np.clip(cos, -1, 1))), theta, atol=1e-6)  # tilted by θ
    # φ = 0 tilts towards the default image's "up", φ = 90 towards its "right"
    shift = default.extrinsics[:3, :3] @ (d1 - d0)  # in default OpenCV camera axes (x right, y down)
    direction = np.degrees(np.arctan2(shift[0], -shift[1]))
    assert abs((direction - phi + 180) % 360 - 180) < 1e-6


# -- executor and expert ---------------------------------------------------------------------------
def test_servo_is_the_only_path_to_the_robot(scene):
    scene.reset()
    with pytest.raises(RuntimeError, match="only through Scene.servo"):
        scene._env.step(np.zeros(7))
    with pytest.raises(RuntimeError, match="only through Scene.servo"):
        scene._env.env.step(np.zeros(7))
    assert not [n for n in dir(scene) if n in ("step", "act", "apply_action", "step_open_loop")]
    for bad in ([np.nan, 0, 1], [0, 1]):
        with pytest.raises(ValueError, match="finite 3-vector"):
            scene.servo(bad, 0.0)
    with pytest.raises(ValueError, match="gripper"):
        scene.servo(scene.observe(image=False)["eef_pos"], 2.0)


def test_control_step_is_env_steps_physics_bit_for_bit(scene):
    """servo's control step leaves out env.step's bookkeeping, never its physics: the same actions from
    the same reset give exactly the same joint positions and velocities (arm, gripper, objects), whatever
    ran before in the same process (the reset does not inherit the last episode's gripper command)."""
    actions = [np.array([0.6, -0.4, -0.5, 0.02, -0.01, 0.0, -1.0])] * 8 + [np.array([0.0, 0.3, 0.2, 0, 0, 0.05, 1.0])] * 8

    def run(step, gripper_command_before=(0.0, 0.0)):
        scene._env.env.robots[0].gripper.current_action[:] = gripper_command_before  # as a last episode left it
        scene.reset(offset=(0.05, -0.1), seed=3)
        scene._in_servo = True
        try:
            for a in actions:
                step(a)
        finally:
            scene._in_servo = False
        return np.concatenate([scene.data.qpos, scene.data.qvel])

    fast, reference = run(scene._control_step), run(scene._raw_step)
    again = run(scene._control_step, gripper_command_before=(-1.0, 1.0))  # after a closed gripper
    assert np.array_equal(fast, reference) and np.array_equal(fast, again)
    assert np.abs(fast - run(lambda a: None)).max() > 0.1  # the check would see a step that did nothing


def test_servo_reaches_a_target_and_holds_orientation(scene):
    obs = scene.reset()
    rot0 = scene._home_rot.copy()
    target = obs["eef_pos"] + [0.08, -0.1, -0.05]
    seen = []
    res = scene.servo(target, 0.0, on_step=seen.append, image=False)
    assert res["reached"] and res["error"] < scene.cfg.servo_tol and res["steps"] == len(seen) <= 80
    assert np.linalg.norm(seen[-1]["eef_pos"] - target) < scene.cfg.servo_tol
    angle = np.degrees(np.arccos(np.clip((np.trace(rot0.T @ scene._eef_rot()) - 1) / 2, -1, 1)))
    assert angle < 2.0, f"gripper rotated by {angle:.1f} deg"
    res = scene.servo(target + [0, 0, 0.3], 0.0, max_steps=3)  # bounded: stops after max_steps
    assert res["steps"] == 3 and not res["reached"]


def test_expert_goes_through_servo(scene, monkeypatch):
    scene.reset()
    calls = []
    real = scene.servo
    monkeypatch.setattr(scene, "servo", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    ep = scene.run_expert(record=False, stop_after="descend")
    assert len(calls) == 2 and sum(c["steps"] for c in calls) == ep["steps"] > 0


@pytest.mark.parametrize("corner", [(0, 0), (0, -1), (-1, 0), (-1, -1)])
def test_expert_places_at_grid_corners(scene, corner):
    grid = scene.grid_offsets(16, 16).reshape(16, 16, 2)
    scene.reset(offset=grid[corner])
    ep = scene.run_expert(record=False)
    assert ep["outcome"] == "PLACE" and scene.outcome() == "PLACE" and ep["libero_success"]
    assert ep["stage"][-1] == "PLACE" and "GRASP" in ep["stage"]


def test_expert_without_close_misses_and_stopped_after_lift_grasps(scene):
    scene.reset()
    assert scene.run_expert(record=False, skip_close=True)["outcome"] == "MISS"
    scene.reset()
    ep = scene.run_expert(record=False, stop_after="lift")
    assert ep["outcome"] == "GRASP" and ep["phase"][-1] == "lift"
    assert ep["bowl_pos"][-1, 2] - scene.bowl_rest_z > scene.cfg.lift_threshold


def test_recorded_episode_is_consistent(scene):
    scene.reset(offset=(-0.1, -0.2), view=ORBIT, seed=3)
    ep = scene.run_expert(record=True, stop_after="descend")
    T = ep["steps"] + 1  # frame 0 is the reset state
    assert ep["image"].shape == (T, SIZE, SIZE, 3) and ep["image"].dtype == np.uint8
    for key, shape in [("eef_pos", (T, 3)), ("eef_pixel", (T, 2)), ("gripper", (T,)), ("bowl_pos", (T, 3)),
                       ("plate_pos", (T, 3)), ("stage", (T,)), ("phase", (T,)), ("action", (T, 4))]:
        assert ep[key].shape == shape, key
    assert np.allclose(ep["eef_pixel"], scene.camera.project(ep["eef_pos"]))
    assert ep["view"] == ORBIT and ep["offset"] == (-0.1, -0.2)
    assert np.allclose(ep["bowl_pos"][0, :2], np.array([-0.165, 0.0]), atol=0.006)  # nominal + offset ± jitter


def test_reset_is_deterministic_per_seed(scene):
    a = scene.reset(seed=5)
    b = scene.reset(seed=5)
    c = scene.reset(seed=6)
    assert np.array_equal(a["bowl_pos"], b["bowl_pos"]) and np.array_equal(a["eef_pos"], b["eef_pos"])
    assert not np.allclose(a["bowl_pos"], c["bowl_pos"])


# -- rendering modes ------------------------------------------------------------------------------
def test_circle_overlay_hides_robot_and_draws_disc(scene):
    obs = scene.reset()
    assert np.isin(scene.render_segmentation(robot="shown"), scene.robot_geoms).sum() > 100  # robot is visible
    assert not np.isin(scene.render_segmentation(robot="circle"), scene.robot_geoms).any()
    hidden, circle = scene.render(robot="hidden"), scene.render(robot="circle")
    orange = np.all(circle == scene.cfg.circle_color, axis=-1)
    jj, ii = np.nonzero(orange)
    r = scene.cfg.circle_radius
    assert abs(orange.sum() - np.pi * r * r) < 2 * np.pi * r  # a filled disc of the configured radius
    assert np.linalg.norm([ii.mean() + 0.5 - obs["eef_pixel"][0], jj.mean() + 0.5 - obs["eef_pixel"][1]]) < 0.5
    assert np.array_equal(circle[~orange], hidden[~orange])  # elsewhere: the robot-hidden image


# -- preview command ------------------------------------------------------------------------------
def test_preview_command_writes_images(tmp_path):
    import imageio.v3 as iio
    from click.testing import CliRunner

    from pxp.plugins.scenes.libero.preview import scene_group

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nscene:\n  type: libero_bowl_plate\n  image_size: 64\ntrain: {anything: 1}\n")
    res = CliRunner().invoke(scene_group, ["preview", str(spec), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"clean.png", "distractors.png", "robot_hidden.png", "circle_overlay.png",
            "orbit_theta25_phi0.png", "orbit_theta25_phi90.png"} <= names
    img = {n: iio.imread(tmp_path / "out" / n) for n in names}
    assert all(a.shape == (64, 64, 3) for a in img.values())
    assert not np.array_equal(img["clean.png"], img["distractors.png"])
    assert np.all(img["circle_overlay.png"] == (255, 140, 0), axis=-1).sum() > 50
    bad = spec.with_name("bad.yaml")
    bad.write_text("scene:\n  clutter: messy\n")
    res = CliRunner().invoke(scene_group, ["preview", str(bad), "--out", str(tmp_path / "o2")])
    assert res.exit_code != 0 and "unknown clutter" in res.output
