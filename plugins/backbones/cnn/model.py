import torch
from torch import nn


class SmallCNN(nn.Module):
    """Stride-2 conv stages (conv 3×3, GroupNorm, GELU) → feature map; its global average is the CLS token."""

    def __init__(self, width: int, stages: int, image_size: int = 128):
        super().__init__()
        layers, c_in = [], 3
        for i in range(stages):
            c_out = width if i == stages - 1 else max(16, width // 2 ** (stages - 1 - i))
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(1, c_out), nn.GELU()]
            c_in = c_out
        # channels-last: oneDNN's convolutions skip a layout conversion each call (ACT's CPU training step
        # 0.78×, PARA's 0.87× at 128 px, batch 32; benchmarks/bench_train.py --backbone small_cnn)
        self.body = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.embed_dim, self.patch_size, self.image_size = width, 2 ** stages, image_size
        self.weights_info = {"source": "random init"}

    def forward(self, x: torch.Tensor):
        fmap = self.body(x.contiguous(memory_format=torch.channels_last))
        return fmap, fmap.mean(dim=(2, 3))
