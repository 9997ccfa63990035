"""Scene speed against raw MuJoCo on the same model.

    MUJOCO_GL=egl python benchmarks/bench_scene.py [--size 448 --steps 200 --frames 30]

steps/s: ``scene.servo`` control steps (robosuite's OSC controller + 25 physics substeps) against 25 bare
``mujoco.mj_step`` calls (the same simulated time), and servo's control step against robosuite's own
``env.step`` with the same actions (the bookkeeping it leaves out). frames/s: ``scene.render`` (robot
shown / hidden / circle overlay) and ``scene.observe()`` against ``Renderer.update_scene`` +
``Renderer.render`` on the same model with MuJoCo's default options. Printed as ratios (scene / raw).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _rate(fn, n, rounds=3) -> float:
    """Calls per second, best of ``rounds`` (the CPU is shared: the best round is the least disturbed)."""
    fn()  # warm-up (lazy renderer, caches)
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--clutter", default="clean")
    args = ap.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco

    from pxp.plugins.scenes.libero import LiberoSceneConfig, make_scene

    with make_scene(LiberoSceneConfig(image_size=args.size, clutter=args.clutter)) as scene:
        obs = scene.reset()
        home = obs["eef_pos"]
        targets = [home + [0.05, 0.05, -0.05], home]
        i = iter(range(10**9))

        def scene_step():  # one control step towards alternating targets, no images
            scene.servo(targets[next(i) % 2], 0.0, max_steps=1, tol=0.0)

        step_scene = _rate(scene_step, args.steps)
        action = np.array([0.3, -0.2, -0.2, 0.0, 0.0, 0.0, -1.0])
        back_and_forth = lambda: action * (1 if next(i) % 20 < 10 else -1)

        def env_step():  # robosuite's env.step with the same actions: what servo's control step replaces
            scene._in_servo = True
            try:
                scene._raw_step(back_and_forth())
            finally:
                scene._in_servo = False

        def control_step():
            scene._control_step(back_and_forth())

        step_env, step_control = _rate(env_step, args.steps), _rate(control_step, args.steps)
        m, d = scene.model, scene.data
        substeps = scene._substeps
        raw_d = mujoco.MjData(m)
        raw_d.qpos[:], raw_d.ctrl[:] = d.qpos, d.ctrl

        def raw_step():
            for _ in range(substeps):
                mujoco.mj_step(m, raw_d)

        step_raw = _rate(raw_step, args.steps)
        frames = {mode: _rate(lambda mode=mode: scene.render(robot=mode), args.frames)
                  for mode in ("shown", "hidden", "circle")}
        frames["observe()"] = _rate(scene.observe, args.frames)
        # Raw, informational: the model's own MSAA setting and MuJoCo's default geom groups.
        raw_model = m  # same model; offsamples is a model setting, so restore it afterwards
        saved = raw_model.vis.quality.offsamples
        raw_model.vis.quality.offsamples = scene.default_offsamples
        try:
            with mujoco.Renderer(raw_model, args.size, args.size) as r:
                def raw_frame():
                    r.update_scene(d, camera="agentview")
                    r.render()
                frame_raw_msaa = _rate(raw_frame, args.frames)
        finally:
            raw_model.vis.quality.offsamples = saved
        with mujoco.Renderer(raw_model, args.size, args.size) as r:
            def raw_frame_fast():  # the scene's own settings: the ratio is pxp's overhead
                r.update_scene(d, camera="agentview", scene_option=scene._opts[True])
                r.render()
            frame_raw = _rate(raw_frame_fast, args.frames)

    print(f"LIBERO bowl→plate ({args.clutter}), {args.size}² images, MUJOCO_GL={os.environ['MUJOCO_GL']}")
    print(f"control steps/s: scene.servo {step_scene:7.1f}   raw {substeps}×mj_step {step_raw:7.1f}   "
          f"ratio {step_scene / step_raw:.2f}")
    print(f"control steps/s: servo's control step {step_control:7.1f}   robosuite env.step {step_env:7.1f}   "
          f"ratio {step_control / step_env:.2f}")
    print(f"raw frames/s: model defaults (MSAA) {frame_raw_msaa:.1f}, scene settings (no MSAA) {frame_raw:.1f}")
    for mode, fps in frames.items():
        print(f"frames/s {mode:>9}: {fps:6.1f}   ratio vs raw same settings {fps / frame_raw:.2f}, "
              f"vs raw MSAA {fps / frame_raw_msaa:.2f}")


if __name__ == "__main__":
    main()
