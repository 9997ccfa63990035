"""What a sample is made of, shared by training and inference: the image normalisation, the gripper
labels, and which demos a policy trains on."""
from __future__ import annotations

import numpy as np

from .format import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image):
    """uint8 RGB ``(H, W, 3)`` or ``(B, H, W, 3)`` (numpy or torch, any device) → float32 torch
    ``(3, H, W)`` / ``(B, 3, H, W)`` normalised with the ImageNet mean and std.

    Training and inference both call this, so a model never sees differently scaled pixels.
    Float input is refused: it has usually been normalised once already.
    """
    import torch

    x = torch.as_tensor(image) if not isinstance(image, torch.Tensor) else image
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_image expects uint8 RGB images, got {x.dtype}")
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"normalize_image expects (H, W, 3) or (B, H, W, 3), got {tuple(x.shape)}")
    x = x.movedim(-1, -3).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def gripper_labels(commands) -> np.ndarray:
    """Per-frame gripper labels (0/1) from the per-step commands (``actions[t, 3]`` = command executed
    from frame t to t+1): frame t's label is the command of the step that ARRIVED at it,
    ``commands[t-1]`` (frame 0: ``commands[0]``).

    A predicted target (position at frame t+k·s, this label) is executed by servoing to the position
    with the label's command applied on the way, so the label must be the command that was applied on
    the way there. ``commands[t]`` (what the robot did after arriving) would close the gripper one
    target early, while still descending, and start lifting before the fingers had shut.
    """
    c = np.asarray(commands, dtype=float).reshape(-1) > 0.5
    return np.concatenate([c[:1], c[:-1]]).astype(np.float32) if len(c) else c.astype(np.float32)


def select_demos(n_demos: int, count: int | None, seed: int = 0) -> np.ndarray:
    """``count`` of ``n_demos`` demos chosen by ``seed`` (sorted indices); ``None`` → all.

    The choice is a prefix of one seeded permutation, so for a seed the 3-demo subset contains
    the 1-demo subset, the 5-demo subset the 3-demo one, and so on: a data-efficiency sweep
    adds demos instead of drawing unrelated sets.
    """
    if count is None:
        return np.arange(n_demos)
    if not 1 <= count <= n_demos:
        raise DatasetError(f"asked for {count} demos but the dataset has {n_demos} successful ones")
    return np.sort(np.random.default_rng(seed).permutation(n_demos)[:count])
