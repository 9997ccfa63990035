"""Episodes/hour on the local process pool vs a Ray cluster of the same cores, measured in one run.

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_ray.py --episodes 12 --cores 2

The same evaluation episodes (the scripted expert through the executor, ``builtin:expert``, 64 px)
go through ``pxp.experiment.evaluation.run_episodes`` twice: on the local pool with ``--cores`` workers, and
as Ray tasks (1 CPU each) on a single-node Ray started with ``num_cpus=--cores``. Both timings include
starting the workers and building their scenes, as a real evaluation pays once per worker; Ray's own
start (GCS, raylet: a few seconds, once per ``pxp run``) is timed separately. The ratio Ray / pool is
the figure in README.md; docs/scaling.md uses the per-episode cost.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def tasks(n: int, image_size: int, max_steps: int):
    from pxp.experiment.evaluation import EpisodeTask
    from pxp.plugins.scenes.libero import LiberoSceneConfig

    scene = LiberoSceneConfig(image_size=image_size)
    offsets = [(0.0, 0.0), (-0.1, -0.2), (-0.2, -0.3), (0.0, -0.4)]
    return [EpisodeTask("bench", "bench", "expert", "builtin:expert", scene, offset=offsets[i % len(offsets)], seed=i,
                        cell=[0, i], max_steps=max_steps, steps_per_target=1) for i in range(n)]


def timed(todo, cores: int, executor=None) -> tuple[float, list]:
    from pxp.experiment.evaluation import run_episodes

    t0 = time.perf_counter()
    eps = run_episodes(todo, workers=cores, executor=executor)
    return time.perf_counter() - t0, eps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--max-steps", type=int, default=150)
    args = ap.parse_args()

    import ray

    from pxp.core.execution.ray_cluster import RayExecutor

    todo = tasks(args.episodes, args.image_size, args.max_steps)
    pool_s, pool_eps = timed(todo, args.cores)
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cores, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": {"MUJOCO_GL": os.environ["MUJOCO_GL"]}})
    ray_start_s = time.perf_counter() - t0
    ray_s, ray_eps = timed(todo, args.cores, RayExecutor())
    ray.shutdown()

    same = [e["outcome"] for e in pool_eps] == [e["outcome"] for e in ray_eps]
    errors = sum(bool(e["error"]) for e in pool_eps + ray_eps)
    out = {"episodes": args.episodes, "cores": args.cores, "image_size": args.image_size,
           "pool_s": round(pool_s, 1), "ray_s": round(ray_s, 1), "ray_start_s": round(ray_start_s, 1),
           "pool_episodes_per_hour": round(3600 * args.episodes / pool_s),
           "ray_episodes_per_hour": round(3600 * args.episodes / ray_s),
           "ratio_ray_over_pool": round(pool_s / ray_s, 2),
           "seconds_per_episode_per_core": round(pool_s * args.cores / args.episodes, 2),
           "same_outcomes": same, "errors": errors}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
