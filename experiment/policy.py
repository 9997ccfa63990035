"""A policy = backbone + head, the one ``predict`` call rollouts use, and its checkpoints.

torch is imported inside functions only, so ``pxp.experiment.policy`` stays cheap to import.

Checkpoint directory layout (written by :func:`write_checkpoint`)::

    checkpoint.json         marker, written last and atomically: step, file names, sha256 of each,
                            policy configs, backbone weights_info, init_from transfer report
    model-00000100.pt       the policy's state_dict (tensors named backbone.* and head.*)
    train-00000100.pt       optimizer state, step, elapsed seconds, RNG states (for resume)
    metrics.jsonl           training metrics (appended by pxp.experiment.training)

Files carry their step in the name and are only deleted after a newer marker is in place, so a
kill at any moment leaves either the previous complete checkpoint or the new one, never a mix.
"""
from __future__ import annotations

import hashlib
import io as _io
import time
from pathlib import Path

import numpy as np

from pxp.core import io
from pxp.core.camera import Camera
from pxp.core.contracts import RolloutPolicy
from pxp.core.errors import PxpError

MARKER = "checkpoint.json"
METRICS = "metrics.jsonl"
FORMAT = "pxp-policy/1"


class CheckpointError(PxpError):
    """No complete, verified checkpoint where one was expected."""


def image_hw(batch: dict) -> tuple[int, int]:
    """The batch's frame size: its images', or ``image_hw`` where cached features replace them."""
    if "image" in batch:
        return tuple(batch["image"].shape[-2:])
    return tuple(int(v) for v in batch["image_hw"][0])


def image_uv(batch: dict, key: str):
    """Pixels ``batch[key]`` (..., 2) in the batch image's frame → normalised [0, 1] (u / W, v / H)."""
    H, W = image_hw(batch)
    px = batch[key].float()
    return px / px.new_tensor([W, H])


# ---------------------------------------------------------------- the policy

class Policy(RolloutPolicy):
    """Backbone + head. ``config`` holds the JSON dumps of the backbone/head/objective configs."""

    def __init__(self, backbone, head, config: dict, device="cpu"):
        import torch

        self.device = torch.device(device)
        self.net = torch.nn.ModuleDict({"backbone": backbone, "head": head}).to(self.device)
        self.backbone, self.head, self.config = backbone, head, config
        self.step, self.target_stride = 0, None  # set by load_policy from the checkpoint

    @property
    def horizon(self) -> int:
        return int(self.head.horizon)

    @property
    def weights_info(self) -> dict:
        return dict(self.backbone.weights_info)

    def backbone_input(self, x):
        """Normalised images at the backbone's size (the resize training, inference and the feature cache share)."""
        import torch.nn.functional as F

        size = int(self.backbone.image_size)
        if tuple(x.shape[-2:]) != (size, size):
            # Normalised pixel coordinates make the resize invisible to heads and cameras.
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def _inputs(self, batch: dict, teacher: bool):
        x = self.backbone_input(batch["image"]) if "image" in batch else None
        cond = {"eef_uv": image_uv(batch, "eef_pixel"), "eef_pos": batch["eef_pos"].float(),
                "gripper": batch["gripper"].float()}
        if teacher:
            cond["target_uv"] = image_uv(batch, "target_pixel")
        return x, cond

    def forward(self, batch: dict, teacher: bool = False) -> dict:
        """Head outputs for a batch already on the device. ``teacher``: condition on ground truth
        where a head can (PARA reads the gripper at the true target pixel)."""
        x, cond = self._inputs(batch, teacher)
        if x is None:  # cached features of the backbone's frozen part (pxp.experiment.feature_cache)
            fmap, cls = self.net["backbone"].from_frozen(batch["features"])
        else:
            fmap, cls = self.net["backbone"](x)
        return self.net["head"](fmap, cls, cond)

    __call__ = forward

    def decode(self, out: dict, cameras: list) -> dict:
        """xyz (B,T,3) world, pixel (B,T,2) image px, gripper (B,T) in [0, 1] (numpy)."""
        return self.head.decode(out, cameras)

    def predict(self, image, state: dict, camera: Camera) -> np.ndarray:
        """uint8 (H, W, 3) image + state(eef_pos, eef_pixel, gripper) → (T, 4) world xyz + gripper."""
        _, dec = self.infer(image, state, camera)
        return np.concatenate([dec["xyz"][0], np.clip(dec["gripper"][0], 0, 1)[:, None]], axis=-1)

    def infer(self, image, state: dict, camera: Camera) -> tuple[dict, dict]:
        """One frame through the policy exactly as :meth:`predict` runs it, returning the raw head
        outputs (tensors with a batch of 1: ``logits`` / ``pos01``, ``gripper_logits``) and the decoded
        prediction (``xyz`` (1,T,3), ``pixel`` (1,T,2) in this image's pixels, ``gripper`` (1,T))."""
        import torch

        from .data import normalize_image  # the same normalisation the training batches use

        image = np.asarray(image)
        H, W = image.shape[:2]
        cam = camera if (camera.width, camera.height) == (W, H) else camera.scaled(W, H)
        x = torch.as_tensor(np.asarray(normalize_image(image)), dtype=torch.float32)
        if x.shape[-1] == 3 and x.shape[0] != 3:
            x = x.permute(2, 0, 1)

        def t(v, shape):
            return torch.as_tensor(np.asarray(v, dtype=np.float32).reshape(shape), device=self.device)

        batch = {"image": x[None].to(self.device), "eef_pos": t(state["eef_pos"], (1, 3)),
                 "eef_pixel": t(state["eef_pixel"], (1, 2)), "gripper": t(state["gripper"], (1,))}
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                out = self.forward(batch)
                return out, self.decode(out, [cam])
        finally:
            self.net.train(was_training)

    def state_dict(self) -> dict:
        return self.net.state_dict()

    def load_state_dict(self, state: dict, strict: bool = True):
        return self.net.load_state_dict(state, strict=strict)


