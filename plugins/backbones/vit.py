"""ViT backbones through timm: ``dinov2`` (any timm ViT name; pretrained weights from timm, a local
file or the HF cache, or an explicit random init) and ``tiny_vit`` (a few-block random-init ViT that
trains on a CPU in minutes, for the quickstart and tests).

``weights:`` of ``dinov2``:
  ``timm``             timm's own pretrained weights (downloaded once into the HF cache; offline: read there)
  a local file         Meta's .pth or a timm .safetensors (position embeddings are resampled)
  ``hf-hub:<repo id>`` a repo in the local Hugging Face cache, read offline
  ``random``           random init, on purpose (every report says so)
``DinoV2Config.preflight()`` says, before any work starts, whether the weights can be had here; ``pxp
run`` calls it for every backbone of a spec (pxp.experiment.training.preflight), so a run that cannot get its
weights stops with one message saying how to supply them.

A backbone maps normalised images (B, 3, H, W) to ``(feature_map (B, C, h, w), cls (B, C))`` and
exposes ``embed_dim``, ``patch_size``, ``image_size`` and ``weights_info``. torch/timm are imported
only inside the factories (``pxp list-plugins`` must stay light).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pxp.core.hookspecs import hookimpl


class DinoV2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["dinov2"] = "dinov2"
    model: str = Field("vit_small_patch14_dinov2", description="any timm ViT name, e.g. vit_small_patch16_dinov3")
    weights: str = Field(
        "timm",
        description="timm (timm's pretrained download) | a local .pth/.safetensors file | hf-hub:<repo id> "
        "(local HF cache, offline) | random (explicit random init, stated in every report)",
    )
    freeze: Literal["none", "all", "partial"] = "none"
    freeze_blocks: int = Field(0, ge=0, description="with freeze: partial, the first k blocks (and embeddings) are frozen")
    image_size: int = Field(224, gt=0, description="square input size; a multiple of the patch size")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra timm create_model kwargs (e.g. depth)")

    def smoke(self) -> dict:
        """Smoke scale: a random-init tiny ViT with this model's patch size (no weights needed)."""
        patch = int(m.group(1)) if (m := re.search(r"patch(\d+)", self.model)) else 14
        return TinyViTConfig(patch_size=patch, freeze=self.freeze, freeze_blocks=min(self.freeze_blocks, 1)).smoke()

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, v):
        if v is None:  # the old spelling of random init
            return "random"
        if not isinstance(v, str) or not v.strip():
            raise ValueError("weights must be timm, random, hf-hub:<repo id> or a path to a weights file")
        if weights_kind(v) == "file" and not Path(v).expanduser().is_file():
            raise ValueError(f"weights file {v!r} does not exist (or use timm, hf-hub:<repo id> or random)")
        return v

    @model_validator(mode="after")
    def _partial_needs_blocks(self):
        if self.freeze == "partial" and self.freeze_blocks == 0:
            raise ValueError("freeze: partial needs freeze_blocks > 0 (how many leading blocks to freeze)")
        return self

    def preflight(self) -> str | None:
        """None when the weights can be obtained on this machine now, else why not (one line). Fast:
        no download is attempted, and a machine without internet is detected in seconds."""
        from pxp.plugins.backbones import _weights

        return _weights.unavailable(self)


def weights_kind(weights: str) -> str:
    """``timm`` | ``random`` | ``hf`` (``hf-hub:<repo id>``) | ``file`` (anything else: a path)."""
    if weights in ("timm", "random"):
        return weights
    return "hf" if weights.startswith(("hf-hub:", "hf_hub:")) else "file"


class TinyViTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["tiny_vit"] = "tiny_vit"
    weights: Literal["random"] = Field("random", description="always random init (stated in every report)")
    image_size: int = Field(128, gt=0)
    patch_size: int = Field(16, gt=0)
    embed_dim: int = Field(96, gt=0)
    depth: int = Field(2, gt=0)
    num_heads: int = Field(3, gt=0)
    freeze: Literal["none", "all", "partial"] = "none"
    freeze_blocks: int = Field(0, ge=0)

    def smoke(self) -> dict:
        from pxp.core.smoke import IMAGE_SIZE

        side = self.patch_size * max(1, round(IMAGE_SIZE / self.patch_size))
        return {**self.model_dump(), "image_size": side, "embed_dim": 48, "depth": 1, "num_heads": 3,
                "freeze_blocks": min(self.freeze_blocks, 1)}


def make_dinov2(config: DinoV2Config):
    from pxp.plugins.backbones import _vit_impl

    return _vit_impl.build_dinov2(config)


def make_tiny_vit(config: TinyViTConfig):
    from pxp.plugins.backbones import _vit_impl

    return _vit_impl.build_tiny_vit(config)


@hookimpl
def pxp_register_backbones(register):
    register("dinov2", DinoV2Config, make_dinov2,
             summary="timm ViT (DINOv2/v3 names); timm, local-file or HF-cache weights, or weights: random")
    register("tiny_vit", TinyViTConfig, make_tiny_vit, summary="tiny timm ViT (random init) for CPU quickstart and tests")
