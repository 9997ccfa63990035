"""Configs of the ViT backbones (see ``__init__`` for what they build)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pxp.core.contracts import BackboneConfig

from pxp.plugins.backbones.vit.weights import weights_kind


class DinoV2Config(BackboneConfig):
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
        from pxp.plugins.backbones.vit import weights

        return weights.unavailable(self)

    def how_to_supply(self, policies: list[str]) -> str:
        """How to supply the weights, or opt into a random init (the end of ``pxp run``'s message)."""
        from pxp.plugins.backbones.vit import weights

        return weights.how_to(self.model, policies)



class TinyViTConfig(BackboneConfig):
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
