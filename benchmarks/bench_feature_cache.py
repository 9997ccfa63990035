"""A frozen ViT's feature cache: what it costs to build, what it saves in training, and the ViT's cost at rollout.

    python benchmarks/bench_feature_cache.py --weights weights/dinov2_s14_imgfocus.safetensors --size 168
    python benchmarks/bench_feature_cache.py                      # random-init ViT-S/14 (same cost, no file)

Three measurements, all in this run on this machine (nothing is compared with a number from elsewhere):

1. caching: frames/s of the frozen ViT-S/14 over a dataset of ``--demos`` × ``--frames`` 128-px frames (written
   with the real DemoWriter), the cache's whole build (``FeatureCache.ensure``: forward, float16 write, sha256);
2. a training step (``LoopStep``, batch ``--batch``, PARA and ACT heads) from the cache vs with the live frozen
   backbone: seconds per step of each and their ratio (goal ≥ 10×);
3. one rollout prediction (``Policy.predict`` on a 128-px frame, as an episode makes ≈ 25 of them) of the frozen
   ViT policy vs ``cpu_study``'s small CNN policy: seconds each and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests._policy_data: the synthetic demos


def vit(args):
    from pxp.plugins.backbones.vit import DinoV2Config

    return DinoV2Config(model="vit_small_patch14_dinov2", weights=args.weights, image_size=args.size, freeze="all")


def heads(args):
    from pxp.plugins.heads.act import ActRegressionConfig
    from pxp.plugins.heads.para import ParaVolumeConfig

    return {"para": ParaVolumeConfig(horizon=4, height_bins=16, heatmap_size=32, hidden_dim=32, subcell=True,
                                     conv_layers=4, dilated=True),
            "act": ActRegressionConfig(horizon=4, hidden_dim=128, readout="cls", condition_on_eef="height",
                                       workspace_low=(-0.3, -0.35, 0.8), workspace_high=(0.3, 0.35, 1.3))}


def policy_of(backbone, head):
    from pxp.core.plugins import get_registry
    from pxp.experiment.policy import build_policy
    from pxp.experiment.training import seed_everything
    from pxp.plugins.objectives.losses import BehaviorCloningConfig

    seed_everything(0)
    reg = get_registry()
    return build_policy(backbone, head, reg.create, "cpu", BehaviorCloningConfig()), reg.create("objectives", BehaviorCloningConfig())


def interleaved(fns: dict, repeats: dict, warmup: int = 2) -> dict:
    """Median seconds per call of each ``fns[k]()``, the calls interleaved round by round (``repeats[k]`` in
    all), so that a machine whose load changes during the run (it is shared) slows every side alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    rounds = max(repeats.values())
    for r in range(rounds):
        for k, fn in fns.items():
            if r * repeats[k] // rounds != (r + 1) * repeats[k] // rounds:  # spread each side's calls evenly
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_cache(args, path):
    from pxp.experiment.feature_cache import FeatureCache

    policy, _ = policy_of(vit(args), heads(args)["para"])
    t0 = time.perf_counter()
    cache = FeatureCache.ensure(policy, path, log=lambda m: None)
    seconds = time.perf_counter() - t0
    frames = cache.index["frames"]
    print(f"caching: {frames} frames in {seconds:.1f} s = {frames / seconds:.2f} frames/s "
          f"({cache.index['bytes'] / frames / 1024:.0f} KiB/frame float16, shape {tuple(cache.shape)})")
    return cache


def bench_steps(args, path):
    from pxp.core.spec import TrainConfig
    from pxp.experiment import feature_cache
    from pxp.experiment.data import DemoDataset
    from pxp.experiment.training import Batches, LoopStep, flush_denormals, make_optimizer

    tcfg = TrainConfig(steps=1000, batch_size=args.batch, lr=1e-3, warmup_steps=0)
    for name, head in heads(args).items():
        steps = {}
        for mode in ("cache", "live"):
            policy, objective = policy_of(vit(args), head)
            ds = DemoDataset(path, horizon=policy.horizon, stride=4)
            if mode == "cache":
                ds, _ = feature_cache.wrap(policy, ds, None, log=lambda m: None)
            data = Batches(ds, args.batch, 0, policy.device, 0)
            loop = LoopStep(policy, objective, make_optimizer(policy, tcfg), tcfg, None)
            policy.net.train()
            counter = iter(range(10**9))
            steps[mode] = lambda loop=loop, data=data, counter=counter: loop(next(data), next(counter), 0.0)
        with flush_denormals():  # as train() runs its steps
            per = interleaved(steps, {"cache": args.steps, "live": max(2, args.steps // 4)})
        print(f"train step {name} (batch {args.batch}): cache {per['cache'] * 1000:.0f} ms, live frozen backbone "
              f"{per['live'] * 1000:.0f} ms, ratio {per['live'] / per['cache']:.1f}x (goal >= 10x)")


def bench_predict(args):
    from pxp.plugins.backbones.cnn import SmallCNNConfig

    from tests._policy_data import look_at_camera

    cam = look_at_camera(128, 128)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    state = {"eef_pos": np.array([0.0, 0.0, 1.1]), "eef_pixel": np.array([64.0, 40.0]), "gripper": 0.0}
    cnn = SmallCNNConfig(width=96, stages=3, image_size=128)
    for name, head in heads(args).items():
        calls = {}
        for label, bb in (("vit", vit(args)), ("cnn", cnn)):
            policy, _ = policy_of(bb, head)
            calls[label] = lambda policy=policy: policy.predict(frame, state, cam)
        cost = interleaved(calls, {"vit": args.predictions, "cnn": args.predictions})
        print(f"rollout prediction {name}: ViT-S/14 at {args.size} px {cost['vit'] * 1000:.0f} ms, small CNN "
              f"{cost['cnn'] * 1000:.1f} ms, ratio {cost['vit'] / cost['cnn']:.0f}x; "
              f"≈ {25 * cost['vit']:.1f} s of ViT per 25-prediction episode")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="random", help="a weights file (pxp vit import-onnx) or random (same cost)")
    ap.add_argument("--size", type=int, default=168, help="the ViT's input size (a multiple of 14)")
    ap.add_argument("--demos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=48, help="frames per demo")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps from the cache (live: a quarter, interleaved)")
    ap.add_argument("--predictions", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--parts", default="cache,steps,predict", help="which measurements, comma-separated")
    args = ap.parse_args()
    import torch

    from tests._policy_data import write_demos

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, weights {args.weights}, ViT input {args.size} px")
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_demos(Path(tmp) / "demos.hdf5", n_demos=args.demos, T=args.frames, size=128)
        if "cache" in parts:
            bench_cache(args, path)
        if "steps" in parts:
            bench_steps(args, path)
    if "predict" in parts:
        bench_predict(args)
    import resource

    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
