"""ViT backbones through timm: ``dinov2`` (any timm ViT name; pretrained weights from timm, a local
file or the HF cache, or an explicit random init) and ``tiny_vit`` (a few-block random-init ViT that
trains on a CPU in minutes, for the quickstart and tests).

``weights:`` of ``dinov2``:
  ``timm``             timm's own pretrained weights (downloaded once into the HF cache; offline: read there)
  a local file         Meta's .pth or a timm .safetensors (position embeddings are resampled); without
                       internet, ``pxp vit import-onnx`` makes one from an ONNX export (``onnx_import``)
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

from pxp.core.hookspecs import hookimpl
from pxp.plugins.backbones.vit.config import DinoV2Config, TinyViTConfig
from pxp.plugins.backbones.vit.weights import weights_kind

__all__ = ["DinoV2Config", "TinyViTConfig", "weights_kind", "make_dinov2", "make_tiny_vit"]


def make_dinov2(config: DinoV2Config):
    from pxp.plugins.backbones.vit.model import build_dinov2

    return build_dinov2(config)


def make_tiny_vit(config: TinyViTConfig):
    from pxp.plugins.backbones.vit.model import build_tiny_vit

    return build_tiny_vit(config)


@hookimpl
def pxp_register_backbones(register):
    register("dinov2", DinoV2Config, make_dinov2,
             summary="timm ViT (DINOv2/v3 names); timm, local-file or HF-cache weights, or weights: random")
    register("tiny_vit", TinyViTConfig, make_tiny_vit, summary="tiny timm ViT (random init) for CPU quickstart and tests")


@hookimpl
def pxp_register_commands(cli):
    from pxp.plugins.backbones.vit.cli import vit_group

    cli.add_command(vit_group)


@hookimpl
def pxp_library_names():
    return ("torch", "timm")
