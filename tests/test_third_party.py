"""The plugin promise, end to end: a third-party package (written here, in tmp_path) adds a head with a new
output kind, an objective for it, the head's figure and a report section; registered into a registry given
to the runner through pxp.testing, it runs a tiny spec on the real scene (datasets → training →
evaluation → report) and the report shows its section and figure, and says nothing of ACT."""
from __future__ import annotations

import importlib
import re
import sys
import textwrap

import numpy as np
import pytest
import timm  # noqa: F401  (before LIBERO loads: importing triton after it segfaults)
from PIL import Image

from pxp.core import execution
from pxp.core.errors import SpecError
from pxp.core.plugins import registry_from_recipe
from pxp.experiment.pipeline import Runner
from pxp.core.spec import validate_spec
from pxp.testing import (check_config_roundtrip, check_evaluator, check_head, check_objective, check_report_section,
                         plugin_registry)

# The package a third party would publish (docs/plugins.md walks through the same one).
PLUGIN = '''
"""pxp-direct: a head that regresses world xyz directly, its objective, its figure and a report section."""
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from pxp.core.contracts import Head, HeadConfig, ObjectiveConfig, ReportSection
from pxp.core.hookspecs import hookimpl

BLUE = (0, 0, 255)


class DirectXyzConfig(HeadConfig):
    output_kind: ClassVar[str] = "direct_xyz"  # a new kind: out["xyz"] (B, T, 3) world metres
    label: ClassVar[str] = "Direct"
    type: Literal["direct_xyz"] = "direct_xyz"
    horizon: int = Field(2, gt=0)
    hidden_dim: int = Field(16, gt=0)


class XyzMseConfig(ObjectiveConfig):
    accepts: ClassVar[tuple] = ("direct_xyz",)
    type: Literal["xyz_mse"] = "xyz_mse"


class DirectFigure:
    title = "Direct"
    legend = "blue: the direct head's point"

    def predict(self, policy, frame):
        state = {k: frame[k] for k in ("eef_pos", "eef_pixel", "gripper")}
        _, dec = policy.infer(frame["image"], state, frame["camera"])
        return {"pixel": dec["pixel"][0]}

    def panel(self, base, row, k, font, scale):
        from PIL import ImageDraw

        p = base.copy()
        x, y = scale(row["pixel"][k])
        ImageDraw.Draw(p).rectangle((x - 4, y - 4, x + 4, y + 4), fill=BLUE)
        return p


def make_head(config, backbone):
    import torch
    from torch import nn

    class DirectHead(nn.Module, Head):
        output_kind = "direct_xyz"
        figure = DirectFigure()

        def __init__(self, cfg, dim):
            super().__init__()
            self.horizon = cfg.horizon
            self.mlp = nn.Sequential(nn.Linear(dim + 3, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, cfg.horizon * 5))

        def forward(self, fmap, cls, cond):
            h = self.mlp(torch.cat([cls, cond["eef_pos"].to(cls.dtype)], -1)).view(cls.shape[0], self.horizon, 5)
            return {"xyz": cond["eef_pos"].float()[:, None, :] + 0.1 * h[..., :3].float(), "gripper_logits": h[..., 3:]}

        def decode(self, out, cameras):
            xyz = out["xyz"].detach().float().cpu().numpy().astype(float)
            pixel = np.stack([cam.project(x) for x, cam in zip(xyz, cameras)])
            grip = out["gripper_logits"].detach().float().softmax(-1)[..., 1].cpu().numpy()
            return {"xyz": xyz, "pixel": pixel, "gripper": grip}

    return DirectHead(config, int(backbone.embed_dim))


def make_objective(config):
    import torch.nn.functional as F

    def objective(out, batch, head):
        pos = ((out["xyz"] - batch["target_pos"].float()) ** 2).mean()
        grip = F.cross_entropy(out["gripper_logits"].float().reshape(-1, 2), batch["target_gripper"].round().long().reshape(-1))
        return pos + grip, {"loss/xyz_mse": pos.detach(), "loss/gripper_ce": grip.detach()}

    return objective


class DirectSection(ReportSection):
    title, order = "Direct head", 15

    def render(self, report, doc):
        mine = [p for p in report.spec.get("policies", {}) if report.label(p) == "Direct"]
        if not mine:
            return
        doc.h(2, "Direct head: episodes per policy")
        doc.table(["Policy", "Episodes"], [[p, sum(e["policy"] == p for e in report.episodes)] for p in mine])
        from PIL import Image

        path = report.plots / "direct_section.png"
        Image.new("RGB", (8, 8), BLUE).save(path)
        doc.img(report.rel(path), "the direct head's own figure")


@hookimpl
def pxp_register_heads(register):
    register("direct_xyz", DirectXyzConfig, make_head, summary="world xyz regressed directly")


@hookimpl
def pxp_register_objectives(register):
    register("xyz_mse", XyzMseConfig, make_objective, summary="MSE on world xyz + gripper CE")


@hookimpl
def pxp_report_sections(report):
    return [DirectSection()]
'''

