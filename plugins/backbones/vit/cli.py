"""``pxp vit …``: commands of the ViT backbone plugin."""
from __future__ import annotations

import json

import click


@click.group("vit")
def vit_group():
    """ViT backbone tools (weights for machines without internet)."""


@vit_group.command("import-onnx")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the .safetensors file to write")
@click.option("--model", default="vit_small_patch14_dinov2", show_default=True, help="the timm model the weights must fill")
@click.option("--origin", default=None, help="what the weights are, for reports (known files are named automatically)")
def import_onnx_cmd(onnx_file, out, model, origin):
    """Convert a Hugging Face Dinov2Model in an ONNX file into timm weights that `weights: OUT` loads."""
    from pxp.plugins.backbones.vit.onnx_import import import_onnx

    record = import_onnx(onnx_file, out, model_name=model, origin=origin)
    click.echo(json.dumps(record, indent=2))
    click.echo(f"wrote {out} (+ {out}.json); use it with  backbone: {{type: dinov2, model: {model}, weights: {out}}}")
