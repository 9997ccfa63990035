"""Evaluator plugins: configs, what they plan to run, and real runs through the worker pool."""
import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pxp.core.execution import LocalExecutor
from pxp.core.plugins import get_registry
from pxp.experiment import pipeline as runner
from pxp.experiment import evaluation
from pxp.core.results import write_results
from pxp.experiment.evaluation import EpisodeTask, EpisodeEvaluator, EpisodeEvaluatorConfig, run_episodes
from pxp.testing import check_config_roundtrip, check_light_import, plugin_registry

os.environ.setdefault("MUJOCO_GL", "egl")
SIZE = 64
EVALUATORS = ("position_split", "viewpoint_grid", "distractors", "data_efficiency")


class Bar:
    def __init__(self):
        self.n = 0

    def advance(self, n=1):
        self.n += n


class Ctx:
    """The runner's stage context, as far as evaluators use it; builtin: checkpoints need no training."""

    def __init__(self, run_dir, workers=1, policies=None, unit="eval_test"):
        self.run_dir, self.workers, self.device, self.seed, self.unit = Path(run_dir), workers, "cpu", 0, unit
        self.spec = SimpleNamespace(name="test", policies=policies or {})
        self.registry = get_registry()
        self.logs, self.bars = [], []
        self.executor = LocalExecutor()

    def scene_config(self, **overrides):
        from pxp.plugins.scenes.libero import LiberoSceneConfig

        return LiberoSceneConfig(**{"image_size": SIZE, **overrides})

    def checkpoint_dir(self, name):
        return f"builtin:{name}"

    @contextlib.contextmanager
    def progress(self, description, total=None):
        bar = Bar()
        self.bars.append((description, total, bar))
        yield bar

    def log(self, msg):
        self.logs.append(msg)


@pytest.fixture(scope="module")
def registry():
    return plugin_registry()


def make(registry, name, **fields):
    ev = registry.create("evaluators", registry.get("evaluators", name).config_model(**fields))
    ev.outcomes = registry.get("scenes", "libero_bowl_plate").config_model.outcomes  # what run(ctx) sets
    return ev


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("name", EVALUATORS)
def test_configs_round_trip_and_forbid_unknown_fields(registry, name):
    policies = {"scratch": ["a"]} if name == "data_efficiency" else ["a"]
    cfg = check_config_roundtrip(registry, "evaluators", name, policies=policies)
    assert cfg.max_steps == 600 and cfg.videos == 0 and cfg.scene == ({"clutter": "distractors"} if name == "distractors" else {})
    with pytest.raises(Exception, match="Extra inputs"):
        registry.get("evaluators", name).config_model(policies=policies, episodes=3)


def test_referenced_policies(registry):
    from pxp.core.spec import referenced_policies

    de = registry.get("evaluators", "data_efficiency").config_model(policies={"scratch": ["s1", "s3"], "pt2d": ["p1"]})
    assert referenced_policies(de) == ["s1", "s3", "p1"]
    ps = registry.get("evaluators", "position_split").config_model(policies=["para", "act"])
    assert referenced_policies(ps) == ["para", "act"]


@pytest.mark.parametrize("module", ["pxp.plugins.evaluators.ood", "pxp.plugins.evaluators.data_efficiency",
                                    "pxp.experiment.evaluation", "pxp.experiment.rollout", "pxp.experiment.stats"])
def test_imports_stay_light(module):
    check_light_import(module)


# ----------------------------------------------------------------------------- planning (no simulator)

def test_position_split_plans_paired_episodes_on_the_test_split(registry, tmp_path):
    ev = make(registry, "position_split", policies=["para", "act"], split="right")
    tasks = ev.episodes(Ctx(tmp_path))
    assert len(tasks) == 2 * 20 * 5
    para = [t for t in tasks if t.policy == "para"]
    act = [t for t in tasks if t.policy == "act"]
    assert [(t.cell, t.offset, t.seed) for t in para] == [(t.cell, t.offset, t.seed) for t in act]  # paired
    assert len({tuple(t.cell) for t in para}) == 20 and len({t.seed for t in para}) == 100
    assert all(t.cell[1] >= 8 for t in para)  # right half = columns 8..15 = larger dy
    (x0, x1), (y0, y1) = (-0.32, 0.07), (-0.50, 0.10)
    assert all(x0 <= t.offset[0] <= x1 and (y0 + y1) / 2 < t.offset[1] <= y1 for t in para)
    summary = ev.summarize([])
    assert summary["train_split"] == "not:right" and len(summary["train_offsets"]) == 128


