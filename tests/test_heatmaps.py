"""Prediction strips (experiment/heatmaps.py, the heads' figures) on a tiny run directory: a synthetic 64 px dataset, a PARA and an
ACT trained for a few steps, and OOD rows rendered from the real LIBERO scene at the episodes' resets."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import timm  # noqa: F401  (before LIBERO loads: importing triton after it segfaults)
import torch
import yaml
from PIL import Image

from pxp.core import io
from pxp.experiment.data import open_dataset
from pxp.experiment.heatmaps import N_TRAIN, strip_size, write_strips
from pxp.experiment.policy import load_policy
from pxp.core.spec import TrainConfig
from pxp.experiment.training import train_policy
from pxp.plugins.backbones.vit import TinyViTConfig
from pxp.plugins.heads.act import ActRegressionConfig
from pxp.plugins.heads.para import ParaVolumeConfig
from pxp.plugins.heads.para.figures import heatmaps
from pxp.plugins.objectives.losses import BehaviorCloningConfig
from pxp.testing import plugin_registry

from ._policy_data import Ctx, write_demos

SIZE = 64
BACKBONE = TinyViTConfig(image_size=SIZE, patch_size=8, embed_dim=32, depth=1, num_heads=2)
HEADS = {"para": ParaVolumeConfig(horizon=2, height_bins=4, heatmap_size=16, hidden_dim=16),
         "act": ActRegressionConfig(horizon=2, hidden_dim=32)}
OFFSETS = [(0.0, 0.0), (-0.10, 0.05)]


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("heatmap_run")
    ctx = Ctx(root, plugin_registry())
    write_demos(ctx.dataset_path("demos"), n_demos=3, T=10, size=SIZE)
    train = TrainConfig(steps=4, lr=1e-3, warmup_steps=1, eval_every=4, holdout_fraction=0.0, batch_size=8)
    spec_policies = {}
    for name, head in HEADS.items():
        cfg = SimpleNamespace(backbone=BACKBONE, head=head, objective=BehaviorCloningConfig(), dataset="demos",
                              demos=None, demo_seed=0, filter_key=None, init_from=None, train=train)
        train_policy(name, cfg, ctx)
        spec_policies[name] = {"backbone": BACKBONE.model_dump(mode="json"), "head": head.model_dump(mode="json"),
                               "objective": {"type": "behavior_cloning"}, "dataset": "demos",
                               "train": train.model_dump(mode="json")}
    # "broken" has a spec entry but no checkpoint; "ghost" is named by the evaluation but not a policy.
    spec_policies["broken"] = dict(spec_policies["act"])
    # "tuned" stands for a policy fine-tuned from "para" (a pretrained source that no evaluation names).
    spec_policies["tuned"] = dict(spec_policies["para"], init_from="para")
    spec = {"name": "heatmaps", "seed": 0, "scene": {"type": "libero_bowl_plate", "image_size": SIZE},
            "datasets": {}, "policies": spec_policies, "policy_groups": {"both": ["para", "act"]},
            "evaluations": {"lr": {"type": "position_split", "policies": ["both", "broken", "ghost"]},
                            "ft": {"type": "data_efficiency", "policies": {"3D-pt": ["tuned"]}}}}
    (root / "spec.resolved.yaml").write_text(yaml.safe_dump(spec))
    eps = [{"evaluation": ev, "evaluator": "position_split", "policy": pol, "offset": list(off), "view": None,
            "seed": i, "outcome": "MISS", "error": None, "key": f"{pol}|{i}"}
           for ev, pols in (("lr", ("para", "act")), ("ft", ("tuned",))) for pol in pols
           for i, off in enumerate(OFFSETS)]
    io.write_json(root / "results.json", {"episodes": eps, "summaries": {}})
    return root, spec


def test_policy_heatmaps_are_per_step_distributions(run):
    root, _ = run
    para, act = load_policy(root / "checkpoints" / "para"), load_policy(root / "checkpoints" / "act")
    with open_dataset(root / "data" / "demos.hdf5") as f:
        cam, image = f.camera(0), f.read(0, "obs/agentview_rgb", 0)
        state = {"eef_pos": f.read(0, "obs/eef_pos", 0), "eef_pixel": f.read(0, "obs/eef_pixel", 0),
                 "gripper": float(f.read(0, "obs/gripper", 0))}
    hm = heatmaps(para, image, state, cam)
    assert hm.shape == (2, 16, 16) and np.all(hm >= 0)
    np.testing.assert_allclose(hm.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    out, dec = para.infer(image, state, cam)
    assert out["logits"].shape == (1, 2, 4, 16, 16)
    np.testing.assert_allclose(dec["xyz"][0], para.predict(image, state, cam)[:, :3])  # predict, unchanged
    with pytest.raises(TypeError, match="regression"):
        heatmaps(act, image, state, cam)


def test_strips_for_each_policy_with_train_and_ood_rows(run):
    root, spec = run
    messages = []
    paths = write_strips(root, spec, log=messages.append)
    # "tuned" has no checkpoint (skipped); its init_from source is drawn on the ft episodes' scenes.
    assert sorted(p.name for p in paths) == ["ft_para_heatmaps.png", "lr_act_heatmaps.png", "lr_para_heatmaps.png"]
    for p in paths:
        assert p.parent == root / "plots"
        with Image.open(p) as im:
            # 3 training rows + one OOD row per distinct episode reset, (1 + T) panels a row.
            assert im.size == strip_size(2, N_TRAIN + len(OFFSETS), (SIZE, SIZE))
            assert im.mode == "RGB" and np.asarray(im).std() > 10  # not blank
    assert any("lr/broken skipped" in m for m in messages) and any("ft/tuned skipped" in m for m in messages)
    assert not any("ghost" in m for m in messages)  # not a policy: silently left out


@pytest.mark.filterwarnings("ignore:No artists with labels")  # the report's empty demo-count plot
def test_the_report_writes_and_embeds_the_strips(run, capfd):
    from pxp.experiment.report import write_report

    root, _ = run
    for p in (root / "plots").glob("*_heatmaps.png"):
        p.unlink()
    write_report(root)
    assert (root / "plots" / "lr_para_heatmaps.png").exists()
    md = (root / "report.md").read_text()
    assert "plots/lr_para_heatmaps.png" in md and "plots/lr_act_heatmaps.png" in md
    # logged on stderr (by the worker process that draws the strips), the report still written
    assert "lr/broken skipped" in capfd.readouterr().err
