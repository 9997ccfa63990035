"""``pxp probe`` on the real LIBERO scene (64 px): the scripted expert wrapped as a policy follows the bowl
everywhere in the workspace, a policy that predicts a fixed point does not, and the command works on a
tiny trained run directory (and says clearly when there is nothing to probe)."""
import os

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pxp.core import io
from pxp.plugins.reports.probe.driver import ProbeSettings, probe_policies, sweep
from pxp.experiment.rollout import ExpertPolicy, HomePolicy

from ._policy_data import SCENE_SIZE, Ctx, look_at_camera, one_thread, reg, scene, synth_episode  # noqa: F401  (fixtures)

try:  # before any renderer exists: importing triton (via timm) after Mesa's llvmpipe has rendered segfaults
    import timm  # noqa: F401
except ImportError:
    pass

os.environ.setdefault("MUJOCO_GL", "egl")
SIZE = SCENE_SIZE


def test_expert_follows_the_bowl_everywhere_and_a_fixed_point_does_not(scene):
    (x0, x1), (y0, y1) = scene.offset_extent
    points = sweep(scene.offset_extent, (0.0, 0.0), ProbeSettings(points=5, thetas=(0, 25), phis=(90,)))
    assert [p.position for p in points if p.axis == "x"] == pytest.approx(np.linspace(x0, x1, 5))  # full extent
    assert [p.position for p in points if p.axis == "y"] == pytest.approx(np.linspace(y0, y1, 5))
    centre = scene.pregrasp(offset=((x0 + x1) / 2, (y0 + y1) / 2), seed=0)["grasps"][0]
    policies = {"expert": ExpertPolicy(chunk=64, stop_after="close"), "fixed": HomePolicy(home=centre, horizon=4)}
    samples = probe_policies(policies, scene, points)["samples"]
    expert = [s for s in samples if s["policy"] == "expert"]
    fixed = {(s["axis"], s["position"]): s for s in samples if s["policy"] == "fixed"}
    assert len(expert) == len(points) == 12
    for s in expert:
        assert s["rule"] == "close" and s["error_cm"] < 2.0, s  # its closing target is on the bowl's rim
        # the true grasp point is on the rim of the bowl the scene placed at that offset
        assert abs(np.hypot(*np.subtract(s["true"][:2], s["object"][:2])) - 0.047) < 1e-3
    for axis, lo, hi in (("x", x0, x1), ("y", y0, y1)):
        for end in (lo, hi):  # the workspace ends: ≥ 19 cm from the centre along either axis
            assert fixed[(axis, round(end, 5))]["error_any_cm"] > 10.0, (axis, end)
    assert fixed[("x", round((x0 + x1) / 2, 5))]["error_cm"] < 1.0  # and right where its point is


# ----------------------------------------------------------------------------- the command

def _tiny_run(root, reg):
    """A run directory with two real (3-step) PARA and ACT checkpoints trained on synthetic demos that
    carry left-half offsets, so the training range can be read from the dataset."""
    from types import SimpleNamespace

    from pxp.experiment.data import DemoWriter
    from pxp.core.spec import TrainConfig
    from pxp.experiment.training import train_policy
    from pxp.plugins.backbones.vit import TinyViTConfig
    from pxp.plugins.heads.act import ActRegressionConfig
    from pxp.plugins.heads.para import ParaVolumeConfig
    from pxp.plugins.objectives.losses import BehaviorCloningConfig

    ctx = Ctx(root, reg)
    rng, cam = np.random.default_rng(0), look_at_camera(SIZE, SIZE)
    with DemoWriter(ctx.dataset_path("left"), config_hash="probe-test", attrs={"generator": "synthetic"}) as w:
        for i, off in enumerate([(-0.3, -0.5), (0.0, -0.3)]):
            w.write(i, synth_episode(rng, cam, T=8), {"offset": off, "viewpoint": (0.0, 0.0)}, success=True)
        w.finish()
    backbone = TinyViTConfig(image_size=SIZE, patch_size=16, embed_dim=32, depth=1, num_heads=2)
    heads = {"para": ParaVolumeConfig(horizon=2, height_bins=4, heatmap_size=16, hidden_dim=8),
             "act": ActRegressionConfig(horizon=2, hidden_dim=32)}
    train = TrainConfig(steps=3, lr=1e-3, warmup_steps=1, eval_every=3, holdout_fraction=0.0, batch_size=4)
    spec = {"name": "tiny", "seed": 0, "scene": {"type": "libero_bowl_plate", "image_size": SIZE},
            "datasets": {"left": {"type": "position_grid", "split": "left"}}, "policies": {}}
    for name, head in heads.items():
        pol = SimpleNamespace(backbone=backbone, head=head, objective=BehaviorCloningConfig(), dataset="left",
                              demos=None, demo_seed=0, filter_key=None, init_from=None, train=train)
        train_policy(name, pol, ctx)
        spec["policies"][name] = {"backbone": backbone.model_dump(), "head": head.model_dump(),
                                  "objective": {"type": "behavior_cloning"}, "dataset": "left",
                                  "train": train.model_dump(mode="json")}
    (root / "spec.resolved.yaml").write_text(yaml.safe_dump(spec))
    return root


