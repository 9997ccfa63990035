"""``small_cnn``: a small random-init CNN of stride-2 conv stages, the backbone of the CPU specs.

Each stage halves the image, so a 128 px image gives a 16×16 feature map with 3 stages: finer cells than a
16-px-patch ViT at a fraction of its cost, which is what lets both heads learn in minutes on a CPU
(docs/results.md, "Issue 13"). A backbone maps normalised images (B, 3, H, W) to ``(feature_map
(B, C, h, w), cls (B, C))``; here the CLS token is the feature map's global average. torch is imported
only inside the factory.
"""
from __future__ import annotations

from pxp.core.hookspecs import hookimpl
from pxp.plugins.backbones.cnn.config import SmallCNNConfig

__all__ = ["SmallCNNConfig", "make_small_cnn"]


def make_small_cnn(config: SmallCNNConfig):
    from pxp.plugins.backbones.cnn.model import SmallCNN

    return SmallCNN(config.width, config.stages, config.image_size)


@hookimpl
def pxp_register_backbones(register):
    register("small_cnn", SmallCNNConfig, make_small_cnn,
             summary="small strided CNN (random init), 2**stages-px cells: the CPU specs' backbone")


@hookimpl
def pxp_library_names():
    return ("torch",)
