"""Run events and the TensorBoard logger: observers see a real run's training steps, episodes, units and end;
one that raises is named once and the run completes; the TensorBoard event files read back (tensorboard's own
EventAccumulator) hold exactly the losses of metrics.jsonl and the rates of results.json; a finished run gets
its curves when the logger is switched on later; training in a worker process fires its steps there."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import timm  # noqa: F401  (before LIBERO loads: importing triton after it segfaults)

from pxp.core import io
from pxp.core.events import RunEvents, RunInfo
from pxp.core.hookspecs import hookimpl
from pxp.core.plugins import load_registry
from pxp.experiment.pipeline import Runner
from pxp.core.spec import spec_json_schema, validate_spec
from pxp.testing import plugin_registry

REPO = Path(__file__).resolve().parents[1]

# An observer that raises in every event hook: it must be named once and cost the run nothing.
BROKEN = '''
from pxp.core.hookspecs import hookimpl

@hookimpl
def pxp_training_step(run, policy, step, metrics):
    raise RuntimeError("observer broke on a training step")

@hookimpl
def pxp_episode_done(run, evaluation, episode):
    raise RuntimeError("observer broke on an episode")

@hookimpl
def pxp_unit_done(run, stage, unit):
    raise RuntimeError("observer broke on a unit")

@hookimpl
def pxp_run_done(run):
    raise RuntimeError("observer broke at the end")
'''

SIZE = 64
TINY_VIT = {"type": "tiny_vit", "image_size": SIZE, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2}
TRAIN = {"steps": 20, "batch_size": 4, "eval_every": 10, "warmup_steps": 0}
SPEC = {
    "name": "events", "seed": 0, "scene": {"type": "libero_bowl_plate", "image_size": SIZE},
    "datasets": {"grid": {"type": "position_grid", "rows": 1, "cols": 2, "split": "all"}},
    "policies": {
        "para": {"backbone": TINY_VIT, "head": {"type": "para_volume", "horizon": 2, "height_bins": 4,
                                                "heatmap_size": 16, "hidden_dim": 16},
                 "objective": {"type": "behavior_cloning"}, "dataset": "grid", "train": TRAIN},
        "act": {"backbone": TINY_VIT, "head": {"type": "act_regression", "horizon": 2, "hidden_dim": 32},
                "objective": {"type": "behavior_cloning"}, "dataset": "grid", "train": TRAIN}},
    "evaluations": {"lr": {"type": "position_split", "policies": ["para", "act"], "grid": [1, 2], "split": "all",
                           "positions": 2, "episodes_per_position": 1, "max_steps": 4}},
    "report": {"heatmaps": False, "probe": False},
    "loggers": [{"type": "tensorboard"}],
}


@pytest.fixture(scope="module")
def observers(tmp_path_factory):
    """The example event-log plugin (importable by name, as pip would leave it) and a broken observer."""
    site = tmp_path_factory.mktemp("site")
    (site / "pxp_broken_observer.py").write_text(textwrap.dedent(BROKEN))
    sys.path[:0] = [str(REPO / "examples" / "pxp-event-log"), str(site)]
    try:
        yield importlib.import_module("pxp_event_log"), importlib.import_module("pxp_broken_observer")
    finally:
        sys.path[:] = [p for p in sys.path if p not in (str(site), str(REPO / "examples" / "pxp-event-log"))]
        sys.modules.pop("pxp_event_log", None)
        sys.modules.pop("pxp_broken_observer", None)


class Log(list):
    def __call__(self, message, *args, **kwargs):
        self.append(str(message))


@pytest.fixture(scope="module")
def run(tmp_path_factory, observers):
    """One real run (datasets → training → evaluation → report) with both observers and the TensorBoard logger."""
    registry = plugin_registry(*observers)
    spec = validate_spec(SPEC, registry)
    run_dir = tmp_path_factory.mktemp("run")
    runner = Runner(spec, run_dir, registry=registry, workers=1, device="cpu", quiet=True)
    log = Log()
    runner.console.log = log
    runner.run()
    return run_dir, registry, log


def events_of(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in io.read_jsonl(run_dir / "event-log.jsonl") if e["event"] == kind]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# ---------------------------------------------------------------- the events of a real run

def test_observers_see_every_event_of_the_run(run):
    run_dir, _, _ = run
    steps = events_of(run_dir, "training")
    for policy in ("para", "act"):
        mine = [(e["step"], e["split"]) for e in steps if e["policy"] == policy]
        assert mine == [(1, "train"), (10, "train"), (10, "train-subset"), (20, "train"), (20, "train-subset")]
    results = io.read_json(run_dir / "results.json")
    episodes = sorted((e["policy"], e["outcome"], e["error"]) for e in events_of(run_dir, "episode"))
    assert episodes == sorted((e["policy"], e["outcome"], e["error"]) for e in results["episodes"]) and len(episodes) == 4
    units = [(e["stage"], e["unit"], e["status"]) for e in events_of(run_dir, "unit")]
    assert units == [("datasets", "grid", "done"), ("training", "para", "done"), ("training", "act", "done"),
                     ("evaluation", "lr", "done")]
    (end,) = events_of(run_dir, "run")
    assert end["name"] == "events" and end["episodes"] == 4


def test_a_raising_observer_is_named_once_and_the_run_completes(run):
    run_dir, _, log = run
    warnings = [m for m in log if "pxp_broken_observer" in m]
    assert len(warnings) == 1, warnings
    assert ("plugin 'pxp_broken_observer' failed in pxp_unit_done: RuntimeError: observer broke on a unit"
            in warnings[0]) and "PXP_DISABLE_PLUGINS=pxp_broken_observer" in warnings[0]
    assert (run_dir / "report.md").exists() and events_of(run_dir, "run")  # the others were still called


def test_tensorboard_holds_the_losses_and_rates_of_the_run(run):
    run_dir, _, _ = run
    results = io.read_json(run_dir / "results.json")
    for policy in ("para", "act"):
        got = scalars(run_dir / "tensorboard" / policy)
        rows = io.read_jsonl(run_dir / "checkpoints" / policy / "metrics.jsonl")
        train = [r for r in rows if r["split"] == "train"]
        assert [s for s, _ in got["train/loss"]] == [r["step"] for r in train] == [1, 10, 20]
        assert [v for _, v in got["train/loss"]] == pytest.approx([r["loss"] for r in train], rel=1e-6)
        assert [v for _, v in got["train/lr"]] == pytest.approx([r["lr"] for r in train], rel=1e-6)
        assert len(got["train/steps_per_s"]) == 3 and all(v > 0 for _, v in got["train/steps_per_s"])
        held = [r for r in rows if r["split"] == "train-subset"]
        assert [v for _, v in got["train-subset/pixel_error_px"]] == pytest.approx([r["pixel_error_px"] for r in held],
                                                                                   rel=1e-6)
        entry = results["summaries"]["lr"]["policies"][policy]
        assert got["lr/place"] == [(20, pytest.approx(entry["place"]["rate"]))]
        assert got["lr/weighted_score"] == [(20, pytest.approx(entry["weighted"]["score"]))]


def test_switching_the_logger_on_for_a_finished_run_fills_tensorboard(run, tmp_path):
    """The units are cached (the logger is not part of any hash): curves come from metrics.jsonl, once."""
    run_dir, registry, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("tensorboard", "event-log.jsonl"))
    spec = validate_spec(SPEC, registry)
    for _ in range(2):  # a second run replaces its own backfilled and rate files: no point twice
        Runner(spec, copy, registry=registry, workers=1, device="cpu", quiet=True).run(("training", "evaluation"))
    assert [e["status"] for e in events_of(copy, "unit")] == ["cached"] * 6
    for policy in ("para", "act"):
        assert scalars(copy / "tensorboard" / policy) == scalars(run_dir / "tensorboard" / policy) | {
            "train/steps_per_s": scalars(copy / "tensorboard" / policy)["train/steps_per_s"]}
        assert len(scalars(copy / "tensorboard" / policy)["train/loss"]) == 3


WORKER = """
import pickle, sys
from pxp.core.events import RunInfo
from pxp.core.plugins import registry_from_recipe
from pathlib import Path
from pxp.core.spec import validate_spec
from pxp.experiment.training_unit import TrainingUnit, train_unit