def _cli():
    from pxp.core.cli import cli
    from pxp.plugins.reports.probe import probe_command

    cli.add_command(probe_command)  # what `pxp` does for every plugin's commands (main() → pxp_register_commands)
    return cli


def test_probe_command_on_a_tiny_trained_run(tmp_path, reg):
    cli = _cli()

    run = _tiny_run(tmp_path, reg)
    res = CliRunner().invoke(cli, ["probe", str(run), "--points", "3", "--thetas", "0,25", "--phis", "90"])
    assert res.exit_code == 0, res.output
    data = io.read_json(run / "probe" / "probe.json")
    assert set(data["policies"]) == {"para", "act"} and len(data["samples"]) == 2 * (3 + 3 + 2)
    for s in data["samples"]:
        assert {"policy", "axis", "position", "true", "predicted", "error_cm"} <= set(s)
        assert np.isfinite(s["error_cm"]) and len(s["targets"]) == 2
    region = data["policies"]["para"]["train_region"]
    assert region["offsets"] == [[-0.3, -0.5], [0.0, -0.3]]
    assert data["summary"]["act"]["y"]["train_range"] == [-0.5, -0.3]
    assert data["summary"]["act"]["y"]["inside_n"] == 1 and data["summary"]["act"]["y"]["outside_n"] == 2
    for axis in ("x", "y", "view"):
        assert (run / "plots" / f"probe_{axis}.png").stat().st_size > 1000
    # Cached: a second run with the same checkpoints and settings does not probe again.
    before = (run / "probe" / "probe.json").stat().st_mtime_ns
    res = CliRunner().invoke(cli, ["probe", str(run), "--points", "3", "--thetas", "0,25", "--phis", "90"])
    assert res.exit_code == 0 and (run / "probe" / "probe.json").stat().st_mtime_ns == before
    # The report gets a probe section from these results (no second probe: same settings, same checkpoints).
    from pxp.experiment.report import write_report

    spec = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    spec["report"] = {"sections": {"prediction_strips": False}}
    (run / "spec.resolved.yaml").write_text(yaml.safe_dump(spec))
    write_report(run)
    md = (run / "report.md").read_text()
    assert "## Probe: does the grasp target follow the object?" in md and "plots/probe_y.png" in md
    assert (run / "probe" / "probe.json").stat().st_mtime_ns == before


def test_probe_command_without_policies_says_so(tmp_path):
    cli = _cli()

    (tmp_path / "spec.resolved.yaml").write_text(yaml.safe_dump({"name": "x", "scene": {"type": "libero_bowl_plate"}}))
    res = CliRunner().invoke(cli, ["probe", str(tmp_path)])
    assert res.exit_code == 1
    assert "no trained policy to probe" in res.output and "checkpoints" in res.output
    res = CliRunner().invoke(cli, ["probe", str(tmp_path / "missing")])
    assert res.exit_code == 2
