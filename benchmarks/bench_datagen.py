"""Dataset generation speed: frames/s against the raw scene step+render loop, and 1 → N workers.

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_datagen.py --episodes 4 --image-size 128 --workers 1 2

- raw:  one scene in this process, ``reset`` + ``run_expert(record=True)`` per episode (physics +
        rendering, nothing stored): the ceiling for one core.
- gen:  the ``position_grid`` generator end to end (worker pool, pickling, gzip, HDF5, checks)
        for the same episodes, with 1 and N workers.
Both include building the scene (≈ 3 s each), as a real run does. Prints a table and JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


class BenchCtx:
    """The part of the runner's stage context a generator uses (no progress bar: quiet timings)."""

    def __init__(self, workers: int, scene: dict):
        from pxp.core.plugins import get_registry

        self.registry, self.workers, self.seed, self.scene = get_registry(), workers, 0, scene

    def scene_config(self, **overrides):
        model = self.registry.get("scenes", "libero_bowl_plate").config_model
        return model.model_validate({**self.scene, **overrides})

    @contextlib.contextmanager
    def progress(self, description, total=None):
        yield type("Bar", (), {"advance": lambda self, n=1: None})()

    def log(self, msg):
        pass


def dataset_config(episodes: int, seed: int) -> dict:
    # one row of cells across the workspace: episodes of typical length, not only short ones
    return {"type": "position_grid", "rows": 1, "cols": episodes, "seed": seed}


def bench_raw(ctx: BenchCtx, episodes: int, seed: int) -> dict:
    from pxp.core.plugins import create
    from pxp.plugins.datasets.grids import PositionGridConfig, PositionGridGenerator

    tasks = PositionGridGenerator(PositionGridConfig(**dataset_config(episodes, seed))).plan(ctx.scene_config())
    t0 = time.perf_counter()
    frames = 0
    with create("scenes", ctx.scene_config()) as scene:
        t_made = time.perf_counter()
        for t in tasks:
            scene.reset(offset=t.offset, view=t.view, seed=t.seed)
            frames += len(scene.run_expert(record=True)["eef_pos"])
    t1 = time.perf_counter()
    return {"frames": frames, "seconds": t1 - t0, "scene_build_s": t_made - t0, "fps": frames / (t1 - t0),
            "fps_steady": frames / (t1 - t_made)}


def bench_gen(ctx: BenchCtx, episodes: int, seed: int, out: Path) -> dict:
    from pxp.core.plugins import get_registry

    reg = get_registry()
    gen = reg.create("datasets", reg.get("datasets", "position_grid").config_model(**dataset_config(episodes, seed)))
    path = out / f"gen-w{ctx.workers}-{time.monotonic_ns()}.hdf5"
    t0 = time.perf_counter()
    summary = gen.generate(path, ctx)
    dt = time.perf_counter() - t0
    return {"frames": summary["frames"], "failed": summary["failed"], "seconds": dt, "fps": summary["frames"] / dt,
            "mb": path.stat().st_size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--robot", default="shown", choices=["shown", "hidden", "circle"])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="take the fastest of this many runs (shared machines are noisy)")
    args = ap.parse_args()
    scene = {"image_size": args.image_size, "robot": args.robot}
    results = {"config": vars(args), "cpus": os.cpu_count(), "load_avg_before": os.getloadavg()}
    warm_up(BenchCtx(1, scene))
    results["raw"] = best(lambda: bench_raw(BenchCtx(1, scene), args.episodes, args.seed), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            results[f"gen_w{w}"] = best(lambda: bench_gen(BenchCtx(w, scene), args.episodes, args.seed, Path(tmp)),
                                        args.repeat)
    results["load_avg_after"] = os.getloadavg()
    report(results, args.workers)


def warm_up(ctx: BenchCtx) -> None:
    """Import mujoco / robosuite / libero once so the raw loop does not pay for them (the
    generator's in-process worker would get them for free afterwards too)."""
    from pxp.core.plugins import create

    with create("scenes", ctx.scene_config()) as scene:
        scene.reset(seed=0)


def best(run, repeat: int) -> dict:
    return min((run() for _ in range(max(1, repeat))), key=lambda r: r["seconds"])


def report(r: dict, workers) -> None:
    raw = r["raw"]
    print(f"raw step+render loop: {raw['frames']} frames in {raw['seconds']:.1f} s = {raw['fps']:.1f} frames/s "
          f"({raw['fps_steady']:.1f} without the {raw['scene_build_s']:.1f} s scene build)")
    base = r[f"gen_w{workers[0]}"]["seconds"]
    for w in workers:
        g = r[f"gen_w{w}"]
        print(f"generation, {w} worker(s): {g['frames']} frames in {g['seconds']:.1f} s = {g['fps']:.1f} frames/s, "
              f"ratio to raw {g['fps'] / raw['fps']:.2f}, speed-up vs {workers[0]} worker(s) {base / g['seconds']:.2f}x, "
              f"file {g['mb']:.1f} MB")
    print(f"load average before/after: {r['load_avg_before'][0]:.1f} / {r['load_avg_after'][0]:.1f} on {r['cpus']} CPUs")
    print(json.dumps(r, default=float))


if __name__ == "__main__":
    main()
