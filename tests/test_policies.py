"""Backbones, heads, PARA geometry, objectives, the predict contract and checkpoint safety."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pxp.experiment import policy as pol
from pxp.plugins.backbones.vit import DinoV2Config, TinyViTConfig
from pxp.plugins.heads import para
from pxp.plugins.heads.act import ActRegressionConfig
from pxp.plugins.heads.para import ParaVolumeConfig
from pxp.plugins.objectives.losses import BehaviorCloningConfig, PointTrack2DConfig
from pxp.testing import check_backbone, check_config_roundtrip, check_light_import

from ._policy_data import look_at_camera, one_thread, reg  # noqa: F401  (fixtures)

TINY = dict(image_size=64, patch_size=8, embed_dim=64, depth=2, num_heads=2)


def _batch(B=3, T=2, size=64, seed=0):
    """A training batch (docs/architecture.md) whose pixels are real projections of its targets."""
    rng = np.random.default_rng(seed)
    cam = look_at_camera(size, size)
    tgt = np.stack([rng.uniform([-0.1, -0.15, 0.9], [0.1, 0.15, 1.15], size=(T, 3)) for _ in range(B)])
    eef = rng.uniform([-0.1, -0.15, 0.9], [0.1, 0.15, 1.15], size=(B, 3))
    f32 = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)
    return {"image": torch.randn(B, 3, size, size), "eef_pos": f32(eef), "eef_pixel": f32(cam.project(eef)),
            "gripper": f32(rng.integers(0, 2, B)), "target_pos": f32(tgt), "target_pixel": f32(cam.project(tgt)),
            "target_gripper": f32(rng.integers(0, 2, (B, T))), "K": f32(np.broadcast_to(cam.K, (B, 3, 3))),
            "extrinsics": f32(np.broadcast_to(cam.extrinsics, (B, 4, 4)))}


def _policy(reg, head_cfg, backbone_cfg=None):
    return pol.build_policy(backbone_cfg or TinyViTConfig(**TINY), head_cfg, reg.create, objective_cfg=BehaviorCloningConfig())


# ---------------------------------------------------------------- registration and backbones

def test_plugins_register_and_import_light(reg):
    for kind, name, fields in [("backbones", "tiny_vit", {}), ("backbones", "small_cnn", {"width": 32}), ("backbones", "dinov2", {"freeze": "partial", "freeze_blocks": 2}),
                               ("heads", "para_volume", {"height_bins": 1}), ("heads", "act_regression", {"space": "image"}),
                               ("objectives", "behavior_cloning", {}), ("objectives", "point_track_2d", {})]:
        check_config_roundtrip(reg, kind, name, **fields)
    for module in ("backbones.vit", "backbones.cnn", "heads.para", "heads.act", "objectives.losses"):
        check_light_import(f"pxp.plugins.{module}")
    check_light_import("pxp.experiment.training")


def test_tiny_vit_and_random_dinov2_shapes(reg):
    check_backbone(reg, "tiny_vit", image_size=64, **{k: v for k, v in TINY.items() if k != "image_size"})
    cfg = DinoV2Config(image_size=28, model_kwargs={"depth": 1}, weights="random")
    bb = reg.create("backbones", cfg)
    fmap, cls = bb(torch.randn(2, 3, 28, 28))
    assert fmap.shape == (2, 384, 2, 2) and cls.shape == (2, 384)
    assert bb.weights_info == {"source": "random init"} and bb.patch_size == 14


def test_small_cnn_cells_are_local(reg):
    """3 stride-2 stages: 8-px cells (16×16 at 128 px). Pixel (100, 20) lies under cells rows 12–13 ×
    columns 2–3 (3×3 convs, stride 2, padding 1); every other cell changes only through GroupNorm's
    statistics, by under a tenth of the largest change."""
    bb = check_backbone(reg, "small_cnn", image_size=128, width=32, stages=3).eval()
    assert (bb.patch_size, bb.embed_dim) == (8, 32)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[..., 100, 20] += 1.0
    with torch.no_grad():
        change = (bb(x)[0] - bb(y)[0]).abs().sum(1)[0]
    big = {tuple(rc) for rc in torch.nonzero(change > 0.1 * change.max()).tolist()}
    assert big and big <= {(12, 2), (12, 3), (13, 2), (13, 3)}, big


def _dinov2_like(depth=2, img=56):
    import timm

    torch.manual_seed(1)
    return timm.create_model("vit_small_patch14_dinov2", depth=depth, img_size=img, num_classes=0)


@pytest.mark.parametrize("fmt", ["safetensors", "meta_pth"])
def test_dinov2_loads_local_weights(reg, tmp_path, fmt):
    """Weights written from the same timm model class load exactly; Meta's .pth layout (with its
    mask_token) is accepted; the report records the file and its sha256."""
    src = _dinov2_like()
    state = {k: v.clone() for k, v in src.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "dinov2.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "dinov2_vits14_pretrain.pth"
        torch.save({**state, "mask_token": torch.zeros(1, 384)}, path)
    bb = reg.create("backbones", DinoV2Config(weights=str(path), image_size=56, model_kwargs={"depth": 2}))
    loaded = bb.model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    assert bb.weights_info == {"source": str(path), "sha256": pol._sha256(path.read_bytes())}
    # A different input size resamples the position embeddings instead of failing.
    bb70 = reg.create("backbones", DinoV2Config(weights=str(path), image_size=70, model_kwargs={"depth": 2}))
    assert bb70(torch.randn(1, 3, 70, 70))[0].shape == (1, 384, 5, 5)
    assert torch.equal(bb70.model.blocks[1].mlp.fc2.weight, state["blocks.1.mlp.fc2.weight"])


def test_dinov2_loads_from_the_local_hf_cache_offline(reg, tmp_path, monkeypatch):
    """An hf-hub: id resolves to the file in the local cache (the layout huggingface_hub writes); no network."""
    import huggingface_hub.constants as hf
    from safetensors.torch import save_file

    state = _dinov2_like(depth=1, img=28).state_dict()
    snap = tmp_path / "models--someone--dinov2-test" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    (tmp_path / "models--someone--dinov2-test" / "refs").mkdir()
    (tmp_path / "models--someone--dinov2-test" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    cfg = DinoV2Config(weights="hf-hub:someone/dinov2-test", image_size=28, model_kwargs={"depth": 1})
    assert cfg.preflight() is None
    bb = reg.create("backbones", cfg)
    assert torch.equal(bb.model.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])
    assert bb.weights_info["source"] == "hf-hub:someone/dinov2-test"
    assert bb.weights_info["sha256"] == pol._sha256((snap / "model.safetensors").read_bytes())


def test_dinov2_missing_weights_are_clear_errors(reg, tmp_path, monkeypatch):
    """A path that does not exist fails validation (naming the field); timm or HF-cache weights that
    cannot be had here fail preflight quickly (offline, empty cache) and the factory with the how-to."""
    import huggingface_hub.constants as hf
    from pydantic import ValidationError

    from pxp.core.errors import PxpError

    with pytest.raises(ValidationError, match="weights file .*nope.pth.* does not exist"):
        DinoV2Config(weights=str(tmp_path / "nope.pth"))
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    assert "not in the local Hugging Face cache" in DinoV2Config(weights="timm").preflight()
    assert time.monotonic() - t0 < 10
    assert "someone/absent is not in the local" in DinoV2Config(weights="hf-hub:someone/absent").preflight()
    with pytest.raises(PxpError, match="weights: random"):
        reg.create("backbones", DinoV2Config(weights="timm", image_size=28, model_kwargs={"depth": 1}))
    assert DinoV2Config(weights="random").preflight() is None and DinoV2Config(weights=None).weights == "random"


def test_param_groups_separate_backbone_lr_and_skip_decay_where_it_harms():
    """Backbone lr = lr × backbone_lr_scale (default 0.1 for pretrained weights, 1 for random init);
    no weight decay on biases, norms, pos_embed, cls_token or learned embedding vectors."""
    from pxp.core.spec import TrainConfig
    from pxp.experiment.training import make_optimizer, param_groups
    from pxp.testing import plugin_registry

    reg = plugin_registry()
    policy = _policy(reg, ParaVolumeConfig(horizon=2, height_bins=4, heatmap_size=16, hidden_dim=16))
    tcfg = TrainConfig(steps=1, lr=1e-3, weight_decay=0.05)
    groups = {(g["part"], g["weight_decay"] > 0): g for g in param_groups(policy, tcfg)}
    decayed = groups[("backbone", True)]["names"] + groups[("head", True)]["names"]
    free = groups[("backbone", False)]["names"] + groups[("head", False)]["names"]
    for name in ("backbone.model.pos_embed", "backbone.model.cls_token", "backbone.model.norm.weight",
                 "backbone.model.blocks.0.attn.qkv.bias", "head.step_embed", "head.eef_embed", "head.proj.bias"):
        assert name in free, name
    assert "backbone.model.blocks.0.attn.qkv.weight" in decayed and "head.to_logits.weight" in decayed
    assert {g["lr_scale"] for g in groups.values() if g["part"] == "backbone"} == {1.0}  # random init
    policy.backbone.weights_info = {"source": "timm:timm/vit_small_patch14_dinov2.lvd142m"}
    assert {g["lr_scale"] for g in param_groups(policy, tcfg) if g["part"] == "backbone"} == {0.1}
    opt = make_optimizer(policy, TrainConfig(steps=1, lr=1e-3, backbone_lr_scale=0.25))
    assert sorted({g["lr_scale"] for g in opt.param_groups}) == [0.25, 1.0]


def test_freeze_modes(reg):
    full = reg.create("backbones", TinyViTConfig(**TINY, freeze="all"))
    assert not any(p.requires_grad for p in full.parameters())
    part = reg.create("backbones", TinyViTConfig(**TINY, freeze="partial", freeze_blocks=1))
    assert not any(p.requires_grad for p in part.model.blocks[0].parameters())
    assert not part.model.patch_embed.proj.weight.requires_grad
    assert all(p.requires_grad for p in part.model.blocks[1].parameters())
    with pytest.raises(ValueError, match="freeze_blocks"):
        DinoV2Config(freeze="partial")


# ---------------------------------------------------------------- heads

def test_head_output_shapes(reg):
    b = _batch(B=3, T=2)
    p = _policy(reg, ParaVolumeConfig(horizon=2, height_bins=8, heatmap_size=32, hidden_dim=16))
    out = p.forward(b, teacher=True)
    assert out["logits"].shape == (3, 2, 8, 32, 32) and out["gripper_logits"].shape == (3, 2, 2)
    assert p.forward(b)["gripper_logits"].shape == (3, 2, 2)  # inference: read at the argmax pixel
    a = _policy(reg, ActRegressionConfig(horizon=2, workspace_low=(-0.5, -0.5, 0.8), workspace_high=(0.5, 0.5, 1.4)))
    out = a.forward(b)
    assert out["pos01"].shape == (3, 2, 3) and out["gripper_logits"].shape == (3, 2, 2)
    # linear output on box-normalised coordinates (−1..1 inside the box): normalise ∘ de-normalise = identity
    assert torch.allclose(a.head.denormalize(a.head.normalize(b["target_pos"])), b["target_pos"], atol=1e-5)
    a2 = _policy(reg, ActRegressionConfig(horizon=5, space="image", workspace_low=(-1, -1, 0), workspace_high=(1, 1, 2)))
    assert a2.forward(b)["pos01"].shape == (3, 5, 2)


def test_para_dilated_head_widens_each_cells_view():
    """How far a change of the corner feature reaches into the 32² logits: the ×2 bilinear upsampling spreads
    feature (0, 0) over cells 0–2, then each 3×3 layer adds its dilation: 2 plain layers reach cell 4 (a cell
    sees ±2 cells, ±8 px at 128 px), 4 layers dilated 1, 2, 4, 8 reach cell 17 (±15 cells, ±60 px)."""
    from pxp.plugins.heads.para.model import ParaHead

    def reach(**fields):
        torch.manual_seed(0)
        cfg = ParaVolumeConfig(horizon=1, height_bins=2, heatmap_size=32, hidden_dim=8,
                               condition_on_eef=False, condition_on_gripper=False, **fields)
        head = ParaHead(cfg, in_dim=4).eval()
        f = torch.randn(1, 4, 16, 16)
        g = f.clone()
        g[..., 0, 0] += 10.0
        with torch.no_grad():
            change = (head(g, None, {})["logits"] - head(f, None, {})["logits"]).abs().amax(dim=(0, 1, 2))
        rows, cols = torch.nonzero(change > 0).T
        return int(max(rows.max(), cols.max()))

    assert reach(conv_layers=2) == 2 + 1 + 1
    assert reach(conv_layers=4) == 2 + 4
    assert reach(conv_layers=4, dilated=True) == 2 + 1 + 2 + 4 + 8
    assert ParaVolumeConfig().dilated is False  # opt-in: existing specs and checkpoints are unchanged


def test_para_gelu_never_hands_subnormal_gradients_to_the_convs():
    """A small gradient times GELU's small slope underflows to subnormals, which made oneDNN's CPU
    conv backward ~8x slower after a few hundred steps. The head's GELU flushes gradient entries
    below 1e-30 to 0 while training on CPU; its forward is exactly GELU."""
    import torch.nn.functional as F

    from pxp.plugins.heads.para.model import FLUSH_BELOW, FlushGELU

    x = torch.tensor([-4.0, -3.0, -3.0, -0.5, -0.5, 0.0, 0.7, 2.0, 4.0])
    g = torch.tensor([1e-36, 1e-37, 1e-3, 1e-32, 1.0, 1.0, 1e-25, 1.0, 1.0])
    ref_x, own_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, own = F.gelu(ref_x), FlushGELU()(own_x)
    ref.backward(g)
    own.backward(g)
    tiny = torch.finfo(torch.float32).tiny
    assert ((ref_x.grad != 0) & (ref_x.grad.abs() < tiny)).any()  # plain GELU's gradient has subnormals
    assert not ((own_x.grad != 0) & (own_x.grad.abs() < tiny)).any()
    keep = ref_x.grad.abs() >= FLUSH_BELOW
    assert torch.equal(own_x.grad[keep], ref_x.grad[keep]) and (own_x.grad[~keep] == 0).all()
    assert keep.sum() == 6 and torch.equal(own.detach(), ref.detach())
    with torch.no_grad():  # inference is plain GELU
        assert torch.equal(FlushGELU()(x), F.gelu(x))


def test_act_without_workspace_refuses_to_run(reg):
    a = _policy(reg, ActRegressionConfig(horizon=2))
    with pytest.raises(RuntimeError, match="workspace"):
        a.forward(_batch())


# ---------------------------------------------------------------- PARA geometry

CFG = ParaVolumeConfig(horizon=1, height_bins=32, height_range=(0.88, 1.20), heatmap_size=64)


def test_para_decode_encode_within_half_a_bin():
    cam = look_at_camera(128, 128)
    rng = np.random.default_rng(0)
    targets = rng.uniform([-0.15, -0.2, 0.89], [0.15, 0.2, 1.19], size=(500, 3))
    cells, bins = para.encode(targets, cam, CFG)
    decoded = para.decode_cells(cells, bins, cam, CFG)
    half_bin = (CFG.height_range[1] - CFG.height_range[0]) / CFG.height_bins / 2
    assert np.abs(decoded[:, 2] - targets[:, 2]).max() <= half_bin + 1e-12
    # The decoded point projects back into the same heatmap cell as the target.
    again, _ = para.encode(decoded, cam, CFG)
    assert (again == cells).all()


def test_para_unproject_of_decoded_pixel_and_height_is_the_target():
    """A target at a cell centre and a bin-centre height survives encode → logits → decode exactly,
    and the decoded (pixel, height) unprojects to it."""
    cam = look_at_camera(128, 128)
    rng = np.random.default_rng(1)
    cells = rng.integers(8, 56, size=(40, 2))
    bins = rng.integers(0, CFG.height_bins, size=40)
    z = para.height_bin_centers(CFG.height_bins, CFG.height_range)[bins]
    targets = cam.unproject(para.cell_to_pixel(cells, cam, CFG), z)
    for target, cell, b in zip(targets, cells, bins):
        logits = torch.full((1, CFG.height_bins, 64, 64), -5.0)
        enc_cell, enc_bin = para.encode(target[None], cam, CFG)
        assert (enc_cell[0] == cell).all() and enc_bin[0] == b
        logits[0, enc_bin[0], enc_cell[0, 0], enc_cell[0, 1]] = 5.0
        xyz, pixel, _, _ = para.decode(logits, cam, CFG)
        np.testing.assert_allclose(xyz[0], target, atol=1e-9)
        np.testing.assert_allclose(cam.unproject(pixel[0], xyz[0, 2]), target, atol=1e-9)
        np.testing.assert_allclose(cam.project(target), pixel[0], atol=1e-6)


def test_training_targets_match_geometry(reg):
    """The head's flat training index is the same (bin, cell) that encode() gives from the camera."""
    b = _batch(B=4, T=3, size=64)
    cfg = ParaVolumeConfig(horizon=3, height_bins=16, heatmap_size=32, hidden_dim=8)
    head = _policy(reg, cfg).head
    flat = head.volume_targets(pol.image_uv(b, "target_pixel"), b["target_pos"][..., 2]).numpy()
    cells, bins = para.encode(b["target_pos"].double().numpy(), look_at_camera(64, 64), cfg)
    assert (flat == bins * 32 * 32 + cells[..., 0] * 32 + cells[..., 1]).all()