recipe, spec, run_dir = pickle.loads(open(sys.argv[1], "rb").read())
spec = validate_spec(spec, registry_from_recipe(recipe))
pol = spec.policies["para"]
low, high = spec.scene.end_effector_box()  # the driver resolves the box (a worker has no spec)
train_unit(TrainingUnit("para", pol, "cpu", dataset=str(Path(run_dir) / "data" / f"{pol.dataset}.hdf5"),
                        checkpoint=str(Path(run_dir) / "checkpoints" / "para"), plugins=recipe,
                        workspace=(tuple(low), tuple(high), "test"), run=RunInfo.of(run_dir, spec)))
"""


def test_training_in_a_worker_process_fires_its_steps_there(run, tmp_path):
    """A training unit (the one a Ray worker runs) in another process: it rebuilds the registry from the recipe
    and sends the steps to the same observers (the event log, the TensorBoard logger) from that process."""
    import pickle
    import subprocess

    run_dir, registry, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir / "data", copy / "data")
    (tmp_path / "task.pkl").write_bytes(pickle.dumps((registry.recipe, SPEC, str(copy))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "task.pkl")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("plugin 'pxp_broken_observer' failed in pxp_training_step") == 1
    steps = events_of(copy, "training")
    assert [e["step"] for e in steps if e["split"] == "train"] == [1, 10, 20]
    assert len({e["pid"] for e in steps}) == 1 and steps[0]["pid"] != os.getpid()
    assert [s for s, _ in scalars(copy / "tensorboard" / "para")["train/loss"]] == [1, 10, 20]


def test_failed_episodes_reach_the_observers_and_the_run_still_ends(observers, tmp_path):
    """An evaluation whose episodes crash: each error is an episode event, the unit is "failed", and the run's
    end is announced before the run stops with its error."""
    from pxp.core.errors import PxpError

    registry = plugin_registry(observers[0])
    spec = validate_spec({"name": "crash", "scene": SPEC["scene"], "evaluations": {"c": {
        "type": "position_split", "policies": ["builtin:crash"], "grid": [1, 2], "split": "all", "positions": 2,
        "episodes_per_position": 1, "max_steps": 4}}}, registry)
    with pytest.raises(PxpError, match="2 of 2 episodes failed"):
        Runner(spec, tmp_path, registry=registry, workers=1, device="cpu", quiet=True).run(("evaluation",))
    episodes = events_of(tmp_path, "episode")
    assert len(episodes) == 2 and all(e["outcome"] is None and "builtin:crash" in e["error"] for e in episodes)
    assert [(e["unit"], e["status"]) for e in events_of(tmp_path, "unit")] == [("c", "failed")]
    assert events_of(tmp_path, "run")[0]["episodes"] == 2


def test_the_example_event_log_package_passes_its_own_tests(tmp_path):
    import subprocess

    example = REPO / "examples" / "pxp-event-log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example), *sys.path])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example / "tests")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- RunEvents alone

class Recorder:
    def __init__(self):
        self.seen = []

    @hookimpl
    def pxp_training_step(self, policy, step):
        self.seen.append((policy, step))


class Raising:
    @hookimpl
    def pxp_training_step(self, run, step):
        raise ValueError(f"bad step {step}")


def test_each_observer_is_isolated_and_reported_once():
    rec = Recorder()
    registry = load_registry(strict=True, disabled=set(), extra_plugins=[("raising", Raising()), ("recorder", rec)],
                             use_entry_points=False)
    log = Log()
    events = RunEvents(registry, RunInfo(Path("/nonexistent"), {}), log=log)
    for step in (1, 2, 3):
        events.fire("pxp_training_step", policy="p", step=step, metrics={})
    assert rec.seen == [("p", 1), ("p", 2), ("p", 3)]
    assert log == ["warning: plugin 'raising' failed in pxp_training_step: ValueError: bad step 1; the run goes on "
                   "(its later failures are not reported); PXP_DISABLE_PLUGINS=raising turns the plugin off"]


class Mutating:
    @hookimpl
    def pxp_episode_done(self, episode):
        episode["outcome"] = "PLACE"
        episode["diagnostics"]["first_failure"] = None


def test_an_observer_cannot_change_what_the_run_records():
    registry = load_registry(strict=True, disabled=set(), extra_plugins=[("mutating", Mutating())],
                             use_entry_points=False)
    episode = {"policy": "p", "outcome": "MISS", "diagnostics": {"first_failure": "missed"}}
    RunEvents(registry, RunInfo(Path("/nonexistent"), {})).fire("pxp_episode_done", evaluation="e", episode=episode)
    assert episode == {"policy": "p", "outcome": "MISS", "diagnostics": {"first_failure": "missed"}}


def test_a_logger_that_cannot_start_is_reported_and_the_others_run():
    rec = Recorder()
    registry = load_registry(strict=True, disabled=set(), extra_plugins=[("recorder", rec)], use_entry_points=False)
    log = Log()
    events = RunEvents(registry, RunInfo(Path("/nonexistent"), {"loggers": [{"type": "tensorboard"}]}), log=log)
    events.fire("pxp_training_step", policy="p", step=1, metrics={})
    assert rec.seen == [("p", 1)]
    assert log == ["warning: logger loggers[0] (tensorboard) is off for this run: PluginError: no logger named "
                   "'tensorboard' (available: none installed)"]


def test_loggers_are_validated_with_the_spec():
    from pxp.core.errors import SpecError

    registry = plugin_registry()
    with pytest.raises(SpecError) as err:
        validate_spec({**SPEC, "loggers": [{"type": "wandb"}, {"type": "tensorboard", "dir": "../out"}]}, registry)
    problems = dict(err.value.problems)
    assert problems["loggers.0.type"] == "unknown type 'wandb'; available: 'tensorboard'"
    assert "loggers.1.dir" in problems
    assert "TensorBoardConfig" in json.dumps(spec_json_schema(registry))


def test_the_tensorboard_plugin_imports_light_and_its_config_round_trips():
    from pxp.testing import check_config_roundtrip, check_light_import

    check_light_import("pxp.plugins.loggers.tensorboard")
    check_config_roundtrip(plugin_registry(), "loggers", "tensorboard", dir="tb")


def test_a_spec_asking_for_tensorboard_without_the_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    from pxp.core.errors import SpecError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(SpecError) as err:
        validate_spec(SPEC, plugin_registry())
    ((path, message),) = err.value.problems
    assert path == "loggers.0" and 'pip install "pxp[tensorboard]"' in message
