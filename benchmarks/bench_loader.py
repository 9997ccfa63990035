"""Can the training input path feed a GPU at 448 px? Loader samples/s per core vs what a training step eats.

    python benchmarks/bench_loader.py                       # 448 px, tiny ViT and ViT-S/14 steps on this device
    python benchmarks/bench_loader.py --dataset runs/x/data/left_half.hdf5 --models tiny

Writes a dataset of rendered-looking 448² frames (smooth shading, a few objects, gzip level 4 like the
generators; or reads ``--dataset``), then measures, in one process (one core):

- the loader: ``DemoDataset`` → ``DataLoader(num_workers=0)`` batches (decode + normalise + collate),
  frames from the HDF5 file (gzip decoded per sample) and from the decoded cache (``<dataset>.frames.u8``);
- a training step (``LoopStep``: forward, loss, backward, AdamW) on the same device, per model;

and prints samples/s of each and their ratio (loader / step > 1: the loader keeps up on one core).
The last lines state the per-core rate a ViT-S/14 at 448 px on an H100 would need from 16 cores
(an estimate; see ``H100_VITS448_SAMPLES_S``).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

# Estimate, not a measurement: timm's published training benchmark (results/benchmark-train-amp-nchw-pt112-
# cu113-rtx3090.csv in huggingface/pytorch-image-models) gives vit_small_patch16_384 239 samples/s (AMP, RTX 3090,
# 576 tokens). ViT-S/14 at 448 px has 1024 tokens: ≈ 2× the work (linear layers ×1.8, attention ×3.2) → ≈ 120/s
# on a 3090; an H100 (bf16) is ≈ 4-6× a 3090 on ViT training → ≈ 500-700/s. We take 800/s as the upper bound.
H100_VITS448_SAMPLES_S = 800
H100_LOADER_CORES = 15  # 16 cores, one left to the training loop


def synthetic_frames(n: int, size: int, seed: int) -> np.ndarray:
    """Frames that compress like renders: smooth shading, a table, a few flat-coloured discs, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.55 + 0.2 * yy, 0.45 + 0.15 * xx, 0.35 + 0.1 * yy * xx], -1)
    frames = np.empty((n, size, size, 3), np.uint8)
    centres = rng.uniform(0.2, 0.8, (4, 2))
    colours = rng.uniform(0, 1, (4, 3))
    for t in range(n):
        img = base.copy()
        drift = 0.002 * t * (np.arange(len(centres))[:, None] - 1.5)  # the objects move a little each frame
        for k, (cy, cx) in enumerate(centres + drift):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.004 * (k + 1)] = colours[k]
        img += rng.normal(0, 0.01, img.shape)
        frames[t] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return frames


