"""The rollout engine: one closed-loop episode of a policy in a scene.

    obs = scene.reset(offset, view, seed)
    loop: policy.predict(image, state, camera) → (T, 4) targets
          → scene.servo(target_xyz, gripper, ...) for the first ``replan_every`` targets,
            each for exactly ``steps_per_target`` control steps (the demos' target_stride)
          → stop at the scene's success outcome or after ``max_steps`` control steps
    outcome = scene.outcome()

``scene.servo`` is the ONLY path from a prediction to the robot, and :func:`_execute` is the only
place in pxp that calls it. The policy never receives the scene: it gets a copy of the image, a
fresh state dict of copies and a copy of the camera, so it cannot step, teleport or replay
anything on its own. (An earlier public PARA-vs-ACT experiment had one policy silently fall through
to open-loop stepping; ``tests/test_rollout.py`` checks that both built-in policies go through here.)
A malformed prediction raises :class:`PredictionError` instead of being "repaired".
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from pxp.core.camera import Camera
from pxp.core.contracts import RolloutPolicy

class PredictionError(ValueError):
    """A policy returned something that is not a (T, 4) array of finite targets."""


def rollout(
    scene,
    policy,
    *,
    offset=(0.0, 0.0),
    view=None,
    seed: int = 0,
    max_steps: int = 600,
    replan_every: int | None = None,
    steps_per_target: int | None = None,
    trained_stride: int | None = None,
    tol: float = 0.0,
    stop_when_placed: bool = True,
    record_frames: bool = False,
    frame_every: int = 2,
    meta: dict | None = None,
) -> dict:
    """Run one episode; return the episode dict (see docs/evaluation.md).

    ``replan_every``: how many of the predicted targets to execute before predicting again (None =
    the whole predicted chunk, 1 =
    re-predict after every target). ``steps_per_target``: the servo's step budget per target; when
    None, the policy's own ``target_stride`` attribute, else ``trained_stride`` (the frames between
    the targets it was trained on), else 4. Each target is servoed for exactly that many control
    steps, as far apart as the demos' targets were: ``tol`` = 0 never stops early on "reached"
    (stopping early cut the demos' 12-step grasp and 10-step release to one step each). The gripper
    command of a target is applied while moving to it, which is what the label means: the command of
    the control step that arrived at the target frame (pxp.experiment.data).
    ``max_steps`` bounds the episode's control steps. ``record_frames`` keeps every ``frame_every``-th image in
    ``episode["frames"]`` (uint8 arrays, for a video; not JSON) and the stage shown on each in
    ``episode["frame_stages"]``.
    """
    if (replan_every is not None and replan_every < 1) or max_steps < 1:
        raise ValueError("replan_every and max_steps must be >= 1")
    if not isinstance(policy, RolloutPolicy):
        raise TypeError(f"{type(policy).__name__} is not a pxp.core.contracts.RolloutPolicy (derive from it)")
    budget = int(steps_per_target or policy.target_stride or trained_stride or 4)
    t0 = time.perf_counter()
    obs = scene.reset(offset=tuple(offset), view=None if view is None else tuple(view), seed=int(seed))
    policy.reset()  # per-episode state (e.g. the expert's plan pointer); never sees the scene
    tracker = _Recorder(scene, obs, record_frames, frame_every)
    success = scene.outcomes.success
    steps, predictions = 0, 0
    while steps < max_steps:
        targets = predict_targets(policy, obs, scene.camera)
        predictions += 1
        for target in targets[:replan_every or len(targets)]:
            steps += _execute(scene, target, min(budget, max_steps - steps), tol, tracker)
            tracker.update(scene.observe(image=False))
            if steps >= max_steps:
                break
        if stop_when_placed and scene.outcome() == success:
            break  # e.g. resting on the target and released: the scene's success is final
        obs = scene.observe()
    outcome = scene.outcome()
    tracker.finish(scene.observe(image=False))
    episode = {
        **(meta or {}),
        "offset": [float(x) for x in offset],
        "view": None if view is None else [float(x) for x in view],
        "seed": int(seed),
        "outcome": outcome,
        "steps": int(steps),
        "error": None,
        "diagnostics": {**tracker.diagnostics(outcome), "predictions": predictions,
                        "seconds": round(time.perf_counter() - t0, 3)},
    }
    if record_frames:
        episode["frames"], episode["frame_stages"] = tracker.frames, tracker.stages
    return episode


# ----------------------------------------------------------------------------- the two halves

def predict_targets(policy, obs: dict, camera: Camera) -> np.ndarray:
    """Ask the policy with copies only: whatever it does to them cannot reach the simulator."""
    image = np.array(obs["image"], dtype=np.uint8, copy=True)  # writable: torch warns on read-only arrays
    state = {
        "eef_pos": np.array(obs["eef_pos"], dtype=float),
        "eef_pixel": np.array(obs["eef_pixel"], dtype=float),
        "gripper": float(obs["gripper"]),
    }
    out = policy.predict(image, state, Camera.from_dict(camera.to_dict()))
    return _validate(out, policy)


def _validate(out: Any, policy) -> np.ndarray:
    try:
        arr = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PredictionError(f"{type(policy).__name__}.predict returned {type(out).__name__}, not an array") from exc
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] < 1:
        raise PredictionError(f"{type(policy).__name__}.predict returned shape {arr.shape}; expected (T, 4)")
    if not np.all(np.isfinite(arr)):
        raise PredictionError(f"{type(policy).__name__}.predict returned non-finite targets")
    return arr


def _execute(scene, target: np.ndarray, max_steps: int, tol, tracker: "_Recorder") -> int:
    """THE executor call: the only place pxp moves a robot for a policy. Returns control steps used.

    Per-step observations are only requested when a video is recorded, and without the image: the
    recorder renders only the frames it keeps (a frame costs 25–70 ms on the CPU, more than a step).
    """
    gripper = float(np.clip(target[3], 0.0, 1.0))
    tracker.command(gripper, float(target[2]))
    result = scene.servo(np.array(target[:3], dtype=float), gripper, max_steps=max_steps, tol=tol,
                         on_step=tracker.on_step if tracker.recording else None, image=False)
    # The scene takes at least one step per call; max(1, ...) keeps the loop finite even if one did not.
    return max(1, int(result.get("steps", 1)) if isinstance(result, dict) else 1)


# ----------------------------------------------------------------------------- diagnostics

class _Recorder:
    """Between servo calls: the scene's own tracker (``scene.tracker(obs)``, for its diagnostics) and the
    frames for a video, each with the stage badge the tracker names."""

    def __init__(self, scene, obs: dict, record_frames: bool, frame_every: int):
        self.scene = scene
        self.tracker = scene.tracker(obs)
        self.recording, self._every, self._n = record_frames, max(1, int(frame_every)), 0
        self.frames: list[np.ndarray] = [np.array(obs["image"])] if record_frames else []
        self.stages: list = [self._badge(obs)] if record_frames else []  # per-frame badge

    def _badge(self, obs: dict):
        return self.tracker.badge(obs) if self.tracker is not None else obs.get("stage")

    def command(self, gripper: float, target_z: float) -> None:
        if self.tracker is not None:
            self.tracker.command(gripper, target_z)

    def update(self, obs: dict) -> None:
        if self.tracker is not None:
            self.tracker.update(obs)

    def on_step(self, obs: dict) -> None:
        """servo's per-step callback (obs without the image), passed only while recording a video."""
        self.update(obs)
        self._n += 1
        if self._n % self._every == 0:
            self.frames.append(np.array(self.scene.observe()["image"]))
            self.stages.append(self._badge(obs))

    def finish(self, obs: dict) -> None:
        if self.tracker is not None:
            self.tracker.finish(obs)

    def diagnostics(self, outcome: str) -> dict:
        return self.tracker.diagnostics(outcome) if self.tracker is not None else {}


# ----------------------------------------------------------------------------- test policies

class HomePolicy(RolloutPolicy):
    """Always predicts the pose the robot started the episode in, gripper open. Must score MISS."""

    def __init__(self, home=None, horizon: int = 1):
        self._fixed = None if home is None else np.asarray(home, dtype=float)
        self.horizon = int(horizon)
        self._home = self._fixed

    def reset(self) -> None:
        self._home = self._fixed

    def predict(self, image, state, camera) -> np.ndarray:
        if self._home is None:
            self._home = np.array(state["eef_pos"], dtype=float)
        return np.tile(np.append(self._home, 0.0), (self.horizon, 1))


class ExpertPolicy(RolloutPolicy):
    """The scripted expert as a policy: replays the expert's per-step commands through the executor.

    :meth:`prepare` (called by the evaluation worker before the rollout, never by the rollout itself)
    runs ``scene.run_expert`` from the same reset and keeps only its commands. The rollout then resets
    the scene again and every command reaches the robot through ``scene.servo`` like any prediction,
    so the expert PLACEs exactly when the rollout path (reset, executor, stage detection) works.
    Each command is one control step (``target_stride = 1``); predict returns the next ``chunk``
    commands and assumes the rollout executes all of them (use ``replan_every = chunk``).
    ``stop_after``: plan only up to this expert phase (a probe needs just the way to the grasp).
    :meth:`seek` lets a probe ask it mid-episode: after ``seek(k)`` it answers from its k-th command.
    """

    target_stride, privileged = 1, True

    def __init__(self, chunk: int = 1, stop_after: str | None = None):
        self.chunk = int(chunk)
        self.stop_after = stop_after
        self._actions: np.ndarray | None = None
        self._i = 0

    def prepare(self, scene, *, offset, view, seed) -> None:
        scene.reset(offset=tuple(offset), view=None if view is None else tuple(view), seed=int(seed))
        episode = scene.run_expert(record=False, stop_after=self.stop_after)
        self._actions = np.asarray(episode["action"], dtype=float)

    def reset(self) -> None:
        self._i = 0

    def seek(self, step: int) -> None:
        """Continue the plan from control step ``step`` of the episode (the probe's pre-grasp state)."""
        self._i = int(step)

    def predict(self, image, state, camera) -> np.ndarray:
        if self._actions is None:
            raise RuntimeError("ExpertPolicy.prepare(scene, ...) must run before the rollout")
        idx = np.minimum(np.arange(self._i, self._i + self.chunk), len(self._actions) - 1)
        self._i += self.chunk
        return self._actions[idx]


class DemoReplayPolicy(RolloutPolicy):
    """The expert's own recorded trajectory as a policy, in the training labels' form.

    :meth:`prepare` records the expert from the episode's reset (like :class:`ExpertPolicy`); each
    prediction is then exactly what a perfect policy trained on that demo would output at frame t:
    ``eef_pos[t + k·stride]`` and the gripper label of those frames (:func:`pxp.experiment.data.gripper_labels`),
    k = 1..horizon. The rollout must execute all ``horizon`` targets for ``stride`` steps each
    (``replan_every=horizon, steps_per_target=stride``) so its frame pointer stays in step.
    """

    privileged = True

    def __init__(self, stride: int = 4, horizon: int = 4):
        self.target_stride, self.horizon = int(stride), int(horizon)
        self._eef: np.ndarray | None = None
        self._t = 0

    def prepare(self, scene, *, offset, view, seed) -> None:
        from .data import gripper_labels

        scene.reset(offset=tuple(offset), view=None if view is None else tuple(view), seed=int(seed))
        self.demo = demo = scene.run_expert(record=False)
        self._eef = np.asarray(demo["eef_pos"], dtype=float)
        self._grip = gripper_labels(np.asarray(demo["action"], dtype=float)[:, 3])

    def reset(self) -> None:
        self._t = 0

    def predict(self, image, state, camera) -> np.ndarray:
        if self._eef is None:
            raise RuntimeError("DemoReplayPolicy.prepare(scene, ...) must run before the rollout")
        last = len(self._eef) - 1
        fut = np.minimum(self._t + self.target_stride * np.arange(1, self.horizon + 1), last)
        self._t += self.target_stride * self.horizon
        return np.concatenate([self._eef[fut], self._grip[fut, None]], axis=1)


def builtin_policy(name: str):
    """Test and benchmark policies by name: ``expert``, ``expert4`` (chunks of 4), ``home``."""
    if name == "home":
        return HomePolicy()
    if name.startswith("expert"):
        return ExpertPolicy(chunk=int(name[len("expert"):] or 1))
    raise ValueError(f"unknown built-in policy {name!r} (expert, expertN, home)")
