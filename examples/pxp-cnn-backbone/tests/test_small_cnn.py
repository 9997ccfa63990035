import pxp_cnn_backbone
from pxp.testing import check_backbone, check_config_roundtrip, check_light_import, plugin_registry


def test_contract():
    reg = plugin_registry(("cnn_backbone", pxp_cnn_backbone))
    check_config_roundtrip(reg, "backbones", "small_cnn", width=32)
    check_backbone(reg, "small_cnn", image_size=64, width=32, stages=3)


def test_import_is_light():
    check_light_import("pxp_cnn_backbone")
