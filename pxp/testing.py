"""Helpers for testing pxp plugins (yours or the built-ins): one contract check per kind.

    from pxp.testing import plugin_registry, check_config_roundtrip, check_backbone, check_head, check_objective

    def test_my_plugin():
        reg = plugin_registry(my_plugin_module)       # pxp's built-ins + yours, nothing else installed
        check_config_roundtrip(reg, "backbones", "my_cnn", width=32)
        check_backbone(reg, "my_cnn", image_size=64, width=32)
        sample = check_head(reg, "my_head", horizon=3)
        check_objective(reg, "my_loss", sample)

``check_figure`` draws a head's prediction figure the way the report does; ``check_scene``,
``check_evaluator`` and ``check_report_section`` cover the other kinds. The contracts
themselves are in :mod:`pxp.core.contracts`. A registry from :func:`plugin_registry` can be given to
``Runner(registry=...)``: its plugins reach every stage and every worker process (register modules,
importable by name, so that workers can load them).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from pxp.core.plugins import GROUP, Registry, load_registry
from pxp.core.rundir import RunDir

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
    if callable(getattr(model, "frozen_key", None)) and model.frozen_key() is not None:  # cacheable: the split is exact
        x = torch.randn(batch, 3, image_size, image_size)
        with torch.no_grad():
            split = model.from_frozen(model.frozen_features(x))
            whole = model(x)
        for a, b, what in zip(split, whole, ("feature map", "CLS")):
            assert torch.allclose(a, b, atol=1e-5), f"from_frozen(frozen_features(x)) differs from forward(x) in its {what}"
    return model


def check_light_import(module: str, heavy=HEAVY_MODULES) -> None:
    """Importing ``module`` (in a fresh interpreter) pulls in none of the heavy libraries."""
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(json.dumps(sorted(m for m in {list(heavy)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not loaded, f"importing {module} imported {loaded}; import them inside factories"


# ---------------------------------------------------------------- heads and objectives

@dataclass
class HeadSample:
    """A head built by :func:`check_head`, with one forward pass: what :func:`check_objective` trains on."""

    head: Any
    out: dict
    batch: dict


def _camera(size: int):
    from pxp.core.camera import Camera

    return Camera.from_fovy(45.0, size, size, position=[0.66, 0.0, 1.61],
                           rotation_world_from_mjcam=[[0, -0.628, 0.778], [1, 0, 0], [0, 0.778, 0.628]])


def _batch(batch: int, horizon: int, size: int) -> dict:
    """A training batch (docs/architecture.md) of targets in front of the camera."""
    import torch

    g = torch.Generator().manual_seed(0)
    cam = _camera(size)
    pos = torch.tensor([-0.1, 0.0, 1.0]) + 0.05 * torch.randn(batch, 3, generator=g)
    target = pos[:, None, :] + 0.02 * torch.randn(batch, horizon, 3, generator=g)
    pix = lambda xyz: torch.as_tensor(cam.project(xyz.double().numpy()), dtype=torch.float32)  # noqa: E731
    return {"image": torch.randn(batch, 3, size, size, generator=g), "eef_pos": pos, "eef_pixel": pix(pos),
            "gripper": torch.zeros(batch), "target_pos": target, "target_pixel": pix(target),
            "target_gripper": (torch.rand(batch, horizon, generator=g) > 0.5).float(),
            "K": torch.as_tensor(cam.K, dtype=torch.float32).expand(batch, 3, 3),
            "extrinsics": torch.as_tensor(cam.extrinsics, dtype=torch.float32).expand(batch, 4, 4)}


class _Backbone:
    """What a head's factory reads from its backbone."""

    embed_dim, patch_size, image_size = 16, 8, 32


