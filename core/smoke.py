"""``pxp run SPEC --smoke``: the same spec, every size shrunk, so every code path runs in minutes.

The transform works on the raw spec dict, before validation, so a smoke run never needs what only the
full scale needs (pretrained weights, a GPU). Core knows no plugin names: every section whose config
model defines ``smoke(self) -> dict`` gets that dict merged over it; a ``type`` key in it replaces the
section wholesale (a DINOv2 backbone becomes a tiny ViT). Core shrinks its own parts: training budgets,
sweeps (the first :data:`SWEEP_VALUES` values of each list), ``demos``, replicates (at most :data:`REPLICATES`)
and the report.

Sizes a plugin's ``smoke()`` should use live here, so every plugin shrinks to the same scale.
"""
from __future__ import annotations

import copy


from pydantic import ValidationError

IMAGE_SIZE = 64  # scene images, pixels
GRID_SIDE = 2  # cells per grid axis (datasets and evaluators)
SPLIT_CELLS = 1  # random:N / corners:N cells at most
DATASET_SHAPES = ((1, 2), (2, 1), (2, 2))  # dataset grids, smallest first: the first with a non-empty split
DEMOS = 2  # a policy's ``demos`` (and each ``demos`` sweep value) at most
EPISODES = 1  # episodes per evaluation cell, and per dataset cell
MAX_STEPS = 20  # control steps per evaluation episode: two predictions of a 4-step chunk at stride 4
TRAIN_STEPS = 3  # optimizer steps per policy
TRAIN_MINUTES = 0.5
BATCH_SIZE = 4
SWEEP_VALUES = 2  # values kept from each sweep list
REPLICATES = 2  # replicates at most (two prove the replicate path)

# spec section → plugin kind, for the sections that name a component with ``type:``
_POLICY_PARTS = {"backbone": "backbones", "head": "heads", "objective": "objectives"}


def smoke_spec(raw: dict, registry) -> dict:
    """The smoke-scale version of a raw spec dict (a new dict; ``raw`` is left alone)."""
    raw = copy.deepcopy(raw)
    raw["name"] = f"{raw.get('name', 'spec')}-smoke"
    raw["smoke"] = True
    if raw.get("device") == "cuda":
        raw["device"] = "auto"  # a smoke run checks the pipeline on whatever machine runs it
    if isinstance(raw.get("replicates"), int) and raw["replicates"] > REPLICATES:
        raw["replicates"] = REPLICATES
        if isinstance(raw.get("replicate_seeds"), list):
            raw["replicate_seeds"] = raw["replicate_seeds"][:REPLICATES]
    scene = raw.get("scene")
    scene_overrides = {}
    if isinstance(scene, dict):
        scene_overrides = _plugin_overrides(registry, "scenes", scene)
        raw["scene"] = _merge(scene, scene_overrides)
    for section, kind in (("datasets", "datasets"), ("evaluations", "evaluators")):
        for name, cfg in (raw.get(section) or {}).items():
            if isinstance(cfg, dict):
                cfg = _merge(cfg, _plugin_overrides(registry, kind, cfg))
                _shrink_scene_overrides(cfg, scene_overrides)
                raw[section][name] = cfg
    for name, pol in (raw.get("policies") or {}).items():
        if isinstance(pol, dict):
            raw["policies"][name] = smoke_policy(pol, registry)
    return raw


def smoke_policy(pol: dict, registry) -> dict:
    for part, kind in _POLICY_PARTS.items():
        if isinstance(pol.get(part), dict):
            pol[part] = _merge(pol[part], _plugin_overrides(registry, kind, pol[part]))
    if isinstance(pol.get("train"), dict):
        pol["train"] = smoke_train(pol["train"])
    if isinstance(pol.get("demos"), int):
        pol["demos"] = min(pol["demos"], DEMOS)
    if isinstance(pol.get("sweep"), dict):
        pol["sweep"] = {k: _shrink_sweep(k, v) for k, v in pol["sweep"].items()}
    return pol


def _shrink_sweep(key: str, values):
    if not isinstance(values, list):
        return values  # validation reports it
    if key == "demos" and all(isinstance(v, int) for v in values):
        values = list(dict.fromkeys(min(v, DEMOS) for v in values))  # 1, 3, 5 → 1, 2
    return values[:SWEEP_VALUES]


def smoke_train(train: dict) -> dict:
    """A few steps, a tiny batch; an evaluation and a checkpoint at the end like a full run."""
    steps = min(int(train.get("steps") or TRAIN_STEPS), TRAIN_STEPS)
    return {**train, "steps": steps, "minutes": TRAIN_MINUTES, "batch_size": min(int(train.get("batch_size", 16)), BATCH_SIZE),
            "warmup_steps": min(int(train.get("warmup_steps", 0)), 1), "eval_every": steps, "num_workers": 0}


# ---------------------------------------------------------------- plumbing

def _plugin_overrides(registry, kind: str, section: dict) -> dict:
    """What the section's config model says to change at smoke scale ({} without a smoke() hook)."""
    comp = registry.components.get(kind, {}).get(section.get("type"))
    if comp is None:
        return {}  # an unknown type: validation names it
    model = comp.config_model
    try:
        config = model.model_validate(section)
    except ValidationError:
        # e.g. full-scale-only checks (weights must exist): the hook still sees the fields and defaults
        config = model.model_construct(**section)
    return dict(config.smoke() or {})


def _merge(section: dict, overrides: dict) -> dict:
    if "type" in overrides and overrides["type"] != section.get("type"):
        return dict(overrides)  # another component of the same family, configured from scratch
    return {**section, **overrides}


def _shrink_scene_overrides(cfg: dict, scene_overrides: dict) -> None:
    """A section's ``scene: {...}`` overrides get the smoke value of each key they set."""
    own = cfg.get("scene")
    if isinstance(own, dict):
        cfg["scene"] = {k: scene_overrides.get(k, v) for k, v in own.items()}
