"""PARA's sub-cell decoding (``subcell: true``): exact on constructed volumes, local, and off by default."""
from __future__ import annotations

import numpy as np

from pxp.plugins.heads.para.geometry import height_bin_centers
from pxp.plugins.heads.para import geometry as para
from pxp.plugins.heads.para.config import ParaVolumeConfig
from tests._policy_data import look_at_camera

N, n = 8, 16
CFG = ParaVolumeConfig(horizon=1, height_bins=N, heatmap_size=n, subcell=True)


def volume(peaks: dict, floor: float = -40.0) -> np.ndarray:
    """(1, N, n, n) logits: ``floor`` everywhere, the given value at each (bin, row, col)."""
    v = np.full((1, N, n, n), floor)
    for (b, r, c), value in peaks.items():
        v[0, b, r, c] = value
    return v


def test_a_symmetric_peak_decodes_to_its_cell_centre():
    v = volume({(3, 7, 9): 5.0, (3, 6, 9): 2.0, (3, 8, 9): 2.0, (3, 7, 8): 1.0, (3, 7, 10): 1.0,
                (2, 7, 9): 0.0, (4, 7, 9): 0.0})
    cells, bins = para.peaks(v, subcell=True)
    np.testing.assert_allclose(cells[0], [7.0, 9.0], atol=1e-12)
    np.testing.assert_allclose(bins[0], 3.0, atol=1e-12)


def test_two_equal_cells_and_bins_decode_halfway():
    v = volume({(5, 4, 10): 3.0, (5, 4, 11): 3.0, (4, 4, 10): 3.0, (4, 4, 11): 3.0})
    cells, bins = para.peaks(v, subcell=True)
    # columns 10 and 11 carry the same height-marginal mass at row 4 → 10.5; at the argmax cell
    # (4, 10) bins 4 and 5 tie → 4.5
    np.testing.assert_allclose(cells[0], [4.0, 10.5], atol=1e-12)
    np.testing.assert_allclose(bins[0], 4.5, atol=1e-12)
    cam = look_at_camera(128, 128)
    z = height_bin_centers(N, CFG.height_range)
    xyz = para.decode_cells(cells[0], bins[0], cam, CFG)
    assert abs(xyz[2] - (z[4] + z[5]) / 2) < 1e-12


def test_a_second_mode_elsewhere_does_not_pull_the_peak():
    near = volume({(2, 3, 3): 6.0})
    far = volume({(2, 3, 3): 6.0, (6, 12, 12): 5.9})
    for v in (near, far):
        cells, bins = para.peaks(v, subcell=True)
        np.testing.assert_allclose(cells[0], [3.0, 3.0], atol=1e-12)
        np.testing.assert_allclose(bins[0], 2.0, atol=1e-12)


def test_without_subcell_the_peak_is_the_argmax_cell():
    v = volume({(5, 4, 10): 3.0, (5, 4, 11): 2.9})
    cells, bins = para.peaks(v, subcell=False)
    assert cells.dtype.kind == "i" and cells[0].tolist() == [4, 10] and bins[0] == 5
    assert ParaVolumeConfig().subcell is False  # opt-in: existing specs decode as before


def test_head_batch_decode_matches_the_single_sample_decode():
    import torch

    from pxp.plugins.heads.para.model import ParaHead

    head = ParaHead(CFG, in_dim=8)
    logits = torch.randn(2, 1, N, n, n) * 3
    out = {"logits": logits, "gripper_logits": torch.zeros(2, 1, 2)}
    cams = [look_at_camera(128, 128), look_at_camera(128, 128)]
    batch = head.decode(out, cams)
    for i in range(2):
        xyz, pixel, _, _ = para.decode(logits[i], cams[i], CFG)
        np.testing.assert_allclose(batch["xyz"][i], xyz, atol=1e-12)
        np.testing.assert_allclose(batch["pixel"][i], pixel, atol=1e-12)


