"""The objectives' losses (torch; imported by the factories in ``__init__``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pxp.experiment.policy import image_uv


def _gripper_ce(out: dict, batch: dict) -> torch.Tensor:
    logits = out["gripper_logits"].float()
    return F.cross_entropy(logits.reshape(-1, 2), batch["target_gripper"].round().long().reshape(-1))


def _unsupported(name: str, head) -> ValueError:
    return ValueError(f"{name}: no loss for a head with output_kind={getattr(head, 'output_kind', None)!r} "
                      "(expected 'volume' or 'regression')")


class BehaviorCloning:
    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, out: dict, batch: dict, head):
        grip = _gripper_ce(out, batch)
        uv = image_uv(batch, "target_pixel")
        if head.output_kind == "volume":
            logits = out["logits"].float().flatten(2)  # (B, T, N*h*w): pixel and height bin jointly
            target = head.volume_targets(uv, batch["target_pos"][..., 2])
            pos = F.cross_entropy(logits.flatten(0, 1), target.flatten())
            name = "loss/volume_ce"
        elif head.output_kind == "regression":
            if head.space != "world":
                raise ValueError("behavior_cloning needs act_regression with space: world")
            pos = (out["pos01"] - head.normalize(batch["target_pos"].float())).abs().mean()
            name = "loss/position_l1"
        else:
            raise _unsupported("behavior_cloning", head)
        loss = self.cfg.position_weight * pos + self.cfg.gripper_weight * grip
        return loss, {name: pos.detach(), "loss/gripper_ce": grip.detach()}


class PointTrack2D:
    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, out: dict, batch: dict, head):
        uv = image_uv(batch, "target_pixel")
        if head.output_kind == "volume":
            # log-sum-exp over height bins = a 2D heatmap's log-likelihood (exactly the one-bin case).
            logits = out["logits"].float().logsumexp(dim=2).flatten(2)
            loss = F.cross_entropy(logits.flatten(0, 1), head.pixel_targets(uv).flatten())
            return loss, {"loss/heatmap_ce": loss.detach()}
        if head.output_kind == "regression":
            if head.space != "image":
                raise ValueError("point_track_2d needs act_regression with space: image (2D pixel tracks)")
            loss = (out["pos01"] - uv.float()).abs().mean()
            return loss, {"loss/track_l1": loss.detach()}
        raise _unsupported("point_track_2d", head)