def build_policy(backbone_cfg, head_cfg, create, device="cpu", objective_cfg=None) -> Policy:
    """``create(kind, config, *args)`` builds registered components; heads get the backbone."""
    backbone = create("backbones", backbone_cfg)
    head = create("heads", head_cfg, backbone)
    config = {"backbone": backbone_cfg.model_dump(mode="json"), "head": head_cfg.model_dump(mode="json"),
              "objective": objective_cfg.model_dump(mode="json") if objective_cfg is not None else None}
    return Policy(backbone, head, config, device)


# ---------------------------------------------------------------- checkpoints

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _torch_bytes(obj) -> bytes:
    import torch

    buf = _io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def write_checkpoint(directory, step: int, model_state: dict, train_state: dict | None = None, meta: dict | None = None) -> Path:
    """Write a checkpoint atomically (see the module docstring for the layout and why it is safe)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files, sums = {"model": f"model-{step:08d}.pt"}, {}
    blobs = {"model": _torch_bytes(model_state)}
    if train_state is not None:
        files["train"] = f"train-{step:08d}.pt"
        blobs["train"] = _torch_bytes(train_state)
    for key, blob in blobs.items():
        sums[key] = _sha256(blob)
        io.write_bytes(d / files[key], blob)
    marker = {"format": FORMAT, "complete": True, "step": int(step), "written": time.time(),
              "files": files, "sha256": sums, **(meta or {})}
    io.write_json(d / MARKER, marker)  # the commit point
    _remove_stale(d, set(files.values()))
    return d


def _remove_stale(d: Path, keep: set) -> None:
    for p in d.iterdir():
        stale = p.suffix == ".pt" and p.name.startswith(("model-", "train-")) and p.name not in keep
        torn = p.name.startswith(".") and ".tmp" in p.name  # leftovers of a killed writer
        if stale or torn:
            p.unlink(missing_ok=True)


def read_marker(directory) -> dict | None:
    """The checkpoint marker, or None when there is no complete checkpoint."""
    m = io.read_json(Path(directory) / MARKER)
    return m if isinstance(m, dict) and m.get("complete") and m.get("format") == FORMAT else None


def _load_verified(d: Path, name: str, expected_sha: str, map_location):
    import torch

    try:
        blob = (d / name).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{d}: {name} named by {MARKER} is missing") from None
    if _sha256(blob) != expected_sha:
        raise CheckpointError(f"{d}: {name} does not match its sha256 in {MARKER} (torn or modified file)")
    return torch.load(_io.BytesIO(blob), map_location=map_location, weights_only=True)


def read_checkpoint(directory, map_location="cpu", with_train_state: bool = False):
    """(marker, model_state, train_state | None), each file verified against the marker's sha256."""
    d = Path(directory)
    marker = read_marker(d)
    if marker is None:
        raise CheckpointError(f"{d}: no complete checkpoint (missing or partial {MARKER})")
    model = _load_verified(d, marker["files"]["model"], marker["sha256"]["model"], map_location)
    train = None
    if with_train_state and "train" in marker["files"]:
        train = _load_verified(d, marker["files"]["train"], marker["sha256"]["train"], map_location)
    return marker, model, train


def _random_init(backbone: dict, registry) -> dict:
    """The backbone config with ``weights: random`` (when it has a weights field): a checkpoint holds
    the trained tensors, and the original weights file or download need not exist where it is loaded."""
    model = registry.get("backbones", backbone["type"]).config_model
    return {**backbone, "weights": "random"} if "weights" in model.model_fields else backbone


def load_policy(checkpoint_dir, device="cpu", create=None, registry=None) -> Policy:
    """Rebuild a trained policy from its checkpoint directory (what evaluation calls).

    The backbone is built without its pretrained weights file (the checkpoint holds the trained
    tensors, and the file need not exist where evaluation runs); ``weights_info`` is restored from
    the marker so reports still state where the weights came from. ``registry``: whose plugins build
    it (default: the process-wide one).
    """
    from pxp.core.plugins import get_registry

    registry = registry if registry is not None else get_registry()
    marker, state, _ = read_checkpoint(checkpoint_dir, map_location="cpu")
    cfg = marker["policy"]

    def config(kind: str, data: dict):
        return registry.get(kind, data["type"]).config_model.model_validate(data)

    backbone_cfg = config("backbones", _random_init(cfg["backbone"], registry))
    head_cfg = config("heads", cfg["head"])
    policy = build_policy(backbone_cfg, head_cfg, create or registry.create, device="cpu")
    policy.config = cfg
    policy.load_state_dict(state)
    if "weights_info" in marker:
        policy.backbone.weights_info = marker["weights_info"]
    import torch

    policy.device = torch.device(device)
    policy.net.to(policy.device).eval()
    policy.step = marker["step"]
    # The rollout servoes each predicted target for as many steps as the demos spaced them.
    policy.target_stride = (marker.get("train") or {}).get("target_stride")
    return policy