def test_the_gripper_can_read_the_arms_height_and_nothing_else_changes():
    import torch

    from pxp.plugins.heads.para.model import ParaHead

    torch.manual_seed(0)
    cfg = ParaVolumeConfig(horizon=2, height_bins=4, heatmap_size=8, hidden_dim=16, gripper_sees_height=True)
    h = ParaHead(cfg, in_dim=16).eval()
    fmap = torch.randn(2, 16, 4, 4)
    c = {"eef_uv": torch.full((2, 2), 0.5), "eef_pos": torch.tensor([[0.0, 0.0, 1.1], [0.1, -0.1, 1.0]]),
         "gripper": torch.zeros(2)}
    lowered = c["eef_pos"].clone()
    lowered[:, 2] -= 0.1
    moved_xy = c["eef_pos"].clone()
    moved_xy[:, :2] += 0.2
    with torch.no_grad():
        out, low, moved = h(fmap, None, c), h(fmap, None, {**c, "eef_pos": lowered}), h(fmap, None, {**c, "eef_pos": moved_xy})
    assert torch.equal(out["logits"], low["logits"])  # the volume never sees the height input
    assert not torch.equal(out["gripper_logits"], low["gripper_logits"])
    assert torch.equal(out["gripper_logits"], moved["gripper_logits"])  # only z, not where the arm is
    off = ParaHead(ParaVolumeConfig(horizon=2, height_bins=4, heatmap_size=8, hidden_dim=16), in_dim=16)
    assert off.height_embed is None and "height_embed.weight" not in off.state_dict()  # older checkpoints load


def test_each_future_step_has_its_own_gripper_classifier_and_old_checkpoints_load_unchanged():
    import torch

    from pxp.plugins.heads.para.model import ParaHead

    torch.manual_seed(0)
    cfg = ParaVolumeConfig(horizon=3, height_bins=4, heatmap_size=8, hidden_dim=16)
    h = ParaHead(cfg, in_dim=16).eval()
    fmap = torch.randn(2, 16, 4, 4)
    same_pixel = torch.full((2, 3, 2), 0.4)  # a vertical descent: every step's target at the same pixel
    c = {"eef_uv": torch.full((2, 2), 0.5), "eef_pos": torch.zeros(2, 3), "gripper": torch.zeros(2), "target_uv": same_pixel}
    with torch.no_grad():
        g = h(fmap, None, c)["gripper_logits"]
    assert g.shape == (2, 3, 2)
    with torch.no_grad():  # only the step embedding and the step's own classifier tell the steps apart
        h.step_embed.zero_()
        g = h(fmap, None, c)["gripper_logits"]
    assert not torch.allclose(g[:, 0], g[:, 1]) and not torch.allclose(g[:, 1], g[:, 2])
    # a checkpoint whose last gripper layer is one shared classifier (2 outputs) loads as T copies of it
    old = {k: v.clone() for k, v in h.state_dict().items()}
    old["gripper_head.3.weight"], old["gripper_head.3.bias"] = torch.randn(2, 16), torch.randn(2)
    h.load_state_dict(old)
    with torch.no_grad():
        g = h(fmap, None, c)["gripper_logits"]
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])
    assert torch.equal(h.gripper_head[3].weight[2:4], old["gripper_head.3.weight"])


def test_init_from_a_shared_gripper_classifier_gives_each_step_a_copy():
    import torch

    from pxp.plugins.heads.para.model import ParaHead

    h = ParaHead(ParaVolumeConfig(horizon=3, height_bins=4, heatmap_size=8, hidden_dim=16), in_dim=16)
    shared_w, shared_b = torch.randn(2, 16), torch.randn(2)
    w, b = h.transfer_tensor("gripper_head.3.weight", shared_w, {}), h.transfer_tensor("gripper_head.3.bias", shared_b, {})
    assert w.shape == h.gripper_head[3].weight.shape and b.shape == h.gripper_head[3].bias.shape
    assert all(torch.equal(w[2 * t:2 * t + 2], shared_w) and torch.equal(b[2 * t:2 * t + 2], shared_b) for t in range(3))
    assert h.transfer_tensor("convs.0.weight", torch.randn(2, 16), {}) is None  # not a tensor this hook adapts
