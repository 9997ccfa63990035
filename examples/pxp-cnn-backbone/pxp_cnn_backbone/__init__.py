"""A third-party pxp plugin: a small strided CNN backbone.

Install with ``pip install -e examples/pxp-cnn-backbone`` and use it in a spec:

    backbone: {type: small_cnn, width: 64}
"""
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pxp.core.hookspecs import hookimpl

__version__ = "0.1.0"


class SmallCNNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["small_cnn"] = "small_cnn"
    width: int = Field(64, ge=8, description="channels of the feature map")
    stages: int = Field(3, ge=1, le=5, description="stride-2 stages; the patch size is 2**stages")
    image_size: int = Field(128, ge=16, description="images are resized to this square size")

    def smoke(self) -> dict:
        """``pxp run --smoke``: a narrow network at the smoke image size (the same stages)."""
        from pxp.core.smoke import IMAGE_SIZE

        return {"width": min(self.width, 16), "image_size": IMAGE_SIZE}


def make_small_cnn(config: SmallCNNConfig):
    from .model import SmallCNN  # torch is imported only when the backbone is built

    return SmallCNN(config.width, config.stages, config.image_size)


@hookimpl
def pxp_register_backbones(register):
    register("small_cnn", SmallCNNConfig, make_small_cnn, summary="small strided CNN (example third-party plugin)")
