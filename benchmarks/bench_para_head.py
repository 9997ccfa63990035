"""What a PARA training step costs at CPU scale, per head setting, as a ratio to the CPU specs' head.

    OMP_NUM_THREADS=1 python benchmarks/bench_para_head.py [--backbone small_cnn]

Tiny random-init ViT (or the CPU study's ``small_cnn``) at 128 px, batch 32, synthetic inputs; one step = forward, a squared-output loss,
backward, AdamW. Prints ms per step and the ratio to the baseline (heatmap 32², 16 bins, hidden 64),
measured in the same run (docs/history/, issue 13: why the CPU study keeps the 32² heatmap).
"""
import time

import torch

from pxp.core.plugins import get_registry
from pxp.experiment.policy import build_policy

BACKBONES = {"tiny_vit": {"type": "tiny_vit", "image_size": 128, "patch_size": 16, "embed_dim": 96, "depth": 2,
                          "weights": "random"},
             "small_cnn": {"type": "small_cnn", "width": 96, "stages": 3, "image_size": 128}}
BASE = {"type": "para_volume", "horizon": 4, "height_bins": 16, "heatmap_size": 32, "hidden_dim": 64}
VARIANTS = {"heatmap 32², 16 bins, hidden 64 (baseline)": {}, "hidden 32": {"hidden_dim": 32},
            "1 conv layer": {"conv_layers": 1}, "heatmap 64², 32 bins, hidden 32": {"heatmap_size": 64, "height_bins": 32, "hidden_dim": 32}}


def ms_per_step(reg, head: dict, backbone: dict = BACKBONES["tiny_vit"], batch: int = 32, steps: int = 10) -> float:
    cfg = lambda kind, d: reg.get(kind, d["type"]).config_model.model_validate(d)
    policy = build_policy(cfg("backbones", backbone), cfg("heads", head), reg.create)
    opt = torch.optim.AdamW(policy.net.parameters(), 1e-3)
    x = torch.randn(batch, 3, 128, 128)
    cond = {"eef_uv": torch.rand(batch, 2), "eef_pos": torch.rand(batch, 3), "gripper": torch.rand(batch),
            "target_uv": torch.rand(batch, head["horizon"], 2)}

    def step():
        fmap, cls = policy.net["backbone"](x)
        out = policy.net["head"](fmap, cls, cond)
        loss = sum(v.float().pow(2).mean() for v in out.values() if torch.is_tensor(v) and v.requires_grad)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", choices=sorted(BACKBONES), default="tiny_vit")
    backbone = BACKBONES[ap.parse_args().backbone]
    torch.manual_seed(0)
    reg = get_registry()
    base = None
    for name, change in VARIANTS.items():
        ms = ms_per_step(reg, {**BASE, **change}, backbone)
        base = base or ms
        print(f"{name}: {ms:.0f} ms/step, {ms / base:.2f}× the baseline")


if __name__ == "__main__":
    main()
