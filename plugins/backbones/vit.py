"""ViT backbones through timm: ``dinov2`` (any timm ViT name, optional local/HF-cache weights) and
``tiny_vit`` (a few-block ViT that trains on a CPU in minutes, for the quickstart and tests).

A backbone maps normalised images (B, 3, H, W) to ``(feature_map (B, C, h, w), cls (B, C))`` and
exposes ``embed_dim``, ``patch_size``, ``image_size`` and ``weights_info``. torch/timm are imported
only inside the factories (``pxp list-plugins`` must stay light).
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pxp.core.hookspecs import hookimpl


class DinoV2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["dinov2"] = "dinov2"
    model: str = Field("vit_small_patch14_dinov2", description="any timm ViT name, e.g. vit_small_patch16_dinov3")
    weights: str | None = Field(
        None,
        description="local .pth/.safetensors file, or an HF cache id (e.g. timm/vit_small_patch14_dinov2.lvd142m) "
        "read offline; null = random init (stated in every report)",
    )
    freeze: Literal["none", "all", "partial"] = "none"
    freeze_blocks: int = Field(0, ge=0, description="with freeze: partial, the first k blocks (and embeddings) are frozen")
    image_size: int = Field(224, gt=0, description="square input size; a multiple of the patch size")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra timm create_model kwargs (e.g. depth)")

    def smoke(self) -> dict:
        """Smoke scale: a random-init tiny ViT with this model's patch size (no weights needed)."""
        patch = int(m.group(1)) if (m := re.search(r"patch(\d+)", self.model)) else 14
        return TinyViTConfig(patch_size=patch, freeze=self.freeze, freeze_blocks=min(self.freeze_blocks, 1)).smoke()

    @model_validator(mode="after")
    def _partial_needs_blocks(self):
        if self.freeze == "partial" and self.freeze_blocks == 0:
            raise ValueError("freeze: partial needs freeze_blocks > 0 (how many leading blocks to freeze)")
        return self


class TinyViTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["tiny_vit"] = "tiny_vit"
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
    register("dinov2", DinoV2Config, make_dinov2, summary="timm ViT (DINOv2/v3 names); local or HF-cache weights, or random init")
    register("tiny_vit", TinyViTConfig, make_tiny_vit, summary="tiny timm ViT (random init) for CPU quickstart and tests")
