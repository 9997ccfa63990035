import timm
import torch
from torch import nn


class TimmCNN(nn.Module):
    """timm's ``features_only`` model keeping one stage → feature map; its global average is the CLS token."""

    def __init__(self, model: str, stage: int, image_size: int = 128):
        super().__init__()
        self.body = timm.create_model(model, pretrained=False, features_only=True, out_indices=(stage,))
        info = self.body.feature_info
        self.embed_dim, self.patch_size = info.channels()[-1], info.reduction()[-1]
        self.image_size = image_size
        self.weights_info = {"source": "random init", "model": model}

    def forward(self, x: torch.Tensor):
        fmap = self.body(x)[-1]
        return fmap, fmap.mean(dim=(2, 3))
