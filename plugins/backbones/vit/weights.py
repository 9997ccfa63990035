"""Where a ``dinov2`` backbone's weights come from, and whether they can be had on this machine.

Imported only by ``DinoV2Config.preflight`` and the backbone factory; timm and huggingface_hub are
imported inside the functions. Nothing here downloads: ``unavailable`` answers from the local files,
the Hugging Face cache and a short connection probe, so a machine without internet is told in seconds.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

HUB_HOST = "huggingface.co"  # timm's pretrained weights live on the HF hub
PROBE_SECONDS = 3.0
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hub_repo(weights: str) -> str:
    return weights.split(":", 1)[1]


def timm_repo(model: str) -> str | None:
    """The HF repo timm downloads ``model``'s default pretrained weights from (None: timm has none)."""
    from timm.models._registry import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    return getattr(cfg, "hf_hub_id", None) or None


def cached_file(repo: str) -> Path | None:
    """The weights file of ``repo`` in the local Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str):
            return Path(hit)
    return None


def online(host: str = HUB_HOST, timeout: float = PROBE_SECONDS) -> bool:
    """Whether ``host`` answers on 443 within ``timeout`` seconds (DNS included: the probe runs in a
    daemon thread, so a resolver that hangs cannot hold the caller). HF_HUB_OFFLINE=1 means no."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    import socket

    result = [False]

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return result[0]


def unavailable(cfg) -> str | None:
    """None when ``cfg.weights`` can be loaded here now; else one line saying what is missing."""
    kind = weights_kind(cfg.weights)
    if kind == "random":
        return None
    if kind == "file":
        return None if Path(cfg.weights).expanduser().is_file() else f"weights file {cfg.weights} does not exist"
    if kind == "hf":
        repo = hub_repo(cfg.weights)
        return None if cached_file(repo) else f"{repo} is not in the local Hugging Face cache"
    repo = timm_repo(cfg.model)
    if repo is None:
        return f"timm has no pretrained weights for {cfg.model}"
    if cached_file(repo) or online():
        return None
    return f"timm's pretrained {cfg.model} ({repo}) is not in the local Hugging Face cache and {HUB_HOST} cannot be reached"


def how_to(model: str, policies: list[str]) -> str:
    """How to supply pretrained weights, or opt into a random init (the message ``pxp run`` stops with)."""
    repo = timm_repo(model) or f"timm/{model}"
    opt_in = " ".join(f"--set policies.{p}.backbone.weights=random" for p in policies) or "weights: random"
    return (f"supply them as a local file (weights: /path/to/file.pth or .safetensors, Meta's or timm's); or "
            f"through the Hugging Face cache (`huggingface-cli download {repo}` where there is internet, copy "
            f"the cache here, then weights: hf-hub:{repo}); or run where {HUB_HOST} is reachable (weights: timm). "
            f"Or opt into random init explicitly with weights: random (every report says so): {opt_in}")


def resolve(cfg) -> tuple[dict, dict]:
    """(extra ``timm.create_model`` kwargs, weights_info) for ``cfg.weights``; a clear error when the
    weights cannot be had (the same reasons :func:`unavailable` gives)."""
    from pxp.core.errors import PxpError
    kind = weights_kind(cfg.weights)
    if kind == "random":
        return {"pretrained": False}, {"source": "random init"}
    problem = unavailable(cfg)
    if problem:
        raise PxpError(f"backbone weights: {problem}; {how_to(cfg.model, [])}")
    if kind == "timm":
        repo = timm_repo(cfg.model)
        path = cached_file(repo)
        # Online and not cached: timm downloads into the HF cache; the file is hashed from there after.
        info = {"source": f"timm:{repo}"}
        if path is not None:
            info["sha256"] = _sha(path)
        return {"pretrained": True}, info
    path = Path(cfg.weights).expanduser() if kind == "file" else cached_file(hub_repo(cfg.weights))
    info = {"source": str(path) if kind == "file" else f"hf-hub:{hub_repo(cfg.weights)}", "sha256": _sha(path)}
    if kind == "file":
        info.update(imported_from(path, info["sha256"]))
    # timm loads Meta's .pth and timm safetensors alike, dropping mask_token and resampling pos_embed.
    return {"pretrained": True, "pretrained_cfg_overlay": dict(file=str(path))}, info


def imported_from(path, sha256: str) -> dict:
    """``origin`` and ``source_sha256`` from the sidecar ``pxp vit import-onnx`` wrote, when it describes this
    very file (a sidecar whose sha256 differs belongs to an older file and is ignored)."""
    from pxp.plugins.backbones.vit.onnx_import import read_sidecar

    record = read_sidecar(path) or {}
    if record.get("sha256") != sha256:
        return {}
    return {"origin": record.get("origin"), "converted_from": record.get("source"),
            "source_sha256": record.get("source_sha256")}


def _sha(path) -> str:
    from pxp.core.io import file_sha256

    return file_sha256(path)


def weights_kind(weights: str) -> str:
    """``timm`` | ``random`` | ``hf`` (``hf-hub:<repo id>``) | ``file`` (anything else: a path)."""
    if weights in ("timm", "random"):
        return weights
    return "hf" if weights.startswith(("hf-hub:", "hf_hub:")) else "file"