def check_head(registry: Registry, name: str, batch: int = 2, **fields) -> HeadSample:
    """A head builds from its config and a backbone, declares its ``output_kind`` (config and module agree),
    maps features to a dict of outputs and decodes them to (B, T, 3) xyz, (B, T, 2) pixels and (B, T)
    gripper commands in [0, 1], all finite. ``prepare`` (if any) gets a workspace box first."""
    import numpy as np
    import torch

    from pxp.core.contracts import HeadSetup

    comp = registry.get("heads", name)
    kind = getattr(comp.config_model, "output_kind", None)
    assert isinstance(kind, str), f"{name}: the config model declares no output_kind (a ClassVar[str])"
    head = registry.create("heads", comp.config_model(**fields), _Backbone())
    assert getattr(head, "output_kind", None) == kind, f"head.output_kind {getattr(head, 'output_kind', None)!r} != {kind!r}"
    T, size, dim = int(head.horizon), _Backbone.image_size, _Backbone.embed_dim
    if hasattr(head, "prepare"):
        head.prepare(HeadSetup(end_effector_box=((-0.5, -0.6, 0.9), (0.5, 0.6, 1.3), "check_head"), log=lambda m: None))
    data = _batch(batch, T, size)
    side = size // _Backbone.patch_size
    cond = {"eef_uv": data["eef_pixel"] / size, "eef_pos": data["eef_pos"], "gripper": data["gripper"],
            "target_uv": data["target_pixel"] / size}
    g = torch.Generator().manual_seed(1)
    out = head(torch.randn(batch, dim, side, side, generator=g), torch.randn(batch, dim, generator=g), cond)
    assert isinstance(out, dict) and out, "forward must return a dict of tensors"
    dec = head.decode(out, [_camera(size)] * batch)
    for key, shape in (("xyz", (batch, T, 3)), ("pixel", (batch, T, 2)), ("gripper", (batch, T))):
        value = np.asarray(dec[key])
        assert value.shape == shape, f"decode()[{key!r}] has shape {value.shape}, expected {shape}"
        assert np.isfinite(value).all(), f"decode()[{key!r}] is not finite"
    assert ((np.asarray(dec["gripper"]) >= 0) & (np.asarray(dec["gripper"]) <= 1)).all(), "gripper outside [0, 1]"
    return HeadSample(head, out, data)


def check_objective(registry: Registry, name: str, sample: HeadSample, **fields):
    """An objective declares the output kinds it ``accepts`` (the sample's head among them), and gives a
    finite scalar loss that reaches the head's parameters, with detached scalar ``loss/<part>`` parts."""
    import torch

    comp = registry.get("objectives", name)
    accepts = getattr(comp.config_model, "accepts", None)
    assert isinstance(accepts, tuple) and accepts, f"{name}: the config model declares no accepts (a ClassVar[tuple])"
    assert sample.head.output_kind in accepts, f"{name} does not accept {sample.head.output_kind!r} heads"
    objective = registry.create("objectives", comp.config_model(**fields))
    loss, parts = objective(sample.out, sample.batch, sample.head)
    assert loss.ndim == 0 and torch.isfinite(loss), f"loss must be a finite scalar, got {loss}"
    for key, value in parts.items():
        assert key.startswith("loss/") and value.ndim == 0 and not value.requires_grad, f"part {key!r}: a detached scalar"
    loss.backward()
    grads = [p.grad for p in sample.head.parameters() if p.requires_grad]
    assert any(g is not None and torch.any(g != 0) for g in grads), "the loss does not reach the head's parameters"
    return objective


TINY_BACKBONE = {"type": "tiny_vit", "image_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}


def check_figure(registry: Registry, name: str, backbone: dict | None = None, **fields):
    """A head's prediction figure (its ``figure``, else the default point figure) draws a strip the way the
    report does: ``predict(policy, frame)`` gives (T, 2) ``pixel`` in the frame's image, and
    ``panel(base, row, k, font, scale)`` (:class:`pxp.core.contracts.PredictionFigure`) returns a panel of
    ``base``'s size for each future step. The policy is the head on ``backbone`` (default: a tiny ViT, 32 px).
    Returns the strip (a PIL image)."""
    import inspect

    import numpy as np

    from pxp.experiment.heatmaps import draw_strip, figure_of, strip_size
    from pxp.experiment.policy import build_policy

    bb = dict(backbone or TINY_BACKBONE)
    bb_cfg = registry.get("backbones", bb["type"]).config_model(**bb)
    head_cfg = registry.get("heads", name).config_model(**fields)
    policy = build_policy(bb_cfg, head_cfg, registry.create)
    from pxp.core.contracts import HeadSetup

    policy.head.prepare(HeadSetup(end_effector_box=((-0.5, -0.6, 0.9), (0.5, 0.6, 1.3), "check_figure"),
                                  log=lambda m: None))
    figure = figure_of(policy)
    assert isinstance(figure.title, str) and isinstance(figure.legend, str), "a figure has a str title and legend"
    params = ("base", "row", "k", "font", "scale")
    try:
        inspect.signature(figure.panel).bind(*params)
    except TypeError:
        raise AssertionError(f"figure.panel{inspect.signature(figure.panel)} must take {', '.join(params)} "
                             "(pxp.core.contracts.PredictionFigure)") from None
    size = int(getattr(policy.backbone, "image_size", 32))
    cam = _camera(size)
    eef = np.array([-0.1, 0.0, 1.0])
    frame = {"kind": "check", "label": "check_figure", "image": np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8),
             "camera": cam, "eef_pos": eef, "eef_pixel": cam.project(eef), "gripper": 0.0, "truth": None}
    strip = draw_strip(policy, [frame], figure=_CheckedFigure(figure, policy.horizon))
    assert strip.size == strip_size(policy.horizon, 1, (size, size)), f"strip size {strip.size}"
    return strip