def test_viewpoint_grid_plans_theta_phi(registry, tmp_path):
    ev = make(registry, "viewpoint_grid", policies=["para"])
    tasks = ev.episodes(Ctx(tmp_path))
    assert len(tasks) == 8 * 8 * 2
    thetas = sorted({t.view[0] for t in tasks})
    np.testing.assert_allclose(thetas, np.linspace(0, 25, 8))  # 0, 3.6, 7.1, … 25 as in the seed report
    assert sorted({t.view[1] for t in tasks}) == [i * 45.0 for i in range(8)]
    assert len({t.offset for t in tasks}) > 20  # random positions


def test_data_efficiency_reads_demo_counts_from_the_spec(registry, tmp_path):
    from pxp.core.spec import TrainConfig

    def pol(demos):  # the parts of a policy spec the evaluator reads
        return SimpleNamespace(demos=demos, train=TrainConfig(steps=1))

    spec_policies = {f"s{k}": pol(k) for k in (1, 3)} | {"p1": pol(1)} | {"full": pol(None)}
    ev = make(registry, "data_efficiency", policies={"scratch": ["s1", "s3"], "pt": ["p1", "full"]}, positions=2,
              episodes_per_position=1)
    tasks = ev.episodes(Ctx(tmp_path, policies=spec_policies))
    assert [(t.policy, t.labels["init"], t.labels["demos"]) for t in tasks] == [
        ("s1", "scratch", 1), ("s1", "scratch", 1), ("s3", "scratch", 3), ("s3", "scratch", 3),
        ("p1", "pt", 1), ("p1", "pt", 1), ("full", "pt", None), ("full", "pt", None)]
    # Synthetic outcomes → the table the seed report prints (P, G, binary, weighted).
    outcomes = ["MISS", "GRASP", "PLACE", "GRASP", "PLACE", "PLACE", "PLACE", "PLACE"]
    eps = [dict(policy=t.policy, labels=t.labels, cell=t.cell, offset=list(t.offset), view=None, seed=t.seed,
                outcome=o, error=None, diagnostics={}) for t, o in zip(tasks, outcomes)]
    table = ev.summarize(eps)["table"]
    assert [(r["init"], r["demos"], r["place_count"], r["grasp_count"]) for r in table] == [
        ("pt", 1, 2, 0), ("pt", None, 2, 0), ("scratch", 1, 0, 1), ("scratch", 3, 1, 1)]
    assert table[3]["weighted"]["score"] == pytest.approx(0.75)
    section = ev.report_section(ev.summarize(eps))  # the demo-count tables are drawn once, by report_figures
    # paired tests only between policies trained on the same demo count (1 demo: p1 against s1)
    assert [(t["a"], t["b"]) for t in ev.summarize(eps)["paired"]] == [("p1", "s1")]
    assert "| p1 | s1 | 2 | 2 | 0 | +100 pts [+7, +100] | 0.5 |" in section and "| s1 | s3 |" not in section and "demos" not in section


def test_distractors_default_scene_and_position(registry, tmp_path):
    ev = make(registry, "distractors", policies=["para"], episodes_per_position=3)
    tasks = ev.episodes(Ctx(tmp_path))
    assert len(tasks) == 3 and {t.offset for t in tasks} == {(0.0, 0.0)}
    assert all(t.scene.clutter == "distractors" for t in tasks)


# ----------------------------------------------------------------------------- real runs

class Scripted(EpisodeEvaluator):
    """A test evaluator: expert and home policies on two training positions, plus one crash."""

    def episodes(self, ctx):
        tasks = [self.task(ctx, pol, cell=[0, i], offset=off, seed=i)
                 for pol in ("expert4", "home") for i, off in enumerate([(0.0, 0.0), (-0.2, -0.3)])]
        # Off the table: the scene's reset raises, in the worker, mid-evaluation.
        tasks.insert(3, self.task(ctx, "home", cell=[9, 9], offset=(0.9, 0.0), seed=0))
        return tasks


