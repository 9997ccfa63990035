"""A third-party pxp plugin: any timm CNN, cut after one of its stages, as a backbone.

Install with ``pip install -e examples/pxp-cnn-backbone`` and use it in a spec:

    backbone: {type: timm_cnn, model: resnet18, stage: 2}
"""
from typing import Literal

from pydantic import ConfigDict, Field

from pxp.core.contracts import BackboneConfig
from pxp.core.hookspecs import hookimpl

__version__ = "0.2.0"


class TimmCNNConfig(BackboneConfig):
    """Random init: this machine may have no internet, and every report states the weights."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["timm_cnn"] = "timm_cnn"
    model: str = Field("resnet18", description="any timm model that supports features_only (resnet18, convnext_atto, ...)")
    stage: int = Field(2, ge=0, description="feature stage to keep (timm's out_indices); deeper = coarser cells")
    image_size: int = Field(128, ge=16, description="images are resized to this square size")

    def smoke(self) -> dict:
        """``pxp run --smoke``: the same network at the smoke image size."""
        from pxp.core.smoke import IMAGE_SIZE

        return {"image_size": IMAGE_SIZE}


def make_timm_cnn(config: TimmCNNConfig):
    from .model import TimmCNN  # torch and timm are imported only when the backbone is built

    return TimmCNN(config.model, config.stage, config.image_size)


@hookimpl
def pxp_register_backbones(register):
    register("timm_cnn", TimmCNNConfig, make_timm_cnn, summary="a timm CNN cut after one stage (example third-party plugin)")