def test_height_bins_agree_between_numpy_and_torch():
    z = np.linspace(0.8, 1.3, 301)
    for n in (1, 7, 32):
        ours = para.height_bin_index(z, n, (0.88, 1.2))
        expected = np.clip(np.floor((z - 0.88) * n / (1.2 - 0.88)), 0, n - 1)
        assert (ours == expected).all()
        assert (para.height_bin_index(torch.as_tensor(z), n, (0.88, 1.2)).numpy() == ours).all()


# ---------------------------------------------------------------- objectives

def test_objectives(reg):
    b = _batch(B=2, T=2)
    bc, pt = reg.create("objectives", BehaviorCloningConfig()), reg.create("objectives", PointTrack2DConfig())
    flat = _policy(reg, ParaVolumeConfig(horizon=2, height_bins=1, heatmap_size=16, hidden_dim=8))
    out = flat.forward(b, teacher=True)
    _, parts = bc(out, b, flat.head)
    loss2d, parts2d = pt(out, b, flat.head)
    # With one height bin the 2D heatmap loss is exactly the volume cross-entropy.
    assert torch.allclose(parts["loss/volume_ce"], loss2d) and set(parts2d) == {"loss/heatmap_ce"}
    act = _policy(reg, ActRegressionConfig(horizon=2, workspace_low=(-1, -1, 0), workspace_high=(1, 1, 2)))
    loss, parts = bc(act.forward(b), b, act.head)
    assert set(parts) == {"loss/position_l1", "loss/gripper_ce"} and torch.isfinite(loss)
    with pytest.raises(ValueError, match="space: image"):
        pt(act.forward(b), b, act.head)


