"""The LIBERO bowl→plate scene: real LIBERO/robosuite physics, pxp's own renderer, camera and executor.

Imported only by ``make_scene`` (never at plugin registration), because it pulls in mujoco,
robosuite and libero. ``MUJOCO_GL`` must be set before this module is imported (see ``_gl_setup``).
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np


def _gl_setup() -> None:
    """EGL unless the user chose otherwise; mujoco and robosuite read MUJOCO_GL at import time."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    # robosuite warns "No private macro file found!" on import; the logger has no level of its own.
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    # Importing triton (pulled in by timm/torchvision) after Mesa's llvmpipe has rendered segfaults the
    # process; importing it first is safe and cheap (~0.1 s). This matters when data generation runs
    # in-process (workers=1) and training follows in the same interpreter.
    try:
        import triton  # noqa: F401
    except ImportError:
        pass


_gl_setup()

import mujoco  # noqa: E402

from pxp.core.camera import Camera  # noqa: E402
from pxp.core.contracts import Scene  # noqa: E402

from pxp.plugins.scenes.libero.config import BOWL_XY as _BOWL_XY, PLATE_XY as _PLATE_XY  # noqa: E402
from pxp.plugins.scenes.libero.bddl import task_bddl  # noqa: E402

BOWL, PLATE = "akita_black_bowl_1", "plate_1"
BOWL_XY, PLATE_XY = np.array(_BOWL_XY), np.array(_PLATE_XY)
BOWL_REST_Z, PLATE_REST_Z = 0.8984, 0.9025  # body origins resting on the table (measured)
TABLE_Z = 0.900
ROBOT_PREFIXES = ("robot0_", "gripper0_", "mount0_")
HIDDEN_GROUP = 3  # robot visual geoms move here; the group is switched off when the robot is hidden


def orbit_pose(position, rot_world_from_cam, lookat, theta_deg: float, phi_deg: float):
    """Rotate a camera rigidly about ``lookat``: tilt its viewing axis by θ towards the image-plane
    direction at angle φ (0 = image up, 90 = image right). Returns (position, rotation)."""
    R0 = np.asarray(rot_world_from_cam, float).reshape(3, 3)
    p0 = np.asarray(position, float)
    back = (p0 - lookat) / np.linalg.norm(p0 - lookat)  # from look-at point towards the camera
    phi = np.deg2rad(phi_deg)
    tilt = np.cos(phi) * R0[:, 1] + np.sin(phi) * R0[:, 0]  # MuJoCo camera: x right, y up
    axis = np.cross(back, tilt)
    axis /= np.linalg.norm(axis)
    Rot = _axis_angle(axis, np.deg2rad(theta_deg))
    return lookat + Rot @ (p0 - lookat), Rot @ R0


