"""PARA: pixel-aligned action head: logits over a (pixel × height bin) volume for T future steps.

- ``config.py``: :class:`ParaVolumeConfig`;
- ``geometry.py``: world target ↔ (heatmap cell, height bin) through the scene camera;
- ``model.py``: the torch module (imported by the factory only);
- ``figures.py``: its prediction figure (the heatmap strip panels).
"""
from __future__ import annotations

from pxp.core.hookspecs import hookimpl
from pxp.plugins.heads.para.config import ParaVolumeConfig
from pxp.plugins.heads.para.geometry import (cell_to_pixel, decode, decode_cells, encode, height_bin_centers,
                                             height_bin_index)

__all__ = ["ParaVolumeConfig", "encode", "decode", "decode_cells", "cell_to_pixel", "height_bin_index",
           "height_bin_centers", "make_para_head"]


def make_para_head(config: ParaVolumeConfig, backbone):
    """``factory(config, backbone)``: the head reads ``backbone.embed_dim``."""
    from pxp.plugins.heads.para.model import ParaHead

    return ParaHead(config, int(backbone.embed_dim))


@hookimpl
def pxp_register_heads(register):
    register("para_volume", ParaVolumeConfig, make_para_head,
             summary="PARA: pixel × height-bin logits volume, unprojected with the scene camera")
