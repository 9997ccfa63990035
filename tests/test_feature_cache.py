"""A frozen backbone part's features are cached once per dataset; a head trained from the cache is the
head trained with the live frozen backbone (same seed), and a cache is used only when it verifies."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import timm  # noqa: F401  (before anything loads LIBERO: importing triton after it segfaults)
import torch

from pxp.core import io
from pxp.core.spec import TrainConfig
from pxp.experiment import feature_cache
from pxp.experiment.data import DemoDataset
from pxp.experiment.policy import build_policy
from pxp.experiment.training import seed_everything, train, train_policy
from pxp.plugins.backbones.vit import TinyViTConfig
from pxp.plugins.heads.act import ActRegressionConfig
from pxp.plugins.heads.para import ParaVolumeConfig
from pxp.plugins.objectives.losses import BehaviorCloningConfig

from ._policy_data import Ctx, one_thread, reg, write_demos  # noqa: F401  (fixtures)

FROZEN = TinyViTConfig(image_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, freeze="all")
PARTIAL = FROZEN.model_copy(update={"freeze": "partial", "freeze_blocks": 1})
PARA = ParaVolumeConfig(horizon=2, height_bins=4, heatmap_size=16, hidden_dim=8)
ACT = ActRegressionConfig(horizon=2, hidden_dim=32, readout="cls")
BOX = ((-0.3, -0.3, 0.8), (0.3, 0.3, 1.3), "test")  # ACT's normalisation box
TRAIN = TrainConfig(steps=12, lr=2e-3, warmup_steps=2, eval_every=6, batch_size=4)


@pytest.fixture
def ctx(tmp_path, reg):
    c = Ctx(tmp_path, reg)
    write_demos(c.dataset_path("demos"), n_demos=2, T=10, size=48)  # 48 px frames: the policy resizes them to 64
    return c


def trained(ctx, name, backbone, head, cache: bool):
    """(policy, summary) after TRAIN's steps from seed 0, from the cache or with the live frozen part."""
    seed_everything(0)
    policy = build_policy(backbone, head, ctx.create, "cpu", BehaviorCloningConfig())
    ds = DemoDataset(ctx.dataset_path("demos"), horizon=2, stride=2)
    summary = train(policy, ctx.create("objectives", BehaviorCloningConfig()), ds, None, TRAIN, ctx.checkpoint_dir(name),
                    log=ctx.log, progress=ctx.progress, cache_features=cache, workspace=BOX)
    return policy, summary


def cache_dirs(ctx):
    root = ctx.dataset_path("demos").with_name("demos.hdf5.features")
    return sorted(d for d in root.iterdir() if d.is_dir()) if root.exists() else []


@pytest.mark.parametrize("backbone, head", [(FROZEN, PARA), (PARTIAL, ACT)], ids=["all-para", "partial-act"])
def test_a_head_trained_from_the_cache_equals_one_trained_live(ctx, monkeypatch, backbone, head):
    monkeypatch.setattr(feature_cache, "DTYPE", np.float32)  # the mechanism, without float16's rounding
    live, s_live = trained(ctx, "live", backbone, head, cache=False)
    assert cache_dirs(ctx) == []
    cached, s_cached = trained(ctx, "cached", backbone, head, cache=True)
    assert len(cache_dirs(ctx)) == 1
    assert s_cached["steps"] == s_live["steps"] == TRAIN.steps
    assert s_cached["final_loss"] == pytest.approx(s_live["final_loss"], rel=1e-4)
    a, b = live.state_dict(), cached.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert s_cached["eval"]["pixel_error_px"] == pytest.approx(s_live["eval"]["pixel_error_px"], rel=1e-4, abs=1e-4)