def _axis_angle(axis, angle) -> np.ndarray:
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _rotation_error(R_ref, R_cur) -> np.ndarray:
    """Axis-angle (world frame) of the rotation taking R_cur to R_ref."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, (R_ref @ R_cur.T).flatten())
    v = np.zeros(3)
    mujoco.mju_quat2Vel(v, q, 1.0)
    return v


class LiberoScene(Scene):
    """See docs/scene.md. The robot moves only through :meth:`servo`."""

    can_set_view = True  # set_view moves the camera without a reset

    def __init__(self, cfg):
        with warnings.catch_warnings():  # robosuite's import-time logger.warn() is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            from libero.libero.envs.env_wrapper import ControlEnv

        self.cfg = cfg
        self._renderer = None
        self._closed = False
        self._grasped, self._bowl_rest_z = False, 0.0  # episode state, set by reset()
        self._env = ControlEnv(
            bddl_file_name=str(task_bddl(cfg.clutter, _cache_dir())), controller="OSC_POSE",
            use_camera_obs=False, has_offscreen_renderer=False, has_renderer=False,
            hard_reset=False, ignore_done=True, camera_names=[], control_freq=20,
        )
        self._guard_env_step()
        inner = self._env.env
        self._substeps = int(round(inner.control_timestep / inner.model_timestep))
        self._env.reset()  # builds the sim; pxp's own reset places the objects
        self._bind_model()
        self._offset, self._view, self._seed = (0.0, 0.0), None, cfg.seed
        self._home_rot = self._eef_rot().copy()  # canonical top-down orientation, held by servo

    # -- construction -------------------------------------------------------------------------
    def _guard_env_step(self) -> None:
        """Make Scene.servo the only way to step the robot: env.step raises anywhere else."""
        inner = self._env.env
        raw_step = inner.step
        self._in_servo = False

        def guarded_step(action):
            if not self._in_servo:
                raise RuntimeError("the robot moves only through Scene.servo (no other path to the robot)")
            return raw_step(action)

        inner.step = guarded_step
        self._raw_step = raw_step  # env.step itself: the reference the control step is tested against

    def _control_step(self, action: np.ndarray) -> None:
        """One control step: robosuite's own OSC and gripper controllers, then a physics substep, as
        many times as ``env.step`` does. Leaves out what pxp never reads (a second ``mj_forward`` per
        substep, whose state the controller's own ``mj_forward`` recomputes; observables; reward; BDDL
        success checks): the same physics bit for bit (tests/test_scene.py), 1.24 × as fast
        (benchmarks/bench_scene.py)."""
        env = self._env.env
        robot = env.robots[0]
        for i in range(self._substeps):
            robot.control(action, policy_step=i == 0)
            env.sim.step()
        env.timestep += 1
        env.cur_time += env.control_timestep

    def _id(self, kind, name: str) -> int:
        i = mujoco.mj_name2id(self.model, kind, name)
        if i < 0:
            raise RuntimeError(f"LIBERO model has no {kind.name[6:].lower()} {name!r} (changed LIBERO version?)")
        return i

    def _qadr(self, joint: str) -> int:
        return int(self.model.jnt_qposadr[self._id(mujoco.mjtObj.mjOBJ_JOINT, joint)])

    def _bind_model(self) -> None:
        self.model, self.data = self._env.sim.model._model, self._env.sim.data._data
        m, obj = self.model, mujoco.mjtObj
        self._cam_id = self._id(obj.mjOBJ_CAMERA, "agentview")
        self._cam_default = (m.cam_pos[self._cam_id].copy(), m.cam_quat[self._cam_id].copy())
        self._site = self._id(obj.mjOBJ_SITE, "gripper0_grip_site")
        self._bowl_body = self._id(obj.mjOBJ_BODY, BOWL + "_main")
        self._plate_body = self._id(obj.mjOBJ_BODY, PLATE + "_main")
        self._bowl_qadr, self._plate_qadr = self._qadr(BOWL + "_joint0"), self._qadr(PLATE + "_joint0")
        self._arm_qadr = np.array([self._qadr(f"robot0_joint{i}") for i in range(1, 8)])
        self._finger_qadr = np.array([self._qadr(f"gripper0_finger_joint{i}") for i in (1, 2)])
        body = [mujoco.mj_id2name(m, obj.mjOBJ_BODY, m.geom_bodyid[g]) or "" for g in range(m.ngeom)]
        self.robot_geoms = np.array([g for g, b in enumerate(body) if b.startswith(ROBOT_PREFIXES)])
        self._gripper_geoms = np.array([g for g, b in enumerate(body) if b.startswith("gripper0_")])
        self._bowl_geoms = np.flatnonzero(m.geom_bodyid == self._bowl_body)
        self._setup_rendering()

    def _setup_rendering(self) -> None:
        m = self.model
        # Hide by group, not alpha: physics ignores groups, and one option flag switches the robot.
        vis = self.robot_geoms[m.geom_group[self.robot_geoms] == 1]
        m.geom_group[vis] = HIDDEN_GROUP
        self.default_offsamples = int(m.vis.quality.offsamples)
        m.vis.quality.offsamples = 0  # no MSAA: ≈ 3x faster on llvmpipe (≈ 200 → 70 ms a 448² frame, measured)
        size = self.cfg.image_size
        m.vis.global_.offwidth = max(m.vis.global_.offwidth, size)
        m.vis.global_.offheight = max(m.vis.global_.offheight, size)
        self._opts = {}
        for shown in (True, False):
            opt = mujoco.MjvOption()
            opt.geomgroup[:] = 0
            opt.geomgroup[1] = opt.geomgroup[2] = 1  # visual meshes; group 0 is robosuite's collision meshes
            opt.geomgroup[HIDDEN_GROUP] = int(shown)
            self._opts[shown] = opt

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the renderer (its EGL context) before the env; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # last resort; explicit close() is the contract
        try:
            self.close()
        except Exception:
            pass

    # -- state --------------------------------------------------------------------------------
    def _eef_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._site].copy()

    def _eef_rot(self) -> np.ndarray:
        return self.data.site_xmat[self._site].reshape(3, 3)

    def _gripper_closure(self) -> float:
        """0 = fingers fully open (0.08 m apart), 1 = closed."""
        q = self.data.qpos[self._finger_qadr]
        return float(np.clip(1.0 - (q[0] - q[1]) / 0.08, 0.0, 1.0))

    def _bowl_held(self) -> bool:
        c = self.data.contact[: self.data.ncon]
        g1, g2 = c.geom1, c.geom2
        bowl = np.isin(g1, self._bowl_geoms) & np.isin(g2, self._gripper_geoms)
        bowl |= np.isin(g2, self._bowl_geoms) & np.isin(g1, self._gripper_geoms)
        return bool(bowl.any())

    @property
    def bowl_pos(self) -> np.ndarray:
        return self.data.xpos[self._bowl_body].copy()

    @property
    def plate_pos(self) -> np.ndarray:
        return self.data.xpos[self._plate_body].copy()

    @property
    def bowl_rest_z(self) -> float:
        """The bowl's height after this episode's settling (the GRASP reference)."""
        return self._bowl_rest_z

    offset = property(lambda self: self._offset, doc="(dx, dy) of this episode")
    view = property(lambda self: self._view, doc="(theta, phi) of this episode, None = agentview")
    seed = property(lambda self: self._seed, doc="seed of this episode")

    @property
    def offset_extent(self):
        """((dx_min, dx_max), (dy_min, dy_max)) of the object-offset grid."""
        return self.cfg.offset_extent()

    def grid_offsets(self, rows: int = 16, cols: int = 16) -> np.ndarray:
        """(rows*cols, 2) offsets, row-major: rows step dx (depth), columns step dy (left→right)."""
        (x0, x1), (y0, y1) = self.offset_extent
        dx, dy = np.meshgrid(np.linspace(x0, x1, rows), np.linspace(y0, y1, cols), indexing="ij")
        return np.stack([dx.ravel(), dy.ravel()], axis=1)

    # -- reset --------------------------------------------------------------------------------
    def reset(self, offset=None, view=None, seed=None) -> dict:
        """New episode: objects at nominal + offset (+ jitter), robot at home (+ noise), camera set.
        None = the config's value (its ``view`` None = the default agentview; ``(0, 0)`` is the same)."""
        offset = tuple(float(v) for v in (self.cfg.offset if offset is None else offset))
        view = self.cfg.view if view is None else tuple(float(v) for v in view)
        self.cfg.check_offset(*offset)
        if view is not None:
            self.cfg.check_view(*view)
        self._offset = offset
        self._seed = self.cfg.seed if seed is None else int(seed)
        rng = np.random.default_rng(self._seed)
        # LIBERO samples fixture/distractor poses from the global numpy RNG: seed it, then restore it.
        saved = np.random.get_state()
        np.random.seed(self._seed)
        try:
            self._env.reset()
        finally:
            np.random.set_state(saved)
        # robosuite's soft reset keeps the gripper's smoothed command from the last episode; start every
        # episode from the same one, so that no episode depends on the one before it in the same process.
        self._env.env.robots[0].gripper.current_action[:] = 0.0
        self._place_objects(rng)
        self._noise_robot(rng)
        self.set_view(view)
        self.servo(self._eef_pos(), 0.0, max_steps=self.cfg.settle_steps, tol=0.0)  # let objects settle
        self._bowl_rest_z = float(self.bowl_pos[2])
        self._grasped = False
        return self.observe()

    def _place_objects(self, rng) -> None:
        d, off, j = self.data, np.array(self._offset), self.cfg.object_jitter
        for adr, xy, z in ((self._bowl_qadr, BOWL_XY, BOWL_REST_Z), (self._plate_qadr, PLATE_XY, PLATE_REST_Z)):
            d.qpos[adr: adr + 2] = xy + off + rng.uniform(-j, j, 2)
            d.qpos[adr + 2] = z + 0.001  # 1 mm above rest: settles without a jump
            d.qpos[adr + 3: adr + 7] = (1.0, 0.0, 0.0, 0.0)
        d.qvel[:] = 0.0
        mujoco.mj_forward(self.model, d)

    def _noise_robot(self, rng) -> None:
        if self.cfg.robot_noise > 0:
            self.data.qpos[self._arm_qadr] += rng.normal(0.0, self.cfg.robot_noise, 7)
            mujoco.mj_forward(self.model, self.data)

    # -- camera -------------------------------------------------------------------------------
    def _set_camera(self) -> None:
        m, i = self.model, self._cam_id
        m.cam_pos[i], m.cam_quat[i] = self._cam_default
        mujoco.mj_forward(m, self.data)
        if self._view is not None and self._view[0] > 0:
            pos, rot = orbit_pose(self.data.cam_xpos[i], self.data.cam_xmat[i], self.lookat, *self._view)
            m.cam_pos[i] = pos  # agentview hangs off the world body, so model pose = world pose
            mujoco.mju_mat2Quat(m.cam_quat[i], rot.flatten())
            mujoco.mj_forward(m, self.data)
        size = self.cfg.image_size
        self._camera = Camera.from_fovy(m.cam_fovy[i], size, size, self.data.cam_xpos[i], self.data.cam_xmat[i])

    def set_view(self, view) -> Camera:
        """Move the camera (None = agentview, or (theta, phi)) without touching the episode."""
        self._view = None if view is None else tuple(float(v) for v in view)
        if self._view is not None:
            self.cfg.check_view(*self._view)
        self._set_camera()
        return self._camera

    @property
    def lookat(self) -> np.ndarray:
        """Where the default agentview's optical axis meets the table top: the orbit centre."""
        pos, quat = self._cam_default
        R = np.zeros(9)
        mujoco.mju_quat2Mat(R, quat)
        forward = -R.reshape(3, 3)[:, 2]
        return pos + (TABLE_Z - pos[2]) / forward[2] * forward

    @property
    def camera(self) -> Camera:
        return self._camera

    # -- rendering ----------------------------------------------------------------------------
    def _get_renderer(self):
        if self._renderer is None:  # lazy: scenes that never render (grid measurement) need no GL
            self._renderer = mujoco.Renderer(self.model, self.cfg.image_size, self.cfg.image_size)
        return self._renderer

    def render(self, robot: str | None = None, markers=()) -> np.ndarray:
        """(H, W, 3) uint8, top-row-first. ``robot``: shown | hidden | circle (default: cfg.robot).
        ``markers``: (xyz, rgba, radius) spheres drawn into the 3D scene (debugging, tests)."""
        mode = robot or self.cfg.robot
        r = self._get_renderer()
        r.update_scene(self.data, camera=self._cam_id, scene_option=self._opts[mode == "shown"])
        for xyz, rgba, radius in markers:
            scn = r.scene
            mujoco.mjv_initGeom(scn.geoms[scn.ngeom], mujoco.mjtGeom.mjGEOM_SPHERE, np.array([radius, 0, 0]),
                                np.asarray(xyz, float), np.eye(3).flatten(), np.asarray(rgba, np.float32))
            scn.geoms[scn.ngeom].emission = 1.0  # flat colour: easy to find in the image
            scn.ngeom += 1
        img = r.render()
        if mode == "circle":
            img = draw_disc(img, self._camera.project(self._eef_pos()), self.cfg.circle_radius, self.cfg.circle_color)
        return img

    def render_segmentation(self, robot: str | None = None) -> np.ndarray:
        """(H, W) geom id per pixel (-1 = background), with the same robot visibility as ``render``."""
        r = self._get_renderer()
        r.update_scene(self.data, camera=self._cam_id, scene_option=self._opts[(robot or self.cfg.robot) == "shown"])
        r.enable_segmentation_rendering()
        try:
            seg = r.render()
        finally:
            r.disable_segmentation_rendering()
        return np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)

    # -- observation and stages ---------------------------------------------------------------
    @property
    def outcomes(self):
        """PLACE / GRASP / MISS (see outcomes.py)."""
        return self.cfg.outcomes

    def tracker(self, obs: dict):
        """The rollout's bookkeeping for this scene's diagnostics (first failure, distances)."""
        from pxp.plugins.scenes.libero.outcomes import BowlTracker

        return BowlTracker(obs)

    def observe(self, image: bool = True) -> dict:
        eef = self._eef_pos()
        obs = {
            "eef_pos": eef, "eef_pixel": self._camera.project(eef), "gripper": self._gripper_closure(),
            "bowl_pos": self.bowl_pos, "plate_pos": self.plate_pos, "stage": self.stage(),
        }
        if image:
            obs["image"] = self.render()
        return obs

    def stage(self) -> str:
        """The stage now: PLACE (bowl resting on the plate, released), GRASP (bowl lifted while held), MISS."""
        c, bowl, plate = self.cfg, self.bowl_pos, self.plate_pos
        held = self._bowl_held()
        if (not held and np.linalg.norm(bowl[:2] - plate[:2]) < c.place_radius
                and abs(bowl[2] - plate[2] - c.bowl_on_plate_dz) < c.place_height_tol):
            return "PLACE"
        if held and bowl[2] - self._bowl_rest_z > c.lift_threshold:
            return "GRASP"
        return "MISS"

    def outcome(self) -> str:
        """Episode result: PLACE if placed now, else GRASP if the bowl was ever lifted while held, else MISS."""
        now = self.stage()
        return "PLACE" if now == "PLACE" else ("GRASP" if self._grasped else "MISS")

    def libero_success(self) -> bool:
        """LIBERO's own goal check (On bowl plate), for comparison with pxp's stage detection."""
        return bool(self._env.check_success())

    # -- the executor -------------------------------------------------------------------------
    def servo(self, target_xyz, gripper: float, max_steps: int | None = None, tol: float | None = None,
              on_step=None, image: bool = True) -> dict:
        """THE executor ("teleport servo"): closed-loop OSC position control towards ``target_xyz``
        with the home orientation held and the gripper commanded (0 open .. 1 closed; ≥ 0.5 closes).
        Takes at least one control step and at most ``max_steps``; stops once within ``tol`` metres.
        ``on_step(obs)`` is called after every control step (``image=False``: obs without the image).
        Returns reached, steps, error."""
        target = np.asarray(target_xyz, dtype=float).reshape(-1)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"servo target must be a finite 3-vector, got {target_xyz!r}")
        if not 0.0 <= float(gripper) <= 1.0:
            raise ValueError(f"servo gripper command must be in [0, 1], got {gripper!r}")
        c = self.cfg
        max_steps = c.servo_max_steps if max_steps is None else int(max_steps)
        tol = c.servo_tol if tol is None else float(tol)
        grip = 1.0 if gripper >= 0.5 else -1.0  # robosuite: -1 opens, +1 closes
        steps, err = 0, float(np.linalg.norm(target - self._eef_pos()))
        self._in_servo = True
        try:
            while steps < max(1, max_steps):
                pos = np.clip(c.servo_gain * (target - self._eef_pos()), -1.0, 1.0)
                # OSC_POSE's rotation input is a world-frame axis-angle delta, 0.5 rad per unit action
                rot = np.clip(_rotation_error(self._home_rot, self._eef_rot()) / 0.5, -1.0, 1.0)
                self._control_step(np.concatenate([pos, rot, [grip]]))
                steps += 1
                err = float(np.linalg.norm(target - self._eef_pos()))
                self._grasped |= self.stage() == "GRASP"  # outcome() needs "ever lifted while held"
                if on_step is not None:
                    on_step(self.observe(image=image))
                if err < tol:
                    break
        finally:
            self._in_servo = False
        return {"reached": err < tol, "steps": steps, "error": err}

    # -- expert -------------------------------------------------------------------------------
    def run_expert(self, record: bool = True, skip_close: bool = False, stop_after: str | None = None) -> dict:
        """Scripted expert from the current reset state, executed through :meth:`servo`."""
        from pxp.plugins.scenes.libero.expert import run_expert

        return run_expert(self, record=record, skip_close=skip_close, stop_after=stop_after)

    def pregrasp(self, offset=None, view=None, seed=None) -> dict:
        """The probe's defined state (``pxp probe``, docs/evaluation.md): reset, then the scripted expert
        drives the arm to its pre-grasp pose above the bowl (the end of its approach, the moment before it
        descends). Returns ``obs`` (with the rendered image), ``steps`` (control steps since the reset),
        ``grasps`` ((k, 3) grip-site points that grasp the bowl: the expert's own first, then the rim's
        other side) and ``object`` (the bowl's position)."""
        from pxp.plugins.scenes.libero.expert import rim_grasps

        self.reset(offset=offset, view=view, seed=seed)
        steps = self.run_expert(record=False, stop_after="approach")["steps"]
        return {"obs": self.observe(), "steps": int(steps), "grasps": rim_grasps(self.bowl_pos, self.cfg.grasp_rim),
                "object": self.bowl_pos}


def draw_disc(img: np.ndarray, center_uv, radius: float, color) -> np.ndarray:
    """Filled disc: every pixel whose centre (i+.5, j+.5) lies within ``radius`` px of ``center_uv``."""
    out = img.copy()
    if not np.all(np.isfinite(center_uv)):
        return out
    h, w = img.shape[:2]
    jj, ii = np.mgrid[0:h, 0:w]
    inside = (ii + 0.5 - center_uv[0]) ** 2 + (jj + 0.5 - center_uv[1]) ** 2 <= radius**2
    out[inside] = np.asarray(color, np.uint8)
    return out


def _cache_dir() -> Path:
    """Where the generated clean BDDL lives: $PXP_CACHE_DIR, else $XDG_CACHE_HOME/pxp, else ~/.cache/pxp."""
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    root = os.environ.get("PXP_CACHE_DIR") or os.path.join(xdg, "pxp")
    path = Path(root) / "scenes"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: fall back to a temp dir
        path = Path(tempfile.gettempdir()) / "pxp-scenes"
        path.mkdir(parents=True, exist_ok=True)
    return path
