"""The PARA head module (torch; imported by the factory in ``__init__``)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pxp.core.contracts import VolumeHead
from pxp.plugins.heads.para import geometry
from pxp.plugins.heads.para.figures import ParaFigure
from pxp.plugins.heads.para.geometry import height_bin_index


# Gradient entries smaller than this are set to exactly 0 behind the head's GELUs while training on
# CPU (see FlushGELU). 1e-30 is 20+ orders of magnitude below the head's real gradients (1e-10 ..
# 1e-2), so no float32 sum they enter changes; it leaves headroom so that the products the next conv
# backward forms with them (x weights / activations) stay normal numbers too.
FLUSH_BELOW = 1e-30


class _FlushGELU(torch.autograd.Function):
    """Exact GELU forward; the input gradient has entries below ``FLUSH_BELOW`` in magnitude set to 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return F.hardshrink(torch.ops.aten.gelu_backward(g, x), FLUSH_BELOW)


class FlushGELU(nn.GELU):
    """``nn.GELU`` (same forward, no parameters, so checkpoints are unchanged) whose backward hands
    no subnormal floats to the convs before it while training on CPU; elsewhere plain GELU.

    Why: once the head has trained for a few hundred steps, the gradient reaching a GELU is often
    ~1e-20 where its slope is also small, and their product underflows below 1.2e-38 (subnormal) for
    a few % of the entries. oneDNN's CPU convolution backward then runs on microcode assists: the
    quickstart PARA step went from 0.13 s to 0.94 s over 300 steps (1.6 s vs 0.19 s per step on a
    trained vs a fresh checkpoint, one thread). Flushing near-zeros is what the FTZ/DAZ hardware
    modes do; unlike ``torch.set_flush_denormal`` it holds in every intra-op thread, not only the
    calling one.
    """

    def forward(self, x):
        if x.requires_grad and x.device.type == "cpu" and torch.is_grad_enabled():
            return _FlushGELU.apply(x)
        return super().forward(x)


def uv_to_cells(uv01: torch.Tensor, n: int) -> torch.Tensor:
    """Normalised image coordinates (..., 2) in [0, 1] → flat heatmap cell index row * n + col."""
    cr = (uv01 * n).floor().long().clamp(0, n - 1)
    return cr[..., 1] * n + cr[..., 0]


def _one_per_step(shared: torch.Tensor, horizon: int) -> torch.Tensor:
    """A shared gripper classifier's last layer (2 rows) as ``horizon`` copies, one per future step."""
    return shared.repeat(horizon, *([1] * (shared.ndim - 1)))


