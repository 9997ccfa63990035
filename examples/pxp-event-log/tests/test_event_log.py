import json

import pxp_event_log
from pxp.core.events import RunEvents, RunInfo
from pxp.testing import check_light_import, plugin_registry


def test_each_event_is_one_line(tmp_path):
    events = RunEvents(plugin_registry(pxp_event_log), RunInfo(tmp_path, {"name": "demo"}), log=print)
    events.fire("pxp_training_step", policy="para", step=10, metrics={"split": "train", "loss": 0.5, "lr": 1e-3})
    events.fire("pxp_episode_done", evaluation="ood", episode={"policy": "para", "outcome": "PLACE", "error": None})
    events.fire("pxp_unit_done", stage="training", unit="para", status="done", result={}, seconds=1.5)
    events.fire("pxp_run_done", results={"episodes": [{}], "summaries": {}})
    lines = [json.loads(line) for line in (tmp_path / pxp_event_log.LOG).read_text().splitlines()]
    assert [line["event"] for line in lines] == ["training", "episode", "unit", "run"]
    assert lines[0]["loss"] == 0.5 and lines[1]["outcome"] == "PLACE" and lines[2]["status"] == "done"
    assert lines[3] == {**lines[3], "name": "demo", "episodes": 1}


def test_import_is_light():
    check_light_import("pxp_event_log")
