"""Every spec in specs/ runs end to end at smoke scale (``pxp run SPEC --smoke``), and its report has
every section the full spec produces. Plus fast checks of the smoke transform itself."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from pxp.core import smoke
from pxp.core.errors import PxpError
from pxp.experiment.grid import position_grid, viewpoint_grid
from pxp.core.plugins import get_registry
from pxp.core.spec import parse_yaml, validate_spec

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))
TIMINGS = Path(__file__).resolve().parent.parent / "runs" / "smoke-timings.json"


def smoke_of(path: Path):
    return validate_spec(smoke.smoke_spec(parse_yaml(path), get_registry()), source=str(path))


# ---------------------------------------------------------------- the transform (fast)

@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_smoke_transform_shrinks_every_size(path):
    full, spec = validate_spec(parse_yaml(path)), smoke_of(path)
    assert spec.smoke and not full.smoke and spec.name == f"{full.name}-smoke"
    assert spec.scene.image_size == smoke.IMAGE_SIZE and spec.device in ("auto", "cpu")
    assert list(spec.datasets) == list(full.datasets)
    assert list(spec.replicas or spec.evaluations) == list(full.replicas or full.evaluations)
    assert spec.replicates == min(full.replicates, smoke.REPLICATES)
    group_of = {m: g for g, members in spec.policy_groups.items() for m in members}
    for name, pol in spec.policies.items():
        full_pol = full.policies.get(name) or full.policies[full.policy_groups[group_of[name]][0]]
        full_bb = full_pol.backbone
        if full_bb.type in ("dinov2", "tiny_vit"):
            assert pol.backbone.type == "tiny_vit" and pol.backbone.depth == 1
            if full_bb.type == "dinov2":  # the spec's patch size, random init
                assert pol.backbone.patch_size == int(re.search(r"patch(\d+)", full_bb.model).group(1))
            assert pol.backbone.image_size % pol.backbone.patch_size == 0
        else:  # another plugin's backbone shrinks itself through its config's smoke()
            assert pol.backbone.type == full_bb.type and pol.backbone.image_size == smoke.IMAGE_SIZE
        assert pol.train.steps <= smoke.TRAIN_STEPS and pol.train.minutes <= smoke.TRAIN_MINUTES
        if hasattr(pol.head, "heatmap_size"):
            assert pol.head.heatmap_size <= 16 and pol.head.height_bins <= 4
            assert (pol.head.height_bins == 1) == (full_pol.head.height_bins == 1)
    # the same policies (sweeps keep their first values, so every group keeps members)
    dropped = tuple(f"-rep{r}" for r in range(spec.replicates, full.replicates))  # replicates smoke leaves out
    assert set(spec.policy_groups) == {g for g in full.policy_groups if not (dropped and g.endswith(dropped))}
    assert all(0 < len(m) <= smoke.SWEEP_VALUES for m in spec.policy_groups.values())
    assert all(p.demos is None or p.demos <= smoke.DEMOS for p in spec.policies.values())
    for name, ds in spec.datasets.items():
        grid = (position_grid(ds.rows, ds.cols, ((0, 1), (0, 1))) if ds.type == "position_grid"
                else viewpoint_grid(ds.n_theta, ds.n_phi, ds.theta_max))
        cells = grid.select(ds.split)
        assert 0 < len(cells) <= 4 and ds.episodes_per_cell == 1
        assert ds.split.name == full.datasets[name].split.name  # the same split names
    for name, ev in spec.evaluations.items():
        assert ev.episodes_per_position == 1 and ev.max_steps <= smoke.MAX_STEPS
        if ev.type == "viewpoint_grid":  # θ > 0 cells are there
            assert ev.n_theta == 2 and ev.theta_max == full.evaluations[name].theta_max > 0


def test_smoke_units_never_share_a_hash_with_real_ones(tmp_path):
    from pxp.experiment.pipeline import Runner

    raw = parse_yaml(SPECS[0])
    real = validate_spec(raw)
    as_smoke = validate_spec({**raw, "smoke": True})  # the same sizes, flagged smoke
    a, b = Runner(real, tmp_path / "a", quiet=True), Runner(as_smoke, tmp_path / "b", quiet=True)
    for name in real.datasets:
        assert a.dataset_hash(name) != b.dataset_hash(name)
    for name in real.policies:
        assert a.policy_hash(name) != b.policy_hash(name)


def test_a_run_directory_is_smoke_or_real_never_both(tmp_path):
    from pxp.core import manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"spec": "x", "smoke": True}))
    manifest.check_smoke(tmp_path, True)
    with pytest.raises(PxpError, match="holds a smoke run; a real run needs its own directory"):
        manifest.check_smoke(tmp_path, False)
    (tmp_path / "manifest.json").write_text(json.dumps({"spec": "x"}))
    with pytest.raises(PxpError, match="holds a real run"):
        manifest.check_smoke(tmp_path, True)


# ---------------------------------------------------------------- every spec, end to end

@pytest.fixture(scope="module")
def shared_scenes():
    """The specs run in this process (workers=1) and share scenes: building one takes seconds."""
    from pxp.core import execution

    with execution.keep_inline_cache():
        yield

def expected_sections(spec) -> list[str]:
    """Headings and table headers the report of this spec's full run has."""
    out = ["# pxp report" if not spec.report.title else f"# {spec.report.title}", "## Summary", "## Training",
           "| Policy | Head | Backbone |", "## Provenance"]
    if spec.report.sections.get("probe", True):
        out += ["## Probe: does the grasp target follow the object?", "(plots/probe_x.png)", "(plots/probe_y.png)"]
    for name, ev in spec.evaluations.items():
        out.append(f"## {name} (")
        out.append("| Policy | Head | n | PLACE | GRASP | MISS |")
        if ev.type == "viewpoint_grid":
            out += ["### Success per θ (averaged over φ)", f"({'plots/' + name}_per_theta.png)"]
            out += [f"(plots/{name}_{p}_polar.png)" for p in ev.policies]
        if ev.type == "data_efficiency":
            out += ["### Success and weighted score by demo count", "| Binary (95% CI) | Weighted (95% CI) |",
                    "#### Binary success (PLACE) by demo count × initialisation",
                    "#### Weighted score (PLACE = 1, GRASP = 0.5) by demo count × initialisation",
                    *[f"| {_family(spec, names[0])} {label} |" if i == 0 else f" {_family(spec, names[0])} {label} |"
                      for i, (label, names) in enumerate(ev.policies.items())]]  # a column per initialisation
        if ev.videos:
            out.append("### Videos")
    if any(ev.type != "data_efficiency" and _has_both_families(spec, ev) for ev in spec.evaluations.values()):
        out.append("| Experiment | OOD axis | PARA | ACT | Delta | Paired test |")
    return out


