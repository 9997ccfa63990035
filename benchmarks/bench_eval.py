"""Evaluation throughput: episodes/hour with 1 and N worker processes.

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_eval.py --episodes 6 --image-size 128 --workers 1 2

Runs the same episodes through ``pxp.experiment.evaluation.run_episodes`` (the shared worker pool, as
``pxp run`` does) with each worker count; wall time includes starting the workers and building
their scenes (≈ 3 s each), as a real evaluation pays once per worker.

Policies (no trained model needed):
- ``expert4``: the scripted expert replayed through the executor, re-predicting every 4 steps
  (episodes end at PLACE, ≈ 90 steps). Its ``prepare`` runs the expert once more from the same
  reset to get the commands, so an episode costs about two expert runs; ``rollout_s`` is the
  rollout alone, the cost a trained policy with the same episode length would pay (plus its forward).
- ``tiny_para``: a randomly initialised tiny-ViT PARA policy loaded from a checkpoint, the real
  model path. It never reaches the bowl, so every episode runs to ``--max-steps``: the worst case.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def tiny_para_checkpoint(root: Path, image_size: int) -> str:
    """A random tiny PARA policy written as a real checkpoint (what load_policy reads)."""
    from pxp.core.plugins import get_registry
    from pxp.experiment.policy import build_policy, write_checkpoint

    reg = get_registry()
    bb = reg.get("backbones", "tiny_vit").config_model(image_size=image_size)
    head = reg.get("heads", "para_volume").config_model(height_bins=16, heatmap_size=32, hidden_dim=32)
    policy = build_policy(bb, head, reg.create)
    path = root / "tiny_para"
    write_checkpoint(path, 0, policy.state_dict(), meta={"policy": policy.config})
    return str(path)


def tasks_for(policy: str, checkpoint: str, n: int, image_size: int, max_steps: int):
    from pxp.experiment.evaluation import EpisodeTask, pick_positions
    from pxp.experiment.grid import SplitConfig
    from pxp.plugins.scenes.libero import LiberoSceneConfig

    scene = LiberoSceneConfig(image_size=image_size)
    positions = pick_positions(scene, SplitConfig(name="all"), n, seed=0)
    replan = 4 if policy == "expert4" else 1
    return [EpisodeTask("bench", "bench", policy, checkpoint, scene, offset=off, seed=i, cell=cell,
                        max_steps=max_steps, replan_every=replan, trained_stride=4)
            for i, (cell, off) in enumerate(positions)]


def bench(tasks, workers: int) -> dict:
    from pxp.experiment.evaluation import run_episodes

    t0 = time.perf_counter()
    eps = run_episodes(tasks, workers=workers)
    dt = time.perf_counter() - t0
    errors = [e["error"] for e in eps if e["error"]]
    ok = [e for e in eps if not e["error"]]
    rollout_s = sum(e["diagnostics"]["seconds"] for e in ok) / max(1, len(ok))
    return {"episodes": len(eps), "errors": errors, "seconds": dt, "episodes_per_hour": 3600 * len(eps) / dt,
            "rollout_s": rollout_s, "steps": sum(e["steps"] for e in ok) / max(1, len(ok)),
            "outcomes": sorted({e["outcome"] for e in ok})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--policies", nargs="+", default=["expert4", "tiny_para"], choices=["expert4", "tiny_para"])
    ap.add_argument("--max-steps", type=int, default=600)
    args = ap.parse_args()
    results = {"config": vars(args), "cpus": os.cpu_count(), "load_avg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        # Checkpoints first: with workers=1 episodes run in this process, and importing timm (→ triton)
        # after Mesa's llvmpipe has rendered segfaults.
        ckpts = {p: "builtin:expert4" if p == "expert4" else tiny_para_checkpoint(Path(tmp), args.image_size)
                 for p in args.policies}
        for policy, ckpt in ckpts.items():
            tasks = tasks_for(policy, ckpt, args.episodes, args.image_size, args.max_steps)
            for w in args.workers:
                results[f"{policy}_w{w}"] = r = bench(tasks, w)
                print(f"{policy}, {w} worker(s): {r['episodes']} episodes in {r['seconds']:.1f} s = "
                      f"{r['episodes_per_hour']:.0f} episodes/hour; mean {r['steps']:.0f} steps, rollout alone "
                      f"{r['rollout_s']:.2f} s/episode; outcomes {r['outcomes']}; errors {len(r['errors'])}", flush=True)
    results["load_avg_after"] = os.getloadavg()
    print(f"load average before/after: {results['load_avg_before'][0]:.1f} / {results['load_avg_after'][0]:.1f} "
          f"on {results['cpus']} CPUs")
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
