"""Measure the scripted expert over the object-offset grid (default 16×16 over the scene's workspace).

    MUJOCO_GL=egl python benchmarks/expert_grid.py [--rows 16 --cols 16 --workers 2 --json out.json]
        [--grasp-rim plus_y|nearer_y0] [--replay]

No rendering: each worker process builds one scene per chunk of cells and runs ``run_expert(record=False)``.
Prints PLACE / GRASP / MISS counts, LIBERO's own success count, steps and the failed cells. ``--replay``
also executes each demo's training labels through the rollout as a trained policy's predictions are
(stride 4, horizon 4: ``DemoReplayPolicy``), the ceiling of a policy that learned its demos exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def _run_chunk(cells, scene_kwargs, seed, replay=False):
    os.environ.setdefault("MUJOCO_GL", "egl")
    from pxp.experiment.rollout import DemoReplayPolicy, rollout
    from pxp.plugins.scenes.libero import LiberoSceneConfig, make_scene

    out = []
    with make_scene(LiberoSceneConfig(**scene_kwargs)) as scene:
        for (row, col), offset in cells:
            episode_seed = seed + 1000 * row + col
            scene.reset(offset=offset, seed=episode_seed)
            ep = scene.run_expert(record=False)
            out.append({"cell": [row, col], "offset": list(offset), "outcome": ep["outcome"],
                        "libero_success": ep["libero_success"], "steps": ep["steps"]})
            if replay:
                policy = DemoReplayPolicy(stride=4, horizon=4)
                policy.prepare(scene, offset=offset, view=None, seed=episode_seed)
                out[-1]["replay"] = rollout(scene, policy, offset=offset, seed=episode_seed, max_steps=400,
                                            replan_every=4)["outcome"]
    return out


def measure(rows=16, cols=16, workers=2, chunks=8, seed=0, replay=False, **scene_kwargs) -> list[dict]:
    from pxp.plugins.scenes.libero import LiberoSceneConfig

    cfg = LiberoSceneConfig(**scene_kwargs)
    (x0, x1), (y0, y1) = cfg.workspace_dx, cfg.workspace_dy
    step = lambda lo, hi, n, i: lo + (hi - lo) * i / max(n - 1, 1)  # noqa: E731  (same grid as Scene.grid_offsets)
    cells = [((r, c), (step(x0, x1, rows, r), step(y0, y1, cols, c))) for r in range(rows) for c in range(cols)]
    parts = [cells[i::chunks] for i in range(chunks)]  # interleaved: every chunk spans the whole grid
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        results = pool.map(_run_chunk, parts, [scene_kwargs] * chunks, [seed] * chunks, [replay] * chunks)
        return sorted((r for part in results for r in part), key=lambda r: r["cell"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clutter", default="clean")
    ap.add_argument("--grasp-rim", default="plus_y", help="the expert's rim side: plus_y | nearer_y0")
    ap.add_argument("--replay", action="store_true", help="also replay each demo's labels through the rollout")
    ap.add_argument("--json", help="write per-cell results here")
    args = ap.parse_args()
    t0 = time.time()
    res = measure(args.rows, args.cols, args.workers, seed=args.seed, replay=args.replay, clutter=args.clutter,
                  grasp_rim=args.grasp_rim)
    n = len(res)
    counts = Counter(r["outcome"] for r in res)
    steps = sorted(r["steps"] for r in res)
    print(f"expert over a {args.rows}x{args.cols} grid ({args.clutter}, grasp_rim {args.grasp_rim}, seed {args.seed}): "
          f"PLACE {counts['PLACE']}/{n} ({100 * counts['PLACE'] / n:.1f}%), GRASP {counts['GRASP']}, "
          f"MISS {counts['MISS']}; LIBERO success {sum(r['libero_success'] for r in res)}/{n}; "
          f"steps median {steps[n // 2]}, max {steps[-1]}; {time.time() - t0:.0f} s with {args.workers} workers")
    if args.replay:
        print(f"replayed labels (stride 4, horizon 4): PLACE {sum(r['replay'] == 'PLACE' for r in res)}/{n}")
    for r in res:
        if r["outcome"] != "PLACE" or r.get("replay", "PLACE") != "PLACE":
            print(f"  cell {r['cell']} offset ({r['offset'][0]:+.3f}, {r['offset'][1]:+.3f}): expert {r['outcome']}, "
                  f"replay {r.get('replay', '-')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
