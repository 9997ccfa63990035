"""Config of the ``small_cnn`` backbone."""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pxp.core.contracts import BackboneConfig


class SmallCNNConfig(BackboneConfig):
    """Always a random init (the model's ``weights_info`` says so in every report)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["small_cnn"] = "small_cnn"
    width: int = Field(64, ge=8, description="channels of the last stage's feature map")
    stages: int = Field(3, ge=1, le=5, description="stride-2 stages; one feature cell covers 2**stages pixels")
    image_size: int = Field(128, ge=16, description="images are resized to this square size")

    def smoke(self) -> dict:
        """``pxp run --smoke``: a narrow network at the smoke image size (the same stages)."""
        from pxp.core.smoke import IMAGE_SIZE

        return {"width": min(self.width, 16), "image_size": IMAGE_SIZE}
