"""The ViT backbone modules (torch/timm; imported only by the factories in ``__init__``)."""
from __future__ import annotations


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
    """Wraps a timm VisionTransformer: patch tokens → (B, C, h, w) map, token 0 → CLS."""

    def __init__(self, model: nn.Module, image_size: int, weights_info: dict):
        super().__init__()
        self.model = model
        self.image_size = int(image_size)
        self.weights_info = weights_info
        self.embed_dim = int(model.embed_dim)
        self.patch_size = int(model.patch_embed.patch_size[0])
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the patch size {self.patch_size}")

    def forward(self, x: torch.Tensor):
        B, _, H, W = x.shape
        tokens = self.model.forward_features(x)  # (B, prefix + h*w, C), final norm applied
        h, w = H // self.patch_size, W // self.patch_size
        patches = tokens[:, self.model.num_prefix_tokens :]
        fmap = patches.transpose(1, 2).reshape(B, self.embed_dim, h, w)
        return fmap, tokens[:, 0]


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
    return ViTBackbone(model, cfg.image_size, info)


def build_tiny_vit(cfg) -> ViTBackbone:
    _import_timm()
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, num_classes=0, dynamic_img_size=True,
    )
    apply_freeze(model, cfg.freeze, cfg.freeze_blocks)
    return ViTBackbone(model, cfg.image_size, {"source": "random init"})
