"""torch side of the PARA head (imported by ``para.make_para_head``)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pxp.core.policy import height_bin_index
from pxp.plugins.heads import para


def uv_to_cells(uv01: torch.Tensor, n: int) -> torch.Tensor:
    """Normalised image coordinates (..., 2) in [0, 1] → flat heatmap cell index row * n + col."""
    cr = (uv01 * n).floor().long().clamp(0, n - 1)
    return cr[..., 1] * n + cr[..., 0]


class ParaHead(nn.Module):
    output_kind = "volume"

    def __init__(self, cfg, in_dim: int):
        super().__init__()
        self.cfg = cfg
        self.horizon, self.height_bins, self.heatmap_size = cfg.horizon, cfg.height_bins, cfg.heatmap_size
        hid = cfg.hidden_dim
        # Learned state embeddings, added to the patch features before the conv stack.
        self.eef_embed = nn.Parameter(torch.randn(in_dim) * 0.02) if cfg.condition_on_eef else None
        self.gripper_embed = nn.Parameter(torch.randn(in_dim) * 0.02) if cfg.condition_on_gripper else None
        # Project to the hidden width at patch resolution first: cheaper than upsampling C channels.
        self.proj = nn.Conv2d(in_dim, hid, 1)
        layers: list[nn.Module] = []
        for _ in range(cfg.conv_layers):
            layers += [nn.Conv2d(hid, hid, 3, padding=1), nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.to_logits = nn.Conv2d(hid, cfg.horizon * cfg.height_bins, 1)
        self.step_embed = nn.Parameter(torch.randn(cfg.horizon, hid) * 0.02)
        self.gripper_head = nn.Sequential(nn.LayerNorm(hid), nn.Linear(hid, hid), nn.GELU(), nn.Linear(hid, 2))

    def _condition(self, fmap: torch.Tensor, cond: dict) -> torch.Tensor:
        B, C, h, w = fmap.shape
        if self.eef_embed is not None:
            col = (cond["eef_uv"][:, 0] * w).floor().long().clamp(0, w - 1)
            row = (cond["eef_uv"][:, 1] * h).floor().long().clamp(0, h - 1)
            onehot = F.one_hot(row * w + col, h * w).view(B, 1, h, w).to(fmap.dtype)
            fmap = fmap + onehot * self.eef_embed.view(1, C, 1, 1).to(fmap.dtype)
        if self.gripper_embed is not None:
            g = cond["gripper"].view(B, 1, 1, 1).to(fmap.dtype)
            fmap = fmap + g * self.gripper_embed.view(1, C, 1, 1).to(fmap.dtype)
        return fmap

    def forward(self, fmap: torch.Tensor, cls: torch.Tensor, cond: dict) -> dict:
        B, n, T = fmap.shape[0], self.heatmap_size, self.horizon
        x = self.proj(self._condition(fmap, cond))
        x = self.convs(F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False))
        logits = self.to_logits(x).view(B, T, self.height_bins, n, n)
        target_uv = cond.get("target_uv")
        if target_uv is not None:  # teacher forcing: read the gripper at the ground-truth pixel
            cells = uv_to_cells(target_uv, n)
        else:  # inference: at the argmax pixel (marginalised over height)
            cells = logits.detach().amax(dim=2).flatten(2).argmax(dim=-1)
        feat = x.flatten(2).gather(2, cells.unsqueeze(1).expand(-1, x.shape[1], -1))  # (B, hid, T)
        gripper_logits = self.gripper_head(feat.transpose(1, 2) + self.step_embed.to(feat.dtype))
        return {"logits": logits, "gripper_logits": gripper_logits}

    def volume_targets(self, target_uv: torch.Tensor, target_z: torch.Tensor) -> torch.Tensor:
        """Flat index into the (bin, row, col) volume for each target: (B, T) long."""
        n = self.heatmap_size
        bins = height_bin_index(target_z, self.height_bins, self.cfg.height_range)
        return bins * (n * n) + uv_to_cells(target_uv, n)

    def pixel_targets(self, target_uv: torch.Tensor) -> torch.Tensor:
        return uv_to_cells(target_uv, self.heatmap_size)

    def decode(self, out: dict, cameras: list) -> dict:
        """Batch decode with each sample's camera: xyz (B,T,3), pixel (B,T,2), gripper prob (B,T)."""
        xyz, uv = [], []
        for logits, cam in zip(out["logits"], cameras):
            p, pix, _, _ = para.decode(logits, cam, self.cfg)
            xyz.append(p)
            uv.append(pix)
        grip = out["gripper_logits"].detach().float().softmax(-1)[..., 1].cpu().numpy()
        return {"xyz": np.stack(xyz), "pixel": np.stack(uv), "gripper": grip}