def _family(spec, name: str) -> str:
    first = spec.policy_groups.get(name, [name])[0]
    return {"para_volume": "PARA", "act_regression": "ACT"}[spec.policies[first].head.type]


def _has_both_families(spec, ev) -> bool:
    heads = {spec.policies[p].head.type for p in ev.policies if p in spec.policies}
    return {"para_volume", "act_regression"} <= heads


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_runs_at_smoke_scale(path, tmp_path, shared_scenes):
    from pxp.experiment.pipeline import Runner

    spec = smoke_of(path)
    t0, cpu0 = time.time(), _cpu()
    Runner(spec, tmp_path / "run", workers=1, quiet=True).run()
    _record_time(path.stem, time.time() - t0, _cpu() - cpu0)
    run = tmp_path / "run"
    report = (run / "report.md").read_text()
    assert report.startswith("> **SMOKE RUN"), report[:200]
    assert 'class="banner"' in (run / "report.html").read_text()
    assert json.loads((run / "manifest.json").read_text())["smoke"] is True
    missing = [s for s in expected_sections(spec) if s not in report]
    assert not missing, f"report lacks {missing}"
    results = json.loads((run / "results.json").read_text())
    errors = [(e["policy"], e["error"]) for e in results["episodes"] if e.get("error")]
    assert not errors, errors
    for name, ev in spec.evaluations.items():
        policies = {p for g in ev.referenced_policies() for p in spec.policy_groups.get(g, [g])}
        ran = {e["policy"] for e in results["episodes"] if e["evaluation"] == name}
        assert ran == policies, f"{name}: evaluated {sorted(ran)}, expected {sorted(policies)}"
        videos = [e["video"] for e in results["episodes"] if e["evaluation"] == name and e.get("video")]
        assert len(videos) == (len(policies) if ev.videos else 0)
        assert all((run / v).stat().st_size > 0 for v in videos)
    for name, pol in spec.policies.items():  # every policy trained (pretraining → fine-tuning chains too)
        assert (run / "checkpoints" / name / "metrics.jsonl").exists(), name


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _record_time(name: str, seconds: float, cpu: float) -> None:
    """runs/smoke-timings.json: wall and CPU seconds of each spec's smoke run (for the CI budget)."""
    from pxp.core import io

    data = io.read_json(TIMINGS, {}) or {}
    data[name] = {"wall_s": round(seconds, 1), "cpu_s": round(cpu, 1)}
    io.write_json(TIMINGS, data)


def test_smoke_needs_no_weights():
    """A DINOv2 backbone with weights that are nowhere to be found becomes a random-init tiny ViT."""
    raw = parse_yaml(SPECS[0])
    raw = {**raw, "policies": {"p": {
        "backbone": {"type": "dinov2", "model": "vit_base_patch16_dinov3", "image_size": 448,
                     "weights": "/nowhere/dinov3.pth", "freeze": "partial", "freeze_blocks": 6},
        "head": {"type": "para_volume", "horizon": 4, "height_bins": 32, "heatmap_size": 64},
        "objective": {"type": "behavior_cloning"}, "dataset": next(iter(raw["datasets"])),
        "train": {"minutes": 10}}}, "evaluations": {}}
    bb = validate_spec(smoke.smoke_spec(raw, get_registry())).policies["p"].backbone
    assert (bb.type, bb.patch_size, bb.image_size, bb.freeze, bb.freeze_blocks) == ("tiny_vit", 16, 64, "partial", 1)


def test_cli_refuses_a_smoke_run_in_a_real_run_directory(tmp_path):
    from click.testing import CliRunner

    from pxp.core.cli import _add_plugin_commands, cli

    _add_plugin_commands()  # what `pxp` does first: the built-in pipeline plugin adds `pxp run`
    (tmp_path / "manifest.json").write_text(json.dumps({"spec": "quickstart", "smoke": False}))
    res = CliRunner().invoke(cli, ["run", str(SPECS[0]), "--smoke", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "holds a real run; a smoke run needs its own directory" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # refused before any work