class ParaHead(nn.Module, VolumeHead):
    output_kind = "volume"
    figure = ParaFigure()  # the report's prediction strip: the probability map per step

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
        for i in range(cfg.conv_layers):
            d = 2 ** i if cfg.dilated else 1  # a small CNN's cell sees ≈ 15 px; dilation widens the head's view
            layers += [nn.Conv2d(hid, hid, 3, padding=d, dilation=d), FlushGELU()]
        self.convs = nn.Sequential(*layers)
        self.to_logits = nn.Conv2d(hid, cfg.horizon * cfg.height_bins, 1)
        self.step_embed = nn.Parameter(torch.randn(cfg.horizon, hid) * 0.02)
        # when to close depends on how low the arm is, which the feature at the target pixel does not say
        self.height_embed = nn.Linear(1, hid) if cfg.gripper_sees_height else None
        # One open/close classifier per future step (its last layer has T × 2 outputs; step t reads its own
        # pair): in a vertical descent every step's pixel is the same, so a shared classifier would give every
        # step the same answer.
        self.gripper_head = nn.Sequential(nn.LayerNorm(hid), nn.Linear(hid, hid), nn.GELU(), nn.Linear(hid, 2 * cfg.horizon))
        self._register_load_state_dict_pre_hook(self._tile_shared_gripper)

    def _tile_shared_gripper(self, state, prefix, *args):
        """A checkpoint from before the per-step classifiers (last layer with 2 outputs) loads as T copies of
        its one classifier: the same predictions as before."""
        for key in (prefix + "gripper_head.3.weight", prefix + "gripper_head.3.bias"):
            if key in state and state[key].shape[0] == 2 and self.horizon > 1:
                state[key] = _one_per_step(state[key], self.horizon)

    def transfer_tensor(self, name: str, source: torch.Tensor, source_cfg: dict):
        """``init_from`` hook for a tensor whose shape differs from ours: a 1-height-bin (2D heatmap)
        head's logits layer seeds this N-bin volume by tiling each step's channel across the N bins,
        with log N taken off the bias, so every bin starts with the same logits and the 2D marginal
        (logsumexp over bins, softmax over pixels) is exactly the pretrained heatmap; a shared gripper
        classifier (one from before the per-step ones) is copied once per step. None = not ours."""
        N, T = self.height_bins, self.horizon
        if name.startswith("gripper_head.3.") and source.shape[0] == 2:
            return _one_per_step(source, T)
        if name not in ("to_logits.weight", "to_logits.bias") or int(source_cfg.get("height_bins", 0)) != 1:
            return None
        if int(source_cfg.get("horizon", -1)) != T or source.shape[0] != T or source.shape[1:] != getattr(self.to_logits, name.split(".")[1]).shape[1:]:
            return None
        tiled = source.repeat_interleave(N, dim=0)  # channel t·N + b ← channel t (logits view (T, N, h, w))
        return tiled - math.log(N) if name.endswith("bias") else tiled

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
        feat = x.flatten(2).gather(2, cells.unsqueeze(1).expand(-1, x.shape[1], -1)).transpose(1, 2)  # (B, T, hid)
        feat = feat + self.step_embed.to(feat.dtype)
        if self.height_embed is not None:
            feat = feat + self.height_embed(self._height(cond)).unsqueeze(1).to(feat.dtype)
        steps = torch.arange(T, device=feat.device)
        gripper_logits = self.gripper_head(feat).view(B, T, T, 2)[:, steps, steps]  # step t's classifier at step t
        return {"logits": logits, "gripper_logits": gripper_logits}

    def _height(self, cond: dict) -> torch.Tensor:
        """The end effector's z scaled to [-1, 1] over ``height_range``: (B, 1)."""
        lo, hi = self.cfg.height_range
        return (2.0 * (cond["eef_pos"][:, 2:3].float() - lo) / (hi - lo) - 1.0).to(self.height_embed.weight.dtype)

    def volume_targets(self, target_uv: torch.Tensor, target_z: torch.Tensor) -> torch.Tensor:
        """Flat index into the (bin, row, col) volume for each target: (B, T) long."""
        n = self.heatmap_size
        bins = height_bin_index(target_z, self.height_bins, self.cfg.height_range)
        return bins * (n * n) + uv_to_cells(target_uv, n)

    def pixel_targets(self, target_uv: torch.Tensor) -> torch.Tensor:
        return uv_to_cells(target_uv, self.heatmap_size)

    def decode(self, out: dict, cameras: list) -> dict:
        """Batch decode with each sample's camera: xyz (B,T,3), pixel (B,T,2), gripper prob (B,T).

        The joint argmax runs on the device for the whole batch (only (B, T) indices leave it); the
        cells and bins then go through :func:`geometry.decode_cells` / :func:`geometry.cell_to_pixel` with
        each sample's camera, exactly as :func:`geometry.decode` does for one sample."""
        logits = out["logits"].detach()
        if self.cfg.subcell:  # the local mean needs the neighbourhood: the whole volume goes to the host
            cells, bins = geometry.peaks(logits.float().cpu().numpy(), subcell=True)
        else:
            h, w = logits.shape[-2:]  # the argmax stays on the device: only (B, T) indices go to the host
            cells, bins = geometry.unravel_peak(logits.float().flatten(2).argmax(dim=-1).cpu().numpy(), h, w)
        xyz = np.stack([geometry.decode_cells(c, b, cam, self.cfg) for c, b, cam in zip(cells, bins, cameras)])
        uv = np.stack([geometry.cell_to_pixel(c, cam, self.cfg) for c, cam in zip(cells, cameras)])
        grip = out["gripper_logits"].detach().float().softmax(-1)[..., 1].cpu().numpy()
        return {"xyz": xyz, "pixel": uv, "gripper": grip}