class ScriptedConfig(EpisodeEvaluatorConfig):
    type: str = "scripted"


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    pytest.importorskip("libero")
    run_dir = tmp_path_factory.mktemp("run")
    ctx = Ctx(run_dir)
    ev = Scripted(ScriptedConfig(policies=["expert4", "home"], max_steps=150, replan_every=4, videos=1))
    episodes = ev.run(ctx)
    return ctx, ev, episodes


def test_expert_places_home_misses_and_a_crash_is_recorded(scripted_run):
    ctx, ev, episodes = scripted_run
    assert len(episodes) == 5  # the crash did not stop the evaluation
    crashed = [e for e in episodes if e["error"]]
    assert len(crashed) == 1 and crashed[0]["outcome"] is None
    assert "off the table" in crashed[0]["error"] and crashed[0]["cell"] == [9, 9]
    assert any("failed" in m for m in ctx.logs)
    ok = {(e["policy"], e["seed"]): e for e in episodes if not e["error"]}
    assert ok[("expert4", 0)]["outcome"] == ok[("expert4", 1)]["outcome"] == "PLACE"
    assert ok[("home", 0)]["outcome"] == ok[("home", 1)]["outcome"] == "MISS"
    assert ok[("home", 0)]["diagnostics"]["first_failure"] == "never reached the bowl"
    assert ctx.bars[0][1] == 5 and ctx.bars[0][2].n == 5


def test_summary_has_intervals_errors_and_the_paired_test(scripted_run):
    _, ev, episodes = scripted_run
    s = ev.summarize(episodes)
    home, expert = s["policies"]["home"], s["policies"]["expert4"]
    assert (home["n"], home["errors"], home["counts"]["MISS"]) == (2, 1, 2)
    assert expert["place"]["rate"] == 1.0 and expert["place"]["ci"][0] == pytest.approx(0.342, abs=1e-3)  # Wilson 2/2
    assert home["failures"] == {"never reached the bowl": 2, "error": 1}
    (test,) = s["paired"]
    assert (test["a"], test["b"], test["pairs"], test["only_a"], test["only_b"]) == ("expert4", "home", 2, 2, 0)
    assert test["p_value"] == pytest.approx(0.5)  # 2 discordant pairs, both one way: 2·(½)²
    json.dumps(s)  # the summary goes into results.json as it is
    md = ev.report_section(s)
    assert "exact McNemar" in md and "never reached the bowl" in md


def test_videos_and_results_json(scripted_run):
    ctx, ev, episodes = scripted_run
    videos = [e["video"] for e in episodes if e.get("video")]
    assert len(videos) == 2  # one per policy
    for v in videos:
        assert not Path(v).is_absolute() and (ctx.run_dir / v).stat().st_size > 1000
    path = write_results(ctx.run_dir, episodes, {"eval_test": ev.summarize(episodes)}, spec="test")
    data = json.loads(path.read_text())
    assert set(data) == {"spec", "episodes", "summaries"} and len(data["episodes"]) == 5
    assert list(data["episodes"][0])[:12] == list(evaluation.EPISODE_FIELDS)
    assert not list(ctx.run_dir.glob(".results*"))  # no temp file left behind


def test_an_interrupted_evaluation_resumes_from_its_journal(scripted_run):
    ctx, ev, episodes = scripted_run
    journal = ctx.run_dir / "evals" / "eval_test" / "episodes.jsonl"
    assert len(journal.read_text().splitlines()) == 5
    ctx2 = Ctx(ctx.run_dir)
    # Everything but the crashed episode is journaled: only that one runs again (and crashes again).
    again = ev.run(ctx2)
    assert len(journal.read_text().splitlines()) == 6
    assert [e["outcome"] for e in again] == [e["outcome"] for e in episodes]


def test_worker_processes_run_episodes_and_isolate_crashes(tmp_path):
    """Two spawn workers: tasks (with their pydantic scene config) pickle, each worker builds its scene."""
    pytest.importorskip("libero")
    ctx = Ctx(tmp_path, workers=2)
    ev = Scripted(ScriptedConfig(policies=["home"], max_steps=8))
    tasks = [t for t in ev.episodes(ctx) if t.policy == "home"]
    episodes = run_episodes(tasks, workers=2)
    assert [e["error"] is not None for e in episodes] == [False, True, False]
    assert [e["outcome"] for e in episodes] == ["MISS", None, "MISS"]
    assert [e["seed"] for e in episodes] == [t.seed for t in tasks]  # task order, not completion order