# ---------------------------------------------------------------- predict + checkpoints

def test_predict_contract_and_checkpoint_roundtrip(reg, tmp_path):
    p = _policy(reg, ParaVolumeConfig(horizon=3, height_bins=8, heatmap_size=32, hidden_dim=16))
    cam = look_at_camera(128, 128)  # the scene renders at 128; the image passed in is 64
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    state = {"eef_pos": np.array([0.0, 0.0, 1.1]), "eef_pixel": cam.scaled(64, 64).project([0.0, 0.0, 1.1]), "gripper": 0.0}
    a = p.predict(img, state, cam)
    assert a.shape == (3, 4) and np.isfinite(a).all() and ((a[:, 3] >= 0) & (a[:, 3] <= 1)).all()
    assert ((a[:, 2] > 0.88) & (a[:, 2] < 1.2)).all()  # PARA heights are bin centres
    pol.write_checkpoint(tmp_path / "ck", 7, p.state_dict(), None, {"policy": p.config, "weights_info": p.weights_info})
    q = pol.load_policy(tmp_path / "ck")
    assert q.step == 7 and q.weights_info == {"source": "random init"}
    np.testing.assert_array_equal(q.predict(img, state, cam), a)


def test_tampered_checkpoint_is_refused(tmp_path):
    pol.write_checkpoint(tmp_path, 1, {"w": torch.ones(10)}, None, {})
    marker = json.loads((tmp_path / "checkpoint.json").read_text())
    f = tmp_path / marker["files"]["model"]
    data = bytearray(f.read_bytes())
    data[-20] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(pol.CheckpointError, match="sha256"):
        pol.read_checkpoint(tmp_path)
    with pytest.raises(pol.CheckpointError, match="no complete checkpoint"):
        pol.read_checkpoint(tmp_path / "empty")