SIZE = 64
SPEC = {
    "name": "direct", "seed": 0, "scene": {"type": "libero_bowl_plate", "image_size": SIZE},
    "datasets": {"grid": {"type": "position_grid", "rows": 1, "cols": 2, "split": "all"}},
    "policies": {"direct": {
        "backbone": {"type": "tiny_vit", "image_size": SIZE, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2},
        "head": {"type": "direct_xyz", "horizon": 2},
        "objective": {"type": "xyz_mse"}, "dataset": "grid",
        "train": {"steps": 2, "batch_size": 4, "eval_every": 2, "warmup_steps": 0}}},
    "evaluations": {"lr": {"type": "position_split", "policies": ["direct"], "grid": [1, 2], "split": "all",
                           "positions": 1, "episodes_per_position": 1, "max_steps": 4}},
    "report": {"sections": {"probe": False}},
}


@pytest.fixture
def direct(tmp_path, monkeypatch):
    """The package installed the way pip would leave it: importable by name (so worker processes load it too)."""
    site = tmp_path / "site"
    (site / "pxp_direct").mkdir(parents=True)
    (site / "pxp_direct" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    yield importlib.import_module("pxp_direct")
    sys.modules.pop("pxp_direct", None)


def test_a_third_party_head_objective_figure_and_section_run_end_to_end(tmp_path, direct):
    registry = plugin_registry(direct)
    spec = validate_spec(SPEC, registry)
    run = tmp_path / "run"
    Runner(spec, run, registry=registry, workers=1, device="cpu", quiet=True).run()
    md = (run / "report.md").read_text()
    assert "## Direct head: episodes per policy" in md and "plots/direct_section.png" in md
    assert "| direct | Direct |" in md  # the policy table names the head by its label
    strip = run / "plots" / "lr_direct_heatmaps.png"
    assert "plots/lr_direct_heatmaps.png" in md  # drawn in a worker process, by the plugin's figure:
    pixels = np.asarray(Image.open(strip).convert("RGB")).reshape(-1, 3)
    assert ((pixels == (0, 0, 255)).all(axis=1)).sum() > 20
    assert not re.search(r"\bACT\b", md) and not re.search(r"\bACT\b", (run / "report.html").read_text())
    metrics = (run / "checkpoints" / "direct" / "metrics.jsonl").read_text()
    assert "loss/xyz_mse" in metrics


def test_an_objective_that_does_not_accept_the_head_is_rejected_by_validate(direct):
    registry = plugin_registry(direct)
    bad = {**SPEC, "policies": {"direct": {**SPEC["policies"]["direct"], "objective": {"type": "behavior_cloning"}}}}
    with pytest.raises(SpecError) as err:
        validate_spec(bad, registry)
    assert err.value.exit_code == 2
    (path, msg), = err.value.problems
    assert path == "policies.direct.objective"
    assert "objective 'behavior_cloning' (plugin 'objectives')" in msg and "head 'direct_xyz' (plugin 'pxp_direct')" in msg
    assert "'direct_xyz'" in msg


def _heads(recipe) -> list[str]:
    return registry_from_recipe(recipe).names("heads")


def test_injected_plugins_reach_pool_workers(direct):
    registry = plugin_registry(direct)
    results = list(execution.run_tasks(_heads, [registry.recipe] * 2, workers=2))
    assert all(r.ok for r in results), [r.error for r in results]
    assert all("direct_xyz" in r.value and "para_volume" in r.value for r in results)


def test_the_contract_checks_pass_for_the_third_party_plugin(direct, tmp_path):
    registry = plugin_registry(direct)
    check_config_roundtrip(registry, "heads", "direct_xyz", horizon=3)
    head = check_head(registry, "direct_xyz", horizon=3)
    check_objective(registry, "xyz_mse", head)
    check_evaluator(registry, "position_split", policies=["p"])
    check_report_section(direct.DirectSection(), registry)


def test_a_config_without_a_type_literal_is_reported_by_name_while_the_rest_load():
    from pydantic import BaseModel

    from pxp.core.hookspecs import hookimpl

    class LooseConfig(BaseModel):
        type: str = "loose_head"

    class Loose:
        @hookimpl
        def pxp_register_heads(self, register):
            register("loose_head", LooseConfig, lambda cfg, backbone: None)

    registry = plugin_registry(("loose_plugin", Loose()), strict=False)
    assert "loose_head" not in registry.names("heads")
    assert {"para_volume", "act_regression"} <= set(registry.names("heads"))
    assert "position_split" in registry.names("evaluators")
    failure, = [f for f in registry.failures if f.name == "loose_plugin"]
    message = failure.message()  # the same two lines an import error gives
    assert message.startswith("plugin 'loose_plugin' (local -) failed to load: head 'loose_head': config_model.type")
    assert "Literal['loose_head']" in message and "PXP_DISABLE_PLUGINS=loose_plugin" in message
