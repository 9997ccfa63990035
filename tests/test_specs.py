"""Every ready-made spec validates against the installed plugins."""
from pathlib import Path

import pytest

from pxp.core.spec import load_spec

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))


def test_there_are_specs_for_every_seed_experiment():
    names = {p.stem for p in SPECS}
    assert {"quickstart", "left_to_right", "near_to_far", "viewpoints", "distractors", "pretraining"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_validates(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    for pol in spec.policies.values():
        if pol.backbone.type == "dinov2" and not path.stem.startswith("cpu_"):  # the seed's scale: ViT-S at 448 px, 10 min
            assert pol.backbone.image_size == 448 and pol.train.minutes in (5, 10)


def test_pretraining_spec_has_the_seed_sweep():
    spec = load_spec(Path(SPECS[0]).parent / "pretraining.yaml")
    assert [spec.policies[n].demos for n in spec.policy_groups["para_2dpt"]] == [1, 3, 5, 10, 20]
    assert spec.policies["para_2dpt-demos5"].init_from == "para_pt2d"
    assert spec.policies["para_pt2d"].head.height_bins == 1
