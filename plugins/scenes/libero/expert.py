"""Scripted expert ("natural-start servo replay") for the bowl→plate scene.

home → above the bowl → down → close → lift → above the plate → down → open → up, gripper top-down.
Every motion goes through ``scene.servo``; the numbers are the ones measured to work (docs/scene.md:
256/256 PLACE over the 16×16 grid).
"""
from __future__ import annotations

import numpy as np

PHASES = ("approach", "descend", "close", "lift", "carry", "lower", "open", "retreat")
HIGH_Z = 1.05  # approach / carry height of the grip site
GRASP_Z = 0.935  # grip site height at the grasp: one finger inside the bowl, one outside the rim
RIM_DY = 0.047  # fingers close along world y: grasp the rim this far from the bowl centre
PLACE_CLEARANCE = 0.015  # release with the bowl this far above its resting height on the plate
HIGH_TOL, LOW_TOL = 0.01, 0.004
CLOSE_STEPS, OPEN_STEPS = 12, 10
BOWL_ON_PLATE_RISE = 0.008  # bowl body height gain when resting on the plate instead of the table (measured)


def rim_grasps(bowl, rule: str = "plus_y") -> np.ndarray:
    """(2, 3) the two grip-site points that grasp the bowl's rim (fingers closing along world y): the
    expert's choice first, then the other. ``plus_y``: the +y side everywhere, so the demonstrations have
    one grasp mode over the whole workspace (64/64 PLACE over the 8×8 grid, docs/results.md);
    ``nearer_y0``: the side nearer y = 0 (the first expert's rule), which switches at the left/right boundary."""
    side = -1.0 if rule == "nearer_y0" and bowl[1] > 0 else 1.0
    return np.array([[bowl[0], bowl[1] + s * RIM_DY, GRASP_Z] for s in (side, -side)])


def _plan(scene, skip_close: bool):
    """Yield (phase, target, gripper, max_steps, tol) one waypoint at a time (later ones depend on earlier)."""
    grasp = rim_grasps(scene.bowl_pos, scene.cfg.grasp_rim)[0]
    grip = 0.0 if skip_close else 1.0
    yield "approach", np.r_[grasp[:2], HIGH_Z], 0.0, None, HIGH_TOL
    yield "descend", grasp, 0.0, None, LOW_TOL
    yield "close", grasp, grip, CLOSE_STEPS, 0.0
    yield "lift", np.r_[grasp[:2], HIGH_Z], grip, None, HIGH_TOL
    eef_to_bowl = scene.observe(image=False)["eef_pos"] - scene.bowl_pos  # measured after the lift
    plate = scene.plate_pos
    above = np.r_[plate[:2] + eef_to_bowl[:2], HIGH_Z]
    yield "carry", above, grip, None, HIGH_TOL
    bowl_rest_on_plate = scene.bowl_rest_z + BOWL_ON_PLATE_RISE
    yield "lower", np.r_[above[:2], bowl_rest_on_plate + PLACE_CLEARANCE + eef_to_bowl[2]], grip, None, LOW_TOL
    low = scene.observe(image=False)["eef_pos"]
    yield "open", low, 0.0, OPEN_STEPS, 0.0
    yield "retreat", np.r_[low[:2], HIGH_Z], 0.0, None, HIGH_TOL


def run_expert(scene, record: bool = True, skip_close: bool = False, stop_after: str | None = None) -> dict:
    """Run the expert from the scene's current (reset) state. Returns the episode: per-frame arrays
    (frame 0 = the state before the first control step) and ``action[t]`` = the (target xyz, gripper)
    command executed from frame t (the last frame repeats the last command)."""
    if stop_after is not None and stop_after not in PHASES:
        raise ValueError(f"stop_after must be one of {PHASES}, got {stop_after!r}")
    frames, commands, phases = [scene.observe(image=record)], [], ["start"]
    results = {}
    for phase, target, grip, max_steps, tol in _plan(scene, skip_close):
        def on_step(obs, _cmd=np.r_[target, grip], _phase=phase):
            frames.append(obs)
            commands.append(_cmd)
            phases.append(_phase)

        results[phase] = scene.servo(target, grip, max_steps=max_steps, tol=tol, on_step=on_step, image=record)
        if phase == stop_after:
            break
    episode = {k: np.array([f[k] for f in frames]) for k in frames[0] if k != "image"}
    if record:
        episode["image"] = np.stack([f["image"] for f in frames])
    episode.update(
        action=np.array(commands + commands[-1:]), phase=np.array(phases),
        outcome=scene.outcome(), libero_success=scene.libero_success(), steps=len(commands),
        waypoints={p: r for p, r in results.items()}, offset=scene.offset, view=scene.view, seed=scene.seed,
        camera=scene.camera.to_dict(),
    )
    return episode
