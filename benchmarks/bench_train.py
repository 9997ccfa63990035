"""pxp's training step vs a bare PyTorch loop: same backbone, head, batch, optimizer and device.

    python benchmarks/bench_train.py                         # CPU, tiny ViT + PARA at 64 px
    python benchmarks/bench_train.py --head act
    python benchmarks/bench_train.py --backbone small_cnn --size 128 --batch 32 --head act   # the CPU study's
    python benchmarks/bench_train.py --device cuda --backbone vits14 --size 224 --batch 16

pxp's side is ``pxp.experiment.training.LoopStep`` (exactly what ``train()`` runs each step: lr schedule,
autocast, Policy.forward, the registered objective, AdamW, on-device loss sums and NaN flag) plus the
loop's own bookkeeping; the bare side calls the same backbone and head modules and writes the loss
inline. Both start from identical weights. Prints the time per step of each and the ratio (goal ≤ 1.10).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np


def make_batch(B: int, T: int, size: int, device):
    import torch

    from pxp.core.camera import Camera

    eye = np.array([0.9, 0.0, 1.55])
    f = np.array([0.0, 0.0, 0.95]) - eye
    f /= np.linalg.norm(f)
    x = np.cross(f, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    cam = Camera.from_fovy(50.0, size, size, eye, np.stack([x, np.cross(-f, x), -f], axis=1))
    rng = np.random.default_rng(0)
    tgt = rng.uniform([-0.1, -0.15, 0.9], [0.1, 0.15, 1.15], size=(B, T, 3))
    eef = rng.uniform([-0.1, -0.15, 0.9], [0.1, 0.15, 1.15], size=(B, 3))
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32, device=device)
    return {"image": torch.randn(B, 3, size, size, device=device), "eef_pos": t(eef), "eef_pixel": t(cam.project(eef)),
            "gripper": t(rng.integers(0, 2, B)), "target_pos": t(tgt), "target_pixel": t(cam.project(tgt)),
            "target_gripper": t(rng.integers(0, 2, (B, T))), "K": t(np.broadcast_to(cam.K, (B, 3, 3))),
            "extrinsics": t(np.broadcast_to(cam.extrinsics, (B, 4, 4)))}


def build(args):
    from pxp.core.plugins import get_registry
    from pxp.experiment.policy import build_policy
    from pxp.plugins.backbones.cnn import SmallCNNConfig
    from pxp.plugins.backbones.vit import DinoV2Config, TinyViTConfig
    from pxp.plugins.heads.act import ActRegressionConfig
    from pxp.plugins.heads.para import ParaVolumeConfig
    from pxp.plugins.objectives.losses import BehaviorCloningConfig

    reg = get_registry()
    if args.backbone == "small_cnn":
        bb = SmallCNNConfig(width=96, stages=args.stages, image_size=args.size)
    elif args.backbone == "tiny":
        bb = TinyViTConfig(image_size=args.size, patch_size=8, embed_dim=96, depth=2, num_heads=3)
    else:
        bb = DinoV2Config(model="vit_small_patch14_dinov2", image_size=args.size, weights="random")
    head = (ParaVolumeConfig(horizon=args.horizon, heatmap_size=args.heatmap, hidden_dim=args.hidden)
            if args.head == "para" else
            ActRegressionConfig(horizon=args.horizon, workspace_low=(-0.5, -0.5, 0.8), workspace_high=(0.5, 0.5, 1.4)))
    obj = BehaviorCloningConfig()
    policy = build_policy(bb, head, reg.create, device=args.device, objective_cfg=obj)
    return policy, reg.create("objectives", obj)


def optimizer_for(params, lr, wd, fused):
    """The same AdamW grouping pxp uses (decay on matrices only), written out by hand."""
    import torch

    params = [p for p in params if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": wd},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


def bare_step_fn(backbone, head, kind: str, opt, dtype, device_type: str):
    """The loop a researcher would write by hand around the same modules."""
    import torch
    import torch.nn.functional as F

    def step(b):
        H, W = b["image"].shape[-2:]
        wh = torch.tensor([W, H], device=b["image"].device, dtype=torch.float32)
        cond = {"eef_uv": b["eef_pixel"] / wh, "eef_pos": b["eef_pos"], "gripper": b["gripper"],
                "target_uv": b["target_pixel"] / wh}
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            fmap, cls = backbone(b["image"])
            out = head(fmap, cls, cond)
            grip = F.cross_entropy(out["gripper_logits"].float().reshape(-1, 2), b["target_gripper"].long().reshape(-1))
            if kind == "para":
                idx = head.volume_targets(cond["target_uv"], b["target_pos"][..., 2])
                pos = F.cross_entropy(out["logits"].float().flatten(2).flatten(0, 1), idx.flatten())
            else:
                pos = (out["pos01"] - head.normalize(b["target_pos"])).abs().mean()
            loss = pos + grip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(fn, steps: int, sync) -> float:
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        fn(i)
    sync()
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", choices=["tiny", "small_cnn", "vits14"], default="tiny")
    ap.add_argument("--head", choices=["para", "act"], default="para")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--stages", type=int, default=3, help="small_cnn stride-2 stages")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=4)
    ap.add_argument("--heatmap", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave as is)")
    args = ap.parse_args(argv)

    import torch

    from pxp.core.spec import TrainConfig
    from pxp.experiment.training import LoopStep, _Budget, amp_dtype, make_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy, objective = build(args)
    backbone, head = copy.deepcopy(policy.backbone), copy.deepcopy(policy.head)  # identical start
    batch = make_batch(args.batch, args.horizon, args.size, policy.device)
    tcfg = TrainConfig(steps=10**9, lr=1e-4, warmup_steps=0, amp=args.amp, batch_size=args.batch)
    dtype = amp_dtype(args.amp, policy.device)
    cuda = policy.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    loop = LoopStep(policy, objective, make_optimizer(policy, tcfg), tcfg, dtype)
    budget = _Budget(tcfg.steps, tcfg.minutes, 0.0)

    def pxp_step(i):  # train()'s per-step work: schedule + step + accounting + budget check
        loop(batch, i, budget.progress(i))
        budget.done(i + 1)

    backbone.train(), head.train()
    bare = bare_step_fn(backbone, head, args.head, optimizer_for(list(backbone.parameters()) + list(head.parameters()),
                                                                 tcfg.lr, tcfg.weight_decay, cuda),
                        dtype, policy.device.type)
    policy.net.train()
    for _ in range(3):  # warm up both (allocator, kernels, optimizer state)
        pxp_step(0)
        bare(batch)
    ours, theirs = [], []
    for _ in range(args.rounds):  # interleaved rounds: drift on a shared machine hits both sides
        ours.append(timed(pxp_step, args.steps, sync))
        theirs.append(timed(lambda i: bare(batch), args.steps, sync))
    a, b = statistics.median(ours), statistics.median(theirs)
    ratio = a / b
    name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; backbone {args.backbone} @ {args.size}px, head {args.head}, batch {args.batch}, "
          f"amp {dtype or 'fp32'}; {args.rounds} rounds × {args.steps} steps (median)")
    print(f"pxp training step : {1000 * a:8.2f} ms")
    print(f"bare PyTorch loop : {1000 * b:8.2f} ms")
    print(f"ratio pxp / bare  : {ratio:8.3f}   (goal ≤ 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    return ratio


if __name__ == "__main__":
    sys.exit(0 if main() <= 1.10 else 1)