class _CheckedFigure:
    """A head's figure whose answers are checked as the report receives them."""

    def __init__(self, figure, horizon: int):
        self.figure, self.horizon, self.title, self.legend = figure, horizon, figure.title, figure.legend

    def predict(self, policy, frame):
        import numpy as np

        out = self.figure.predict(policy, frame)
        assert isinstance(out, dict) and "pixel" in out, "figure.predict(policy, frame) returns a dict with 'pixel'"
        assert np.asarray(out["pixel"]).shape == (self.horizon, 2), (
            f"figure.predict()['pixel'] has shape {np.asarray(out['pixel']).shape}, expected ({self.horizon}, 2)")
        return out

    def panel(self, base, row, k, font, scale):
        panel = self.figure.panel(base, row, k, font, scale)
        assert getattr(panel, "size", None) == base.size, f"figure.panel(…, k={k}) returns an image of {base.size}"
        return panel


# ---------------------------------------------------------------- scenes, evaluators, report sections

def check_scene(registry: Registry, name: str, **fields):
    """A scene declares its outcomes and image key, builds, resets to an observation with the documented keys,
    servoes, names one of its outcomes, and closes."""
    import numpy as np

    from pxp.core.contracts import Outcomes

    model = registry.get("scenes", name).config_model
    outcomes = getattr(model, "outcomes", None)
    assert isinstance(outcomes, Outcomes), f"{name}: the config model declares no outcomes (a ClassVar[Outcomes])"
    assert outcomes.success in outcomes.weights and set(outcomes.names) == set(outcomes.weights), "outcomes: names ≠ weights"
    assert isinstance(getattr(model, "image_key", None), str), f"{name}: the config model declares no image_key"
    scene = registry.create("scenes", model(**fields))
    try:
        obs = scene.reset(offset=(0.0, 0.0), view=None, seed=0)
        for key in ("image", "eef_pos", "eef_pixel", "gripper"):
            assert key in obs, f"reset() observation has no {key!r}"
        assert np.asarray(obs["image"]).dtype == np.uint8 and np.asarray(obs["image"]).ndim == 3, "image: (H, W, 3) uint8"
        seen = []
        result = scene.servo(np.asarray(obs["eef_pos"], float), 0.0, max_steps=2, on_step=seen.append, image=False)
        assert isinstance(result, dict), "servo() returns a dict"
        assert seen and "eef_pos" in seen[0], "servo() calls on_step(obs) after each control step"
        assert scene.outcome() in outcomes.names, f"outcome() {scene.outcome()!r} is not one of {outcomes.names}"
        assert scene.camera is not None
    finally:
        getattr(scene, "close", lambda: None)()
    return scene


def check_evaluator(registry: Registry, name: str, **fields):
    """An evaluator builds, and summarises episodes (the record of pxp.core.results) into JSON; its
    report section, if any, is markdown."""
    evaluator = registry.create("evaluators", registry.get("evaluators", name).config_model(**fields))
    assert callable(getattr(evaluator, "run", None)), "an evaluator has run(ctx) -> episodes"
    if getattr(evaluator, "outcomes", False) is None:  # pxp's Evaluator base class: run(ctx) would set them
        evaluator.outcomes = next(c.config_model.outcomes for c in registry.components["scenes"].values()
                                  if hasattr(c.config_model, "outcomes"))
    episodes = [{"evaluation": "e", "evaluator": name, "policy": p, "cell": [0, i], "offset": [0.0, 0.01 * i],
                 "view": None, "seed": i, "outcome": None, "steps": 1, "error": "check", "diagnostics": {},
                 "labels": {}} for p in ("a", "b") for i in range(2)]
    summary = evaluator.summarize(episodes)
    json.dumps(summary)
    section = getattr(evaluator, "report_section", None)
    if section is not None:
        assert isinstance(section(summary), str), "report_section(summary) returns markdown"
    return evaluator


def check_report_section(section, registry: Registry, run_dir=None) -> str:
    """A report section has a ``title`` and an ``order`` and renders into a report of ``run_dir`` (default:
    an empty run) without error; returns the markdown it wrote."""
    from pxp.experiment.report import Doc, Report

    assert isinstance(getattr(section, "title", None), str), "a section has a title"
    assert isinstance(getattr(section, "order", None), int), "a section has an integer order"
    with tempfile.TemporaryDirectory() as tmp:
        if run_dir is None:
            run_dir = Path(tmp)
            RunDir(run_dir).spec.write_text(yaml.safe_dump({"name": "empty", "policies": {},
                                                                        "evaluations": {}}))
        doc = Doc()
        section.render(Report(Path(run_dir), registry), doc)
        return doc.markdown()

