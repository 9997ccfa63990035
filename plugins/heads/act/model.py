"""The ACT regression head module (torch; imported by the factory in ``__init__``)."""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from pxp.core.contracts import RegressionHead
from pxp.experiment.heatmaps import PointFigure


class ActHead(nn.Module, RegressionHead):
    output_kind = "regression"
    figure = PointFigure("ACT")  # the report's prediction strip: the predicted point per step

    def __init__(self, cfg, in_dim: int):
        super().__init__()
        self.cfg = cfg
        self.horizon, self.space = cfg.horizon, cfg.space
        self.dims = 3 if cfg.space == "world" else 2
        # which end-effector coordinates join the gripper in the state: xyz, z alone ("height") or none
        self.eef_axes = {True: slice(0, 3), "height": slice(2, 3), False: slice(0, 0)}[cfg.condition_on_eef]
        state_dim = len(range(3)[self.eef_axes]) + 1 if cfg.condition_on_state else 0
        layers: list[nn.Module] = []
        width = (2 * cfg.keypoints if cfg.readout == "spatial_softmax" else in_dim) + state_dim
        for _ in range(cfg.mlp_layers):
            layers += [nn.Linear(width, cfg.hidden_dim), nn.GELU()]
            width = cfg.hidden_dim
        self.norm = nn.LayerNorm(in_dim)
        if cfg.readout == "queries":
            self.queries = nn.Parameter(torch.randn(cfg.horizon, in_dim) * 0.02)
            self.attend = nn.MultiheadAttention(in_dim, num_heads=_heads(in_dim), batch_first=True)
        elif cfg.readout == "spatial_softmax":
            self.keypoint_maps = nn.Conv2d(in_dim, cfg.keypoints, 1)
            self.log_temperature = nn.Parameter(torch.zeros(()))  # learned sharpness of each keypoint's softmax
        self.mlp = nn.Sequential(*layers)
        self.pos_out = nn.Linear(width, cfg.horizon * self.dims)
        self.gripper_out = nn.Linear(width, cfg.horizon * 2)
        # Buffers, so the box travels with the checkpoint; NaN until configured or set from the scene.
        nan = torch.full((3,), float("nan"))
        self.register_buffer("ws_low", torch.tensor(cfg.workspace_low, dtype=torch.float32) if cfg.workspace_low else nan)
        self.register_buffer("ws_high", torch.tensor(cfg.workspace_high, dtype=torch.float32) if cfg.workspace_high else nan.clone())

    @property
    def needs_workspace(self) -> bool:
        return bool(torch.isnan(self.ws_low).any() or torch.isnan(self.ws_high).any())

    def prepare(self, setup) -> dict:
        """Before training: the normalisation box is the head config's own, else the scene's
        (``setup.end_effector_box``); never the training data's range. Returned for the checkpoint marker."""
        hcfg = self.cfg
        if hcfg.workspace_low and hcfg.workspace_high:
            low, high, source = hcfg.workspace_low, hcfg.workspace_high, "head config"
        elif setup.end_effector_box is not None:
            low, high, source = setup.end_effector_box
        else:
            from pxp.core.errors import PxpError

            raise PxpError(f"{hcfg.type}: no workspace box to normalise positions to — the scene provides no "
                           "end_effector_box(); set head.workspace_low and head.workspace_high")
        self.set_workspace(low, high)
        box = {"low": [round(float(v), 6) for v in low], "high": [round(float(v), 6) for v in high], "source": source}
        setup.log(f"workspace box from the {source}: low {box['low']}, high {box['high']} (the same for every split)")
        return box

    def set_workspace(self, low, high) -> None:
        """The normalisation box (world metres): the scene's workspace, never the training split's range."""
        lo, hi = np.asarray(low, dtype=float).reshape(3), np.asarray(high, dtype=float).reshape(3)
        if not np.all(hi > lo):
            raise ValueError(f"workspace box needs high > low on every axis, got {lo.tolist()}, {hi.tolist()}")
        self.ws_low.copy_(torch.as_tensor(lo, dtype=torch.float32))
        self.ws_high.copy_(torch.as_tensor(hi, dtype=torch.float32))

    # Positions are regressed in box-normalised coordinates (−1..1 inside the box, 0 at its centre) with
    # a LINEAR output, as LeRobot's ACT regresses normalised actions: nothing squashes the output, so a
    # target outside the training data's range (or even outside the box) stays representable.
    def normalize(self, xyz: torch.Tensor) -> torch.Tensor:
        return 2.0 * (xyz - self.ws_low) / (self.ws_high - self.ws_low) - 1.0

    def denormalize(self, p: torch.Tensor) -> torch.Tensor:
        return self.ws_low + (p + 1.0) * 0.5 * (self.ws_high - self.ws_low)

    def _readout(self, fmap: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """(B, C) from the CLS token; (B, 2K) keypoints; or (B, T, C): each step's query attends over the
        patch tokens, whose keys and values carry a fixed 2D sin-cos code of their position (so the
        attention weights act as a soft argmax over patch positions)."""
        if self.cfg.readout == "cls":
            return self.norm(cls)
        if self.cfg.readout == "spatial_softmax":
            return spatial_softmax(self.keypoint_maps(fmap) / self.log_temperature.exp())
        B, C, h, w = fmap.shape
        tokens = fmap.flatten(2).transpose(1, 2) + sincos_2d(h, w, C).to(fmap)
        q = self.queries.to(fmap.dtype).expand(B, -1, -1)
        return self.norm(self.attend(q, tokens, tokens, need_weights=False)[0])

    def forward(self, fmap: torch.Tensor, cls: torch.Tensor, cond: dict) -> dict:
        B, T = cls.shape[0], self.horizon
        z = self._readout(fmap, cls)
        per_step = z.dim() == 3
        if self.cfg.condition_on_state:
            if self.needs_workspace:
                raise RuntimeError("act_regression: workspace box not set (configure workspace_low/high or let "
                                   "training take it from the scene)")
            eef = self.normalize(cond["eef_pos"].float())[:, self.eef_axes]
            state = torch.cat([eef, cond["gripper"].float().view(B, 1)], -1)
            if per_step:
                state = state.unsqueeze(1).expand(-1, T, -1)
            z = torch.cat([z, state.to(z.dtype)], -1)
        h = self.mlp(z)
        pos, grip = self.pos_out(h), self.gripper_out(h)
        if per_step:  # one query per step: keep that step's own outputs
            eye = torch.eye(T, dtype=torch.bool, device=h.device)
            pos = pos.view(B, T, T, self.dims)[:, eye]
            grip = grip.view(B, T, T, 2)[:, eye]
        pos = pos.float().view(B, T, self.dims)
        if self.cfg.relative_to_eef:  # offsets from where the arm is now (world space only: validated)
            pos = pos + self.normalize(cond["eef_pos"].float()).unsqueeze(1)
        out = {
            "pos01": pos,
            "gripper_logits": grip.view(B, T, 2),
            "eef_pos": cond["eef_pos"],
        }
        return out

    def decode(self, out: dict, cameras: list) -> dict:
        """xyz (B,T,3) world, pixel (B,T,2) in each camera's image, gripper prob (B,T)."""
        p01 = out["pos01"].detach().float()
        grip = out["gripper_logits"].detach().float().softmax(-1)[..., 1].cpu().numpy()
        if self.space == "world":
            xyz = self.denormalize(p01).cpu().numpy().astype(float)
            pix = np.stack([cam.project(x) for x, cam in zip(xyz, cameras)])
        else:  # a 2D track has no depth: place it at the current end-effector height
            p = p01.cpu().numpy().astype(float)
            pix = np.stack([q * (cam.width, cam.height) for q, cam in zip(p, cameras)])
            z = out["eef_pos"][:, 2].detach().float().cpu().numpy()
            xyz = np.stack([cam.unproject(u, zz) for u, cam, zz in zip(pix, cameras, z)])
        return {"xyz": xyz, "pixel": pix, "gripper": grip}


def _heads(dim: int) -> int:
    return next(h for h in (4, 3, 2, 1) if dim % h == 0)


def spatial_softmax(maps: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) → (B, 2K): each map's softmax over its cells, read out as the expected (x, y) of the
    cell centres in −1..1 (x across, y down). Sub-cell precise, and linear in where the mass sits."""
    B, K, h, w = maps.shape
    prob = maps.float().flatten(2).softmax(-1).view(B, K, h, w)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=maps.device)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=maps.device)
    x = (prob.sum(2) * xs).sum(-1)
    y = (prob.sum(3) * ys).sum(-1)
    return torch.stack([x, y], -1).flatten(1).to(maps.dtype)


@functools.lru_cache(maxsize=8)  # the same grid every training step: build it once
def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """(h·w, dim) fixed sin-cos position code of a patch grid (row-major), half the channels per axis."""
    quarter = max(dim // 4, 1)
    freq = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    parts = [f(a.reshape(-1, 1) * freq) for a in (rows, cols) for f in (torch.sin, torch.cos)]
    code = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(code, (0, dim - code.shape[1]))
