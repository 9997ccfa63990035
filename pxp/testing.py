"""Helpers for testing pxp plugins (yours or the built-ins).

    from pxp.testing import plugin_registry, check_config_roundtrip, check_backbone

    def test_my_backbone():
        reg = plugin_registry(("my_plugin", my_plugin_module))
        check_config_roundtrip(reg, "backbones", "my_cnn", width=32)
        check_backbone(reg, "my_cnn", image_size=64, width=32)
"""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import yaml

from pxp.core.plugins import GROUP, Registry, load_registry

HEAVY_MODULES = ("torch", "timm", "mujoco", "libero", "robosuite")


def plugin_registry(*plugins, builtins: bool = True, strict: bool = True) -> Registry:
    """A fresh registry with pxp's built-in plugins (if ``builtins``) plus ``plugins``.

    Each plugin is a module or object with hook implementations, or a ``(name, object)`` pair.
    Third-party entry points installed in the environment are left out, so tests are isolated.
    """
    extra = [p if isinstance(p, tuple) else (getattr(p, "__name__", repr(p)), p) for p in plugins]
    if builtins:
        own = [ep for ep in entry_points(group=GROUP) if ep.dist is not None and ep.dist.metadata["Name"] == "pxp"]
        extra = [(ep.name, ep.load()) for ep in own] + extra
    return load_registry(strict=strict, disabled=set(), extra_plugins=extra, use_entry_points=False)


def check_config_roundtrip(registry: Registry, kind: str, name: str, **fields):
    """The config model builds from ``fields``, survives YAML and JSON round trips and has a JSON Schema."""
    comp = registry.get(kind, name)
    cfg = comp.config_model(**fields)
    assert cfg.type == name, f"config.type is {cfg.type!r}, expected {name!r}"
    dumped = cfg.model_dump(mode="json")
    again = comp.config_model.model_validate(yaml.safe_load(yaml.safe_dump(dumped)))
    assert again == cfg, "config changed in a YAML round trip"
    assert comp.config_model.model_validate_json(cfg.model_dump_json()) == cfg, "config changed in a JSON round trip"
    schema = comp.config_model.model_json_schema()
    assert schema.get("properties", {}).get("type"), "JSON Schema has no 'type' property"
    return cfg


def check_backbone(registry: Registry, name: str, image_size: int = 64, batch: int = 2, **fields):
    """A backbone returns (feature map (B, C, h, w), CLS (B, C)) with C == embed_dim and h == size // patch."""
    import torch

    cfg = registry.get("backbones", name).config_model(**fields)
    model = registry.create("backbones", cfg).eval()
    with torch.no_grad():
        fmap, cls = model(torch.randn(batch, 3, image_size, image_size))
    h = image_size // model.patch_size
    assert fmap.shape == (batch, model.embed_dim, h, h), f"feature map {tuple(fmap.shape)}, expected {(batch, model.embed_dim, h, h)}"
    assert cls.shape == (batch, model.embed_dim), f"CLS {tuple(cls.shape)}, expected {(batch, model.embed_dim)}"
    assert torch.isfinite(fmap).all() and torch.isfinite(cls).all(), "non-finite features"
    assert "source" in model.weights_info, "backbone.weights_info must say where the weights came from"
    return model


def check_light_import(module: str, heavy=HEAVY_MODULES) -> None:
    """Importing ``module`` (in a fresh interpreter) pulls in none of the heavy libraries."""
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(json.dumps(sorted(m for m in {list(heavy)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not loaded, f"importing {module} imported {loaded}; import them inside factories"
