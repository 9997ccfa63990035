"""ACT's ``readout: queries`` (one learned query per future step over the patch tokens)."""
from __future__ import annotations

import torch

from pxp.plugins.heads.act.model import ActHead, sincos_2d
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


def test_queries_readout_localises_a_bright_patch():
    """Learning check: the query readout regresses where a marked patch is (which the CLS token, here
    a constant, cannot say)."""
    torch.manual_seed(0)
    h = head(readout="queries", condition_on_state=False)
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
