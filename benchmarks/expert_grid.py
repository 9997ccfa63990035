"""Measure the scripted expert over the object-offset grid (default 16×16 over the scene's workspace).

    MUJOCO_GL=egl python benchmarks/expert_grid.py [--rows 16 --cols 16 --workers 2 --json out.json]

No rendering: each worker process builds one scene per chunk of cells and runs ``run_expert(record=False)``.
Prints PLACE / GRASP / MISS counts, LIBERO's own success count, steps and the failed cells.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def _run_chunk(cells, scene_kwargs, seed):
    os.environ.setdefault("MUJOCO_GL", "egl")
    from pxp.plugins.scenes.libero import LiberoSceneConfig, make_scene

    out = []
    with make_scene(LiberoSceneConfig(**scene_kwargs)) as scene:
        for (row, col), offset in cells:
            scene.reset(offset=offset, seed=seed + 1000 * row + col)
            ep = scene.run_expert(record=False)
            out.append({"cell": [row, col], "offset": list(offset), "outcome": ep["outcome"],
                        "libero_success": ep["libero_success"], "steps": ep["steps"]})
    return out


def measure(rows=16, cols=16, workers=2, chunks=8, seed=0, **scene_kwargs) -> list[dict]:
    from pxp.plugins.scenes.libero import LiberoSceneConfig

    cfg = LiberoSceneConfig(**scene_kwargs)
    (x0, x1), (y0, y1) = cfg.workspace_dx, cfg.workspace_dy
    step = lambda lo, hi, n, i: lo + (hi - lo) * i / max(n - 1, 1)  # noqa: E731  (same grid as Scene.grid_offsets)
    cells = [((r, c), (step(x0, x1, rows, r), step(y0, y1, cols, c))) for r in range(rows) for c in range(cols)]
    parts = [cells[i::chunks] for i in range(chunks)]  # interleaved: every chunk spans the whole grid
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        results = pool.map(_run_chunk, parts, [scene_kwargs] * chunks, [seed] * chunks)
        return sorted((r for part in results for r in part), key=lambda r: r["cell"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clutter", default="clean")
    ap.add_argument("--json", help="write per-cell results here")
    args = ap.parse_args()
    t0 = time.time()
    res = measure(args.rows, args.cols, args.workers, seed=args.seed, clutter=args.clutter)
    n = len(res)
    counts = Counter(r["outcome"] for r in res)
    steps = sorted(r["steps"] for r in res)
    print(f"expert over a {args.rows}x{args.cols} grid ({args.clutter}, seed {args.seed}): "
          f"PLACE {counts['PLACE']}/{n} ({100 * counts['PLACE'] / n:.1f}%), GRASP {counts['GRASP']}, "
          f"MISS {counts['MISS']}; LIBERO success {sum(r['libero_success'] for r in res)}/{n}; "
          f"steps median {steps[n // 2]}, max {steps[-1]}; {time.time() - t0:.0f} s with {args.workers} workers")
    for r in res:
        if r["outcome"] != "PLACE":
            print(f"  cell {r['cell']} offset ({r['offset'][0]:+.3f}, {r['offset'][1]:+.3f}): {r['outcome']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
