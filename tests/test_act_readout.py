"""ACT's readouts beyond the CLS token: ``queries`` (one learned query per future step over the patch
tokens) and ``spatial_softmax`` (keypoints: each map's expected position)."""
from __future__ import annotations

import torch

import pytest

from pxp.plugins.heads.act.model import ActHead, sincos_2d, spatial_softmax
from pxp.plugins.heads.act.config import ActRegressionConfig


def head(**kw) -> ActHead:
    cfg = ActRegressionConfig(horizon=3, hidden_dim=32, workspace_low=(-1, -1, 0), workspace_high=(1, 1, 2), **kw)
    return ActHead(cfg, in_dim=16)


def cond(B: int) -> dict:
    return {"eef_pos": torch.zeros(B, 3), "gripper": torch.zeros(B)}


def test_sincos_code_is_distinct_per_patch_and_fixed():
    code = sincos_2d(4, 6, 16)
    assert code.shape == (24, 16)
    assert torch.cdist(code, code).add(torch.eye(24)).min() > 0  # no two patches share a code
    assert torch.equal(code, sincos_2d(4, 6, 16))


def test_queries_readout_has_the_cls_readouts_outputs_and_parameter_shapes():
    torch.manual_seed(0)
    cls_head, q_head = head(), head(readout="queries")
    fmap, cls = torch.randn(2, 16, 4, 4), torch.randn(2, 16)
    a, b = cls_head(fmap, cls, cond(2)), q_head(fmap, cls, cond(2))
    assert a["pos01"].shape == b["pos01"].shape == (2, 3, 3)
    assert a["gripper_logits"].shape == b["gripper_logits"].shape == (2, 3, 2)
    shared = {k: v.shape for k, v in cls_head.state_dict().items()}
    assert all(q_head.state_dict()[k].shape == s for k, s in shared.items())  # a CLS checkpoint transfers


def test_spatial_softmax_of_a_peaked_map_is_its_cell_centre():
    maps = torch.full((1, 2, 4, 8), -1e4)
    maps[0, 0, 1, 6] = 0.0  # row 1 of 4, column 6 of 8
    maps[0, 1, 3, 0] = 0.0
    xy = spatial_softmax(maps).view(2, 2)
    assert torch.allclose(xy[0], torch.tensor([(6 + 0.5) / 4 - 1, (1 + 0.5) / 2 - 1]))
    assert torch.allclose(xy[1], torch.tensor([(0 + 0.5) / 4 - 1, (3 + 0.5) / 2 - 1]))
    assert torch.allclose(spatial_softmax(torch.zeros(1, 1, 4, 8)), torch.zeros(1, 2), atol=1e-6)  # flat → centre


def test_spatial_softmax_head_outputs_one_target_per_step():
    h = head(readout="spatial_softmax", keypoints=5)
    out = h(torch.randn(2, 16, 4, 4), torch.randn(2, 16), cond(2))
    assert out["pos01"].shape == (2, 3, 3) and out["gripper_logits"].shape == (2, 3, 2)
    assert h.keypoint_maps.out_channels == 5 and h.mlp[0].in_features == 2 * 5 + 4  # keypoints + state


@pytest.mark.parametrize("readout", ["queries", "spatial_softmax"])
def test_readout_localises_a_bright_patch(readout):
    """Learning check: the readout regresses where a marked patch is (which the CLS token, here a
    constant, cannot say)."""
    torch.manual_seed(0)
    h = head(readout=readout, condition_on_state=False)
    opt = torch.optim.Adam(h.parameters(), 5e-3)
    for step in range(250):
        fmap, target = marked(64)
        loss = (h(fmap, torch.zeros(64, 16), cond(64))["pos01"][..., :2] - target[:, None]).abs().mean()
        opt.zero_grad(), loss.backward(), opt.step()
    fmap, target = marked(256)
    with torch.no_grad():
        err = (h(fmap, torch.zeros(256, 16), cond(256))["pos01"][..., :2] - target[:, None]).abs().mean()
    assert err < 0.1  # in box units (−1..1); a constant prediction is off by ≈ 0.55


def marked(B: int):
    r, c = torch.randint(0, 6, (B,)), torch.randint(0, 6, (B,))
    fmap = torch.zeros(B, 16, 6, 6)
    fmap[torch.arange(B), 0, r, c] = 5.0
    return fmap, torch.stack([r, c], 1).float() / 2.5 - 1.0


def test_relative_targets_are_offsets_from_the_end_effector():
    torch.manual_seed(0)
    h = head(relative_to_eef=True)
    fmap, cls, c = torch.randn(2, 16, 4, 4), torch.randn(2, 16), cond(2)
    c["eef_pos"] = torch.tensor([[0.5, -0.5, 1.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        h.pos_out.weight.zero_(), h.pos_out.bias.zero_()
    out = h(fmap, cls, c)
    xyz = h.denormalize(out["pos01"])  # a zero offset is the end effector itself, at every step
    assert torch.allclose(xyz, c["eef_pos"][:, None].expand(-1, 3, -1), atol=1e-6)


def test_relative_targets_need_world_space():
    with pytest.raises(ValueError, match="relative_to_eef needs space: world"):
        ActRegressionConfig(space="image", relative_to_eef=True)


def test_gripper_only_state_ignores_where_the_arm_is():
    torch.manual_seed(0)
    h = head(readout="queries", condition_on_eef=False)
    assert h.mlp[0].in_features == 16 + 1  # features + gripper
    fmap, cls, c = torch.randn(2, 16, 4, 4), torch.randn(2, 16), cond(2)
    moved = {**c, "eef_pos": torch.tensor([[0.5, -0.5, 1.0], [0.2, 0.3, 0.4]])}
    with torch.no_grad():
        assert torch.equal(h(fmap, cls, c)["pos01"], h(fmap, cls, moved)["pos01"])
        closed = {**c, "gripper": torch.ones(2)}
        assert not torch.equal(h(fmap, cls, c)["gripper_logits"], h(fmap, cls, closed)["gripper_logits"])
    with pytest.raises(ValueError, match="condition_on_eef: false only applies with condition_on_state: true"):
        ActRegressionConfig(condition_on_state=False, condition_on_eef=False)


def test_height_state_reads_the_arms_height_not_where_it_is():
    torch.manual_seed(0)
    h = head(readout="queries", condition_on_eef="height")
    assert h.mlp[0].in_features == 16 + 1 + 1  # features + eef z + gripper
    fmap, cls, c = torch.randn(2, 16, 4, 4), torch.randn(2, 16), cond(2)
    eef = c["eef_pos"].clone()
    moved_xy, lowered = eef.clone(), eef.clone()
    moved_xy[:, :2] += torch.tensor([0.3, -0.2])
    lowered[:, 2] -= 0.1
    with torch.no_grad():
        out = h(fmap, cls, c)["pos01"]
        assert torch.equal(out, h(fmap, cls, {**c, "eef_pos": moved_xy})["pos01"])
        assert not torch.equal(out, h(fmap, cls, {**c, "eef_pos": lowered})["pos01"])
    with pytest.raises(ValueError, match="condition_on_eef: height only applies with condition_on_state: true"):
        ActRegressionConfig(condition_on_state=False, condition_on_eef="height")
