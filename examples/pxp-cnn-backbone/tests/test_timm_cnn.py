import pxp_cnn_backbone
from pxp.testing import check_backbone, check_config_roundtrip, check_light_import, plugin_registry


def test_contract():
    reg = plugin_registry(("cnn_backbone", pxp_cnn_backbone))
    check_config_roundtrip(reg, "backbones", "timm_cnn", stage=1)
    model = check_backbone(reg, "timm_cnn", image_size=64, model="resnet18", stage=2)
    assert (model.embed_dim, model.patch_size) == (128, 8)  # resnet18's layer2: 128 channels, stride 8


def test_import_is_light():
    check_light_import("pxp_cnn_backbone")


def test_usable_in_a_policy_with_the_builtin_heads():
    """The backbone plugs into pxp's PARA and ACT heads and answers predict() like any policy."""
    import numpy as np

    from pxp.core.camera import Camera
    from pxp.experiment.policy import build_policy

    reg = plugin_registry(("cnn_backbone", pxp_cnn_backbone))
    backbone = reg.get("backbones", "timm_cnn").config_model(stage=1, image_size=64)
    cam = Camera.from_fovy(45.0, 64, 64, [1.0, 0.0, 1.5], np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float))
    state = {"eef_pos": np.array([0.0, 0.0, 1.1]), "eef_pixel": np.array([32.0, 32.0]), "gripper": 0.0}
    for head in ({"type": "para_volume", "height_bins": 4, "heatmap_size": 16, "hidden_dim": 16},
                 {"type": "act_regression", "hidden_dim": 32, "workspace_low": [-0.5, -0.5, 0.9],
                  "workspace_high": [0.2, 0.5, 1.2]}):
        head_cfg = reg.get("heads", head["type"]).config_model(**head)
        policy = build_policy(backbone, head_cfg, reg.create)
        out = policy.predict(np.zeros((64, 64, 3), np.uint8), state, cam)
        assert out.shape == (head_cfg.horizon, 4) and np.isfinite(out).all()