def write_dataset(path: Path, demos: int, frames: int, size: int) -> Path:
    from pxp.core.camera import Camera
    from pxp.experiment.data import DemoWriter

    cam = Camera.from_fovy(45.0, size, size, position=[0.66, 0.0, 1.61],
                           rotation_world_from_mjcam=[[0, -0.628, 0.778], [1, 0, 0], [0, 0.778, 0.628]])
    with DemoWriter(path, config_hash="bench", attrs={"generator": "bench"}, compression_level=4,
                    log=lambda m: None) as w:
        for i in range(demos):
            eef = np.stack([np.linspace(-0.2, 0.0, frames), np.full(frames, 0.1), np.linspace(1.17, 0.93, frames)], 1)
            grip = (np.arange(frames) > frames // 2).astype(float)
            ep = {"obs": {"agentview_rgb": synthetic_frames(frames, size, i), "eef_pos": eef,
                          "eef_pixel": cam.project(eef), "gripper": grip},
                  "actions": np.concatenate([eef, grip[:, None]], 1), "camera": cam}
            w.write(i, ep, {"cell": i, "outcome": "PLACE"}, success=True)
        w.finish()
    return path


def loader_rate(path: Path, frames: str, batch: int, seconds: float) -> float:
    """Samples/s of DataLoader(num_workers=0) batches: what one worker process delivers."""
    import torch

    from pxp.experiment.data import DemoDataset

    ds = DemoDataset(path, horizon=4, stride=4, frames=frames)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in dl:
            n += len(b["image"])
            if time.perf_counter() - t0 >= seconds:
                break
    return n / (time.perf_counter() - t0)


def step_rate(path: Path, model: str, size: int, batch: int, steps: int, device: str) -> float:
    """Samples/s of pxp's training step (PARA head, behaviour cloning) on real batches from the loader."""
    import torch

    from pxp.experiment.data import DemoDataset
    from pxp.core.plugins import get_registry
    from pxp.experiment.policy import build_policy
    from pxp.core.spec import TrainConfig
    from pxp.experiment.training import Batches, LoopStep, amp_dtype, make_optimizer
    from pxp.plugins.backbones.vit import DinoV2Config, TinyViTConfig
    from pxp.plugins.heads.para import ParaVolumeConfig
    from pxp.plugins.objectives.losses import BehaviorCloningConfig

    reg = get_registry()
    bb = (TinyViTConfig(image_size=size, patch_size=14, embed_dim=96, depth=2, num_heads=3) if model == "tiny"
          else DinoV2Config(model="vit_small_patch14_dinov2", image_size=size))
    head, obj = ParaVolumeConfig(horizon=4, height_bins=32, heatmap_size=64), BehaviorCloningConfig()
    dev = torch.device(device)
    policy = build_policy(bb, head, reg.create, dev, obj)
    objective = reg.create("objectives", obj)
    tcfg = TrainConfig(steps=steps, batch_size=batch, num_workers=0)
    loop = LoopStep(policy, objective, make_optimizer(policy, tcfg), tcfg, amp_dtype(tcfg.amp, dev))
    ds = DemoDataset(path, horizon=4, stride=4, frames="ram")
    data = Batches(ds, batch, seed=0, device=dev)
    batches = [next(data) for _ in range(steps + 1)]  # loading is not timed here
    policy.net.train()
    loop(batches[0], 0, 0.0)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i, b in enumerate(batches[1:]):
        loop(b, i + 1, 0.0)
    float(loop.acc.sum())  # host sync: every step has finished
    return steps * batch / (time.perf_counter() - t0)


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, help="an existing pxp dataset (default: write a synthetic one)")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--demos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=60, help="frames per synthetic demo")
    ap.add_argument("--batch", type=int, default=2, help="batch size of the timed training steps")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="time per loader measurement")
    ap.add_argument("--models", nargs="+", default=["tiny", "vits14"], choices=["tiny", "vits14"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(1) if args.device == "cpu" else None  # per core: one process, one thread

    with tempfile.TemporaryDirectory() as tmp:
        path = args.dataset or write_dataset(Path(tmp) / "bench.hdf5", args.demos, args.frames, args.size)
        from pxp.experiment.data import DemoDataset, FrameCache

        size = DemoDataset(path, horizon=1, frames="hdf5")._image(0, 0).shape[0]
        t0 = time.perf_counter()
        FrameCache(path).build()
        print(f"dataset: {path if args.dataset else 'synthetic'}, {size}² frames; decoded cache built in "
              f"{time.perf_counter() - t0:.1f}s ({Path(str(path) + '.frames.u8').stat().st_size / 2**20:.0f} MiB)")
        rates = {mode: loader_rate(path, mode, 32, args.seconds) for mode in ("hdf5", "cache")}
        for mode, r in rates.items():
            print(f"loader, frames from {mode:5s}: {r:7.1f} samples/s per core (batch 32, decode + normalise + collate)")
        print(f"decoded cache vs HDF5: {rates['cache'] / rates['hdf5']:.1f}×")
        for model in args.models:
            r = step_rate(path, model, size, args.batch, args.steps, args.device)
            print(f"training step, {model} PARA at {size} px, batch {args.batch} on {args.device}: {r:7.2f} samples/s "
                  f"→ one loader core (cache) feeds {rates['cache'] / r:.1f}× what it consumes")
    need = H100_VITS448_SAMPLES_S / H100_LOADER_CORES
    print(f"H100 target (estimate): ViT-S/14 at 448 px trains at ≤ {H100_VITS448_SAMPLES_S} samples/s; with "
          f"{H100_LOADER_CORES} loader cores each must deliver ≥ {need:.0f} samples/s. Measured here (cache): "
          f"{rates['cache']:.0f}/s per core → {'enough' if rates['cache'] >= need else 'NOT enough'} "
          f"({rates['cache'] / need:.1f}× the need); from HDF5: {rates['hdf5'] / need:.1f}×.")


if __name__ == "__main__":
    main()
