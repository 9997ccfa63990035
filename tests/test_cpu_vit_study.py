"""specs/cpu_vit_study.yaml: cpu_study's axes on a frozen pretrained ViT-S/14, asking for timm's weights, and
the one override that points every policy at a local file instead."""
from __future__ import annotations

from pathlib import Path

import yaml

from pxp.core.spec import apply_overrides, validate_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"


def load(*sets):
    return validate_spec(apply_overrides(yaml.safe_load((SPECS / "cpu_vit_study.yaml").read_text()), sets))


def test_every_policy_is_a_frozen_pretrained_vit_s14_with_cpu_studys_evaluations():
    spec = load()
    study = validate_spec(apply_overrides(yaml.safe_load((SPECS / "cpu_study.yaml").read_text()),
                                          ["replicates=1", "replicate_seeds=null"]))  # one replicate, as here
    assert set(spec.policies) == set(study.policies) and set(spec.evaluations) == set(study.evaluations)
    for name, pol in spec.policies.items():
        bb = pol.backbone
        assert (bb.type, bb.model, bb.weights, bb.freeze) == ("dinov2", "vit_small_patch14_dinov2", "timm", "all"), name
        assert bb.image_size % 14 == 0
        assert pol.dataset == study.policies[name].dataset and pol.filter_key == study.policies[name].filter_key
    assert {p.head.readout for p in spec.policies.values() if p.head.type == "act_regression"} == {"cls"}
    for name, ev in spec.evaluations.items():  # the same design; its own draw of positions (seed) until registered
        assert ev.model_dump(exclude={"seed"}) == study.evaluations[name].model_dump(exclude={"seed"}), name


def test_a_star_override_points_every_policy_at_a_local_file(tmp_path):
    weights = tmp_path / "dinov2.safetensors"
    weights.write_bytes(b"not checked here")
    spec = load(f"policies.*.backbone.weights={weights}")
    assert {p.backbone.weights for p in spec.policies.values()} == {str(weights)}
    assert {p.head.type for p in spec.policies.values()} == {"para_volume", "act_regression"}  # nothing else touched
