"""Regenerate the scene's drift goldens (plugins/scenes/libero/golden.json) and measure their spread.

    MUJOCO_GL=egl .venv/bin/python scripts/make_drift_goldens.py --repeat 3

measures the expert's states and the fixed frames in ``--repeat`` fresh processes, prints how far the
repeats differ from the first (the spread the tolerances must sit well above) and how far a perturbed
scene moves them (bowl friction × 0.8, lights × 0.97: what a real change gives, which the tolerances must
sit well below), then writes the first measurement with the tolerances below. ``--check`` only prints
the spread and the perturbations, writing nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# Chosen from the measurement in docs/scene.md ("Drift guard"): far above the spread between fresh
# processes on one machine, far below what a changed friction or light gives.
TOLERANCES = {"position_m": 0.0001, "gripper": 0.0005, "steps": 2, "image_mean": 0.5, "image_std": 0.5,
              "image_thumbnail": 0.5}
PERTURBATIONS = {"friction": ["--friction", "0.8"], "light": ["--light", "0.97"]}


def measure_once(out: Path, friction: float | None, light: float | None) -> None:
    """One measurement in this process, optionally of a perturbed scene (model edited after load)."""
    from pxp.plugins.scenes.libero import drift
    from pxp.plugins.scenes.libero.scene import LiberoScene

    if friction is not None or light is not None:
        setup = LiberoScene._setup_rendering

        def perturbed(scene):
            setup(scene)
            if friction is not None:
                scene.model.geom_friction[scene._bowl_geoms, 0] *= friction
            if light is not None:
                scene.model.light_diffuse[:] *= light
        LiberoScene._setup_rendering = perturbed
    out.write_text(json.dumps(drift.measure(quick=False)))


def fresh(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.json"
        subprocess.run([sys.executable, __file__, "--measure", str(path), *args], check=True)
        return json.loads(path.read_text())


def spread(runs: list[dict], drift) -> dict:
    """The largest state and image errors of each run against the first."""
    worst: dict = {}
    for run in runs[1:]:
        for errors in (drift.state_errors(run["trajectories"], runs[0]["trajectories"]),
                       drift.image_errors(run["images"], runs[0]["images"])):
            for frame in errors.values():
                for key, value in frame.items():
                    if isinstance(value, (int, float)):
                        worst[key] = max(worst.get(key, 0.0), value)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes to measure the spread over")
    parser.add_argument("--check", action="store_true", help="print spread and perturbations, write nothing")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--friction", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--light", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure_once(args.measure, args.friction, args.light)

    from pxp.plugins.scenes.libero import drift

    runs = [fresh([]) for _ in range(max(1, args.repeat))]
    print(f"spread over {len(runs)} fresh processes: {json.dumps(spread(runs, drift))}")
    measured = {name: spread([runs[0], fresh(flags)], drift) for name, flags in PERTURBATIONS.items()}
    for name, worst in measured.items():
        print(f"perturbed ({name}): {json.dumps(worst)}")
    if args.check:
        return
    golden = {**runs[0], "tolerances": TOLERANCES,
              "measured": {"repeats": len(runs), "spread": spread(runs, drift), "perturbed": measured}}
    from pxp.core import io

    io.write_text(drift.GOLDEN, json.dumps(golden, indent=1) + "\n")
    print(f"wrote {drift.GOLDEN}")


if __name__ == "__main__":
    main()