def test_float16_features_stay_within_their_rounding(ctx):
    seed_everything(0)
    policy = build_policy(FROZEN, PARA, ctx.create, "cpu", BehaviorCloningConfig())
    cache = feature_cache.FeatureCache.ensure(policy, ctx.dataset_path("demos"), log=ctx.log)
    ds = DemoDataset(ctx.dataset_path("demos"), horizon=2, stride=2)
    x = policy.backbone_input(ds[13]["image"][None])
    with torch.no_grad():
        live = policy.backbone.frozen_features(x)[0]
    d, t = ds.locate(13)
    stored = torch.from_numpy(cache.frame(cache.demo_offset(ds.demos[d].name), t))
    assert stored.shape == live.shape and cache.index["frames"] == len(ds) == 20
    torch.testing.assert_close(stored, live, rtol=2e-3, atol=2e-3)


def test_the_runner_path_builds_once_shares_and_rebuilds_what_does_not_verify(ctx):
    tcfg = TRAIN.model_copy(update={"steps": 2, "eval_every": 2})
    spec = lambda head: SimpleNamespace(backbone=FROZEN, head=head, objective=BehaviorCloningConfig(),  # noqa: E731
                                        dataset="demos", demos=None, demo_seed=0, init_from=None, train=tcfg,
                                        filter_key=None)
    train_policy("para", spec(PARA), ctx)
    train_policy("act", spec(ACT), ctx)  # the same frozen backbone (same seed, same init): the same cache
    builds = [m for m in ctx.messages if m.startswith("feature cache:")]
    assert len(builds) == 1 and "20 frames" in builds[0]
    first, second = (io.read_json(ctx.checkpoint_dir(p) / "checkpoint.json")["summary"]["feature_cache"] for p in ("para", "act"))
    assert first["frames"] == second["frames"] == 20 and first["directory"] == second["directory"]
    assert first["built"] and not second["built"] and second["build_seconds"] == 0  # the first policy paid for the build
    (directory,) = cache_dirs(ctx)
    data = directory / "features.bin"
    blob = bytearray(data.read_bytes())
    blob[100] ^= 0xFF
    data.write_bytes(bytes(blob))  # same size, other bytes
    feature_cache._verified.clear()  # a new process: nothing checked yet
    train_policy("para2", spec(PARA), ctx)
    assert any("rebuilding (features.bin does not match its sha256)" in m for m in ctx.messages)
    assert len([m for m in ctx.messages if m.startswith("feature cache:")]) == 2


def test_a_torn_build_is_never_used(ctx):
    seed_everything(0)
    policy = build_policy(FROZEN, PARA, ctx.create, "cpu", BehaviorCloningConfig())
    good = feature_cache.FeatureCache.ensure(policy, ctx.dataset_path("demos"), log=ctx.log)
    (good.directory / "index.json").unlink()  # killed before its commit point
    good.directory.rename(good.directory.with_name(good.directory.name + ".partial"))
    again = feature_cache.FeatureCache.ensure(policy, ctx.dataset_path("demos"), log=ctx.log)
    assert again.directory == good.directory and (again.directory / "index.json").exists()
    assert [d.name for d in cache_dirs(ctx)] == [good.directory.name]


def test_nothing_frozen_means_no_cache(ctx):
    live = FROZEN.model_copy(update={"freeze": "none"})
    seed_everything(0)
    policy = build_policy(live, PARA, ctx.create, "cpu", BehaviorCloningConfig())
    assert not feature_cache.cacheable(policy.backbone)
    ds = DemoDataset(ctx.dataset_path("demos"), horizon=2, stride=2)
    assert feature_cache.wrap(policy, ds, None) == (ds, None) and cache_dirs(ctx) == []


@pytest.mark.parametrize("freeze", [{"freeze": "all"}, {"freeze": "partial", "freeze_blocks": 1}])
def test_the_plugin_kit_checks_the_frozen_split(reg, freeze):
    from pxp.testing import check_backbone

    bb = check_backbone(reg, "tiny_vit", image_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, **freeze)
    assert bb.frozen_key()["blocks"] == (2 if freeze["freeze"] == "all" else 1)
