"""The PARA head's config: a (pixel × height bin) logits volume for T future steps."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator
from pxp.core.contracts import HeadConfig


class ParaVolumeConfig(HeadConfig):
    model_config = ConfigDict(extra="forbid")
    output_kind: ClassVar[str] = "volume"  # logits over (height bin × pixel): see pxp.core.contracts.VolumeHead
    label: ClassVar[str] = "PARA"  # how reports name this head
    type: Literal["para_volume"] = "para_volume"
    horizon: int = Field(4, gt=0, description="T future steps predicted")
    height_bins: int = Field(32, gt=0, description="N; 1 = a 2D heatmap (point-track pretraining)")
    height_range: tuple[float, float] = Field((0.88, 1.20), description="(z_min, z_max) world metres covered by the bins")
    heatmap_size: int = Field(64, gt=0, description="heatmap resolution (square, covers the whole image)")
    hidden_dim: int = Field(128, gt=0)
    conv_layers: int = Field(2, ge=0, description="3x3 conv + GELU layers after upsampling")
    dilated: bool = Field(False, description="conv layer i dilates by 2**i (1, 2, 4, 8 …): with 4 layers a cell "
                                             "sees ±15 cells instead of ±4 (a ViT token sees the whole image, a "
                                             "small CNN's cell ≈ 15 px); the same parameters and cost")
    condition_on_eef: bool = Field(True, description="add a learned embedding at the end-effector's patch")
    condition_on_gripper: bool = Field(True, description="add the current gripper state as a learned embedding")
    gripper_sees_height: bool = Field(False, description="the gripper MLP also reads the end effector's height "
                                                         "(world z, scaled to height_range), the state ACT's "
                                                         "condition_on_eef: height gives its gripper")
    subcell: bool = Field(False, description="decode the peak to sub-cell precision: the softmax-weighted mean "
                                             "over its 3×3 cells and ±1 height bins, instead of the cell centre")

    def smoke(self) -> dict:
        return {"height_bins": min(self.height_bins, 4), "heatmap_size": min(self.heatmap_size, 16),
                "hidden_dim": min(self.hidden_dim, 32)}

    @model_validator(mode="after")
    def _range_ordered(self):
        if not self.height_range[0] < self.height_range[1]:
            raise ValueError(f"height_range must be (z_min, z_max) with z_min < z_max, got {self.height_range}")
        return self
