"""The ViT backbone modules (torch/timm; imported only by the factories in ``__init__``)."""
from __future__ import annotations


import math

import torch
from torch import nn


def _import_timm():
    try:
        import timm
    except RuntimeError as e:  # a CPU torch paired with a CUDA torchvision fails inside torchvision
        if "nms" in str(e):
            raise RuntimeError(
                "timm could not import torchvision (operator torchvision::nms does not exist): torch and "
                "torchvision builds do not match. Reinstall with `pip install timm` in a fresh venv without "
                "pinning a local CPU-only torch wheel."
            ) from e
        raise
    return timm


class ViTBackbone(nn.Module):
    """Wraps a timm VisionTransformer: patch tokens → (B, C, h, w) map, token 0 → CLS.

    With ``freeze: all`` or ``partial`` it offers its frozen leading part to the feature cache
    (:mod:`pxp.experiment.feature_cache`): the tokens after the embeddings and the frozen blocks."""

    def __init__(self, model: nn.Module, image_size: int, weights_info: dict, config: dict | None = None):
        super().__init__()
        self.model = model
        self.image_size = int(image_size)
        self.weights_info = weights_info
        self.config = dict(config or {})
        freeze = self.config.get("freeze", "none")
        self.frozen_blocks = {"all": len(model.blocks), "partial": self.config.get("freeze_blocks", 0)}.get(freeze, 0)
        self.frozen_norm = freeze == "all"  # the final norm is frozen (and cached) only when everything is
        self.embed_dim = int(model.embed_dim)
        self.patch_size = int(model.patch_embed.patch_size[0])
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the patch size {self.patch_size}")

    def forward(self, x: torch.Tensor):
        tokens = self.model.forward_features(x)  # (B, prefix + h*w, C), final norm applied
        return self._split(tokens)

    def _split(self, tokens: torch.Tensor):
        patches = tokens[:, self.model.num_prefix_tokens :]
        B, side = tokens.shape[0], math.isqrt(patches.shape[1])  # square inputs (the policy resizes to them)
        fmap = patches.transpose(1, 2).reshape(B, self.embed_dim, side, side)
        return fmap, tokens[:, 0]

    def frozen_key(self) -> dict | None:
        """What the frozen part computes (None: nothing frozen); the cache adds a digest of its tensors."""
        frozen = [self.model.patch_embed, self.model.norm_pre, *self.model.blocks[: self.frozen_blocks]]
        if not self.frozen_blocks or any(p.requires_grad for part in frozen for p in part.parameters()):
            return None
        return {"config": self.config, "weights_sha256": self.weights_info.get("sha256"),
                "image_size": self.image_size, "blocks": self.frozen_blocks, "norm": self.frozen_norm}

    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, prefix + h*w, C) after the embeddings and the frozen blocks (and the norm with ``freeze: all``)."""
        m = self.model
        t = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        for blk in m.blocks[: self.frozen_blocks]:
            t = blk(t)
        return m.norm(t) if self.frozen_norm else t

    def from_frozen(self, tokens: torch.Tensor):
        """The trainable rest on :meth:`frozen_features`' output: ``forward(x) == from_frozen(frozen_features(x))``."""
        m = self.model
        if not self.frozen_norm:
            for blk in m.blocks[self.frozen_blocks :]:
                tokens = blk(tokens)
            tokens = m.norm(tokens)
        return self._split(tokens)


def apply_freeze(model: nn.Module, mode: str, blocks: int) -> None:
    """``all``: nothing trains; ``partial``: embeddings and the first ``blocks`` blocks are frozen."""
    if mode == "none":
        return
    if mode == "all":
        model.requires_grad_(False)
        return
    if blocks > len(model.blocks):
        raise ValueError(f"freeze_blocks={blocks} but the model has only {len(model.blocks)} blocks")
    for name in ("patch_embed", "cls_token", "reg_token", "pos_embed"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.requires_grad_(False)
        elif isinstance(part, nn.Parameter):
            part.requires_grad_(False)
    for blk in model.blocks[:blocks]:
        blk.requires_grad_(False)


def build_dinov2(cfg) -> ViTBackbone:
    from pxp.plugins.backbones.vit import weights as _weights

    timm = _import_timm()
    kwargs = dict(num_classes=0, dynamic_img_size=True, img_size=cfg.image_size, **cfg.model_kwargs)
    load, info = _weights.resolve(cfg)
    model = timm.create_model(cfg.model, **load, **kwargs)
    if cfg.weights == "timm" and "sha256" not in info:  # just downloaded into the HF cache
        path = _weights.cached_file(info["source"].split(":", 1)[1])
        if path is not None:
            info["sha256"] = _weights._sha(path)
    apply_freeze(model, cfg.freeze, cfg.freeze_blocks)
    return ViTBackbone(model, cfg.image_size, info, cfg.model_dump(mode="json"))


def build_tiny_vit(cfg) -> ViTBackbone:
    _import_timm()
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, num_classes=0, dynamic_img_size=True,
    )
    apply_freeze(model, cfg.freeze, cfg.freeze_blocks)
    return ViTBackbone(model, cfg.image_size, {"source": "random init"}, cfg.model_dump(mode="json"))