def test_error_episode_fields():
    from pxp.plugins.scenes.libero import LiberoSceneConfig

    task = EpisodeTask("e", "position_split", "para", "/ckpt", LiberoSceneConfig(), offset=(0.1, 0.2), seed=4, cell=[1, 2])
    ep = evaluation.error_episode(task, "RuntimeError: boom")
    assert set(evaluation.EPISODE_FIELDS) <= set(ep)
    assert ep["outcome"] is None and ep["error"] == "RuntimeError: boom" and ep["offset"] == [0.1, 0.2]


# ----------------------------------------------------------------------------- with the spec and the runner

def _spec_dict(evaluations):
    def pol(head):
        return {"backbone": {"type": "tiny_vit"}, "head": {"type": head}, "objective": {"type": "behavior_cloning"},
                "dataset": "left", "train": {"steps": 1}}

    return {"name": "evaltest", "seed": 0, "scene": {"type": "libero_bowl_plate", "image_size": SIZE},
            "datasets": {"left": {"type": "position_grid", "split": "left"}},
            "policies": {"para": pol("para_volume"), "act": pol("act_regression")}, "evaluations": evaluations}


def test_the_spec_checker_sees_evaluator_policies(registry):
    from pxp.core.errors import SpecError
    from pxp.core.spec import validate_spec

    spec = validate_spec(_spec_dict({
        "lr": {"type": "position_split", "policies": ["para", "act"], "split": "right"},
        "vp": {"type": "viewpoint_grid", "policies": ["para"]},
        "dis": {"type": "distractors", "policies": ["act"]},
        "eff": {"type": "data_efficiency", "policies": {"scratch": ["para"]}}}), registry)
    assert set(spec.evaluations) == {"lr", "vp", "dis", "eff"}
    with pytest.raises(SpecError, match="no policy named 'ghost'"):
        validate_spec(_spec_dict({"eff": {"type": "data_efficiency", "policies": {"pt": ["ghost"]}}}), registry)


def test_the_runner_evaluation_stage_writes_results_json(registry, tmp_path, monkeypatch):
    """The real runner and stage context; the two checkpoints stand in for trained policies."""
    pytest.importorskip("libero")
    from pxp.experiment.pipeline import Runner, StageContext
    from pxp.core.spec import validate_spec

    stand_in = {"para": "builtin:expert", "act": "builtin:home"}
    monkeypatch.setattr(StageContext, "checkpoint_dir", lambda self, name: stand_in[name])
    spec = validate_spec(_spec_dict({"lr": {"type": "position_split", "policies": ["para", "act"], "split": "left",
                                            "positions": 1, "episodes_per_position": 1, "max_steps": 150,
                                            "steps_per_target": 1}}), registry)
    Runner(spec, tmp_path, registry=registry, workers=1, quiet=True).run(("evaluation",))
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(e["evaluation"], e["policy"], e["outcome"]) for e in results["episodes"]] == [
        ("lr", "para", "PLACE"), ("lr", "act", "MISS")]
    summary = results["summaries"]["lr"]
    assert summary["policies"]["para"]["place"]["n"] == 1 and summary["paired"][0]["pairs"] == 1
    assert summary["extent"] == [[-0.32, 0.07], [-0.5, 0.1]] and len(summary["train_offsets"]) == 128

    # pxp eval RUN_DIR: the same checkpoints again, with more episodes per position.
    runner.evaluate_run(tmp_path, episodes_override=2, workers=1, registry=registry)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(e["policy"], e["outcome"]) for e in results["episodes"]] == [
        ("para", "PLACE"), ("para", "PLACE"), ("act", "MISS"), ("act", "MISS")]
    assert results["summaries"]["lr"]["paired"][0]["pairs"] == 2


@pytest.mark.parametrize("name", EVALUATORS)
def test_builtin_evaluators_and_report_sections_meet_their_contracts(registry, name, tmp_path):
    from pxp.plugins.reports.para_vs_act import ParaVsActSummary
    from pxp.plugins.reports.probe import ProbeSection
    from pxp.testing import check_evaluator, check_report_section

    check_evaluator(registry, name, policies={"scratch": ["a"]} if name == "data_efficiency" else ["a"])
    for section in (ParaVsActSummary(), ProbeSection()):
        assert check_report_section(section, registry) == "\n"  # an empty run: nothing to say