_WRITER = textwrap.dedent("""
    import sys, torch
    from pxp.experiment.policy import write_checkpoint
    for step in range(1, 1000):
        state = {"a": torch.full((1_500_000,), float(step)), "b": torch.full((1_500_000,), float(step))}
        print("writing", step, flush=True)
        # A sizeable train state too, so the window between the two data files is tens of ms wide.
        train = {"step": step, "optimizer": torch.full((3_000_000,), float(step))}
        write_checkpoint(sys.argv[1], step, state, train, {"policy": {}})
""")


def _interrupted(d) -> bool:
    """Evidence that the kill hit a checkpoint half way: a temp file, or data files for a step the
    marker does not name."""
    if not d.exists():
        return False
    marker = pol.read_marker(d)
    named = set(marker["files"].values()) if marker else set()
    return any(".tmp" in p.name or (p.suffix == ".pt" and p.name not in named) for p in d.iterdir())


def _kill_when(proc, d, seen, timeout=60.0) -> None:
    """SIGKILL the writer the moment ``seen(names in d)`` holds: a precise point inside a write."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        names = os.listdir(d) if d.exists() else []
        if seen(names):
            os.kill(proc.pid, signal.SIGKILL)
            return
        time.sleep(0.0005)
    proc.kill()
    raise AssertionError(f"writer never reached the kill point; {d} holds {names}")


def test_checkpoint_killed_while_writing_is_never_loaded(tmp_path):
    """SIGKILL a process at the dangerous moments of a checkpoint write: what loads is always one
    whole earlier checkpoint (every tensor from the same step), or a clear error when none finished."""
    points = {  # kill point → step the marker must still name afterwards (0 = none)
        "first write, temp file": (lambda names: any(".tmp" in n for n in names), 0),
        "data file written, marker not yet": (lambda names: "model-00000003.pt" in names and "train-00000003.pt" not in names, 2),
        "second file half way": (lambda names: "model-00000004.pt" in names and any(".tmp" in n for n in names), 3),
    }
    for i, (what, (seen, expect)) in enumerate(points.items()):
        d = tmp_path / f"t{i}"
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(d)], stdout=subprocess.DEVNULL)
        try:
            _kill_when(proc, d, seen)
        finally:
            proc.wait()
        assert _interrupted(d), f"{what}: the kill did not land inside a write"
        if expect == 0:
            with pytest.raises(pol.CheckpointError, match="no complete checkpoint"):
                pol.read_checkpoint(d)
            continue
        marker, model, train = pol.read_checkpoint(d, with_train_state=True)
        assert marker["step"] == expect == train["step"], what
        assert (model["a"] == expect).all() and (model["b"] == expect).all(), what
        assert (train["optimizer"] == expect).all(), what


def test_height_bins():
    assert para.height_bin_index([0.9, 0.949, 0.951, 1.19, 1.2, 2.0, 0.0], 6, (0.9, 1.2)).tolist() == [0, 0, 1, 5, 5, 5, 0]
    c = para.height_bin_centers(6, (0.9, 1.2))
    assert np.allclose(c[[0, -1]], [0.925, 1.175]) and para.height_bin_index(c, 6, (0.9, 1.2)).tolist() == list(range(6))
    with pytest.raises(ValueError):
        para.height_bin_index(1.0, 0, (0.9, 1.2))


@pytest.mark.parametrize("head, fields, objective", [
    ("para_volume", {"horizon": 2, "height_bins": 4, "heatmap_size": 8, "hidden_dim": 8}, "behavior_cloning"),
    ("para_volume", {"horizon": 2, "height_bins": 1, "heatmap_size": 8, "hidden_dim": 8}, "point_track_2d"),
    ("act_regression", {"horizon": 2, "hidden_dim": 8}, "behavior_cloning"),
    ("act_regression", {"horizon": 2, "hidden_dim": 8, "space": "image"}, "point_track_2d"),
])
def test_builtin_heads_and_objectives_meet_their_contracts(reg, head, fields, objective):
    from pxp.testing import check_head, check_objective

    check_objective(reg, objective, check_head(reg, head, **fields))
