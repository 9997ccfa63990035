"""The Ray executor on a real two-node cluster (ray.cluster_utils: a head and a second node on this machine).

The cluster starts once for the module; the runs are tiny (2×2 grid, 64 px, a 2-step training, builtin
expert and home policies), so the module stays within its budget on 2 cores.
"""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pxp.core import execution
from pxp.experiment.evaluation import EpisodeTask, run_episodes
from pxp.experiment.pipeline import Runner, resolve_executor, training_waves
from pxp.core.spec import validate_spec

SIZE = 64


def tiny_spec(name="raytiny", **over):
    pol = {"backbone": {"type": "tiny_vit", "image_size": SIZE, "patch_size": 16, "embed_dim": 48, "depth": 1},
           "head": {"type": "act_regression", "horizon": 2, "hidden_dim": 32},
           "objective": {"type": "behavior_cloning"}, "dataset": "grid",
           "train": {"steps": 2, "batch_size": 4, "eval_every": 2, "warmup_steps": 0}}
    spec = {"name": name, "seed": 0, "scene": {"type": "libero_bowl_plate", "image_size": SIZE},
            "datasets": {"grid": {"type": "position_grid", "rows": 2, "cols": 2, "split": "left"}},
            "policies": {"act": pol},
            "evaluations": {"lr": {"type": "position_split", "policies": ["act"], "grid": [2, 2], "split": "all",
                                   "positions": 2, "episodes_per_position": 1, "max_steps": 4}}}
    return {**spec, **over}


# ----------------------------------------------------------------------------- without a cluster

def test_executor_precedence_cli_then_env_then_spec(monkeypatch):
    spec = type("S", (), {"executor": "ray"})()
    monkeypatch.delenv("PXP_EXECUTOR", raising=False)
    assert resolve_executor(None, spec) == "ray"
    assert resolve_executor(None, object()) == "local"
    monkeypatch.setenv("PXP_EXECUTOR", "local")
    assert resolve_executor(None, spec) == "local"
    assert resolve_executor("ray", spec) == "ray"


def test_training_waves_follow_init_from():
    spec = validate_spec(tiny_spec(policies={
        "a": tiny_spec()["policies"]["act"], "b": {**tiny_spec()["policies"]["act"], "init_from": "a"},
        "c": tiny_spec()["policies"]["act"]}, evaluations={}))
    assert training_waves(spec) == [["a", "c"], ["b"]]


def _pxp(args, tmp_path, prelude=""):
    code = (f"import sys; {prelude}from pxp.core.cli import main; sys.argv = ['pxp', *{args!r}]\n"
            "try:\n    main()\nfinally:\n    print('RAY_IMPORTED' if 'ray' in sys.modules else 'NO_RAY')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)


def test_the_local_executor_imports_no_ray(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(datasets={}, policies={}, evaluations={})))
    for args in (["list-plugins"], ["run", str(spec), "--stage", "datasets", "--out", str(tmp_path / "run")]):
        res = _pxp(args, tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip().splitlines()[-1] == "NO_RAY"


def test_asking_for_ray_without_it_says_how_to_install_it(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(datasets={}, policies={}, evaluations={}, executor="ray")))
    res = _pxp(["run", str(spec), "--out", str(tmp_path / "run")], tmp_path, prelude="sys.modules['ray'] = None; ")
    assert res.returncode == 2
    assert res.stderr.strip() == 'error: the ray executor needs Ray, which is not installed: pip install "pxp[ray]"'


# ----------------------------------------------------------------------------- on a cluster

@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray", reason="Ray is the optional extra pxp[ray]; make test installs it")
    from ray.cluster_utils import Cluster

    store = 200 * 2**20
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, object_store_memory=store)
    yield c
    import ray

    ray.shutdown()
    c.shutdown()


def _outcomes(path):
    from pxp.experiment.data import open_dataset

    with open_dataset(path) as f:
        return [(int(d.attrs["seed"]), str(d.attrs["outcome"])) for d in f.demos]


def test_a_tiny_study_runs_on_two_nodes_like_on_the_local_pool(cluster, tmp_path, monkeypatch):
    """Datasets, a training unit (shipped to the worker and back) and an evaluation as Ray tasks."""
    monkeypatch.setenv("PXP_RAY_SHIP", "1")  # no shared file system, as far as training knows
    spec = validate_spec(tiny_spec())
    run = tmp_path / "ray"
    Runner(spec, run, executor="ray", address=cluster.address, device="cpu", quiet=True).run(
        ("datasets", "training", "evaluation"))  # the report is the driver's own work, as with the local pool
    marker = json.loads((run / "checkpoints" / "act" / "checkpoint.json").read_text())
    assert marker["step"] == 2 and marker["finished"]
    results = json.loads((run / "results.json").read_text())
    assert len(results["episodes"]) == 2 and not any(e["error"] for e in results["episodes"])

    # The same dataset episodes in this process (the local pool's inline mode): the same outcomes.
    local = tmp_path / "local"
    Runner(spec, local, workers=1, executor="local", quiet=True).run(("datasets",))
    assert _outcomes(run / "data" / "grid.hdf5") == _outcomes(local / "data" / "grid.hdf5")
    assert {o for _, o in _outcomes(local / "data" / "grid.hdf5")} == {"PLACE"}

    # The same evaluation episodes on the local pool, from the checkpoint the cluster shipped back.
    (local / "checkpoints").mkdir()
    os.symlink(run / "checkpoints" / "act", local / "checkpoints" / "act")
    Runner(spec, local, workers=1, executor="local", quiet=True).run(("evaluation",))
    again = json.loads((local / "results.json").read_text())["episodes"]
    assert [(e["seed"], e["outcome"], e["steps"]) for e in again] == \
        [(e["seed"], e["outcome"], e["steps"]) for e in results["episodes"]]


def _scripted_tasks(n):
    from pxp.plugins.scenes.libero import LiberoSceneConfig

    scene = LiberoSceneConfig(image_size=SIZE)
    return [EpisodeTask("e", "scripted", pol, f"builtin:{pol}", scene, offset=(0.0, 0.0), seed=i, cell=[0, i],
                        max_steps=150, steps_per_target=1) for i in range(n) for pol in ("expert", "home")]


def _kill_one_running_worker(stop: threading.Event, killed: list) -> None:
    """SIGKILL the first Ray worker seen running a task (its process title is ray::_run_in_worker)."""
    while not stop.is_set() and not killed:
        for pid in os.listdir("/proc"):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if pid.isdigit() and cmd.startswith(b"ray::_run_in_worker"):
                time.sleep(1.0)  # mid-episode, not mid-startup
                os.kill(int(pid), 9)
                killed.append(int(pid))
                return
        time.sleep(0.1)


def test_a_worker_killed_mid_evaluation_loses_no_episode_and_writes_none_twice(cluster, tmp_path):
    tasks = _scripted_tasks(1)
    journal = tmp_path / "episodes.jsonl"
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_running_worker, args=(stop, killed))
    executor = execution.make_executor("ray", cluster.address)
    killer.start()
    try:
        episodes = run_episodes(tasks, workers=2, journal=journal, executor=executor)
    finally:
        stop.set()
        killer.join()
        executor.close()
    assert killed, "no worker was killed"
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert sorted(e["key"] for e in lines) == sorted(t.key for t in tasks)  # each episode exactly once
    assert not any(e["error"] for e in episodes)
    assert [e["outcome"] for e in episodes] == ["PLACE", "MISS"]


def test_python_errors_are_results_and_hung_tasks_time_out(cluster):
    executor = execution.make_executor("ray", cluster.address).with_options(timeout=3, retries=0)
    try:
        results = {r.index: r for r in executor.run_tasks(_sleep_or_fail, [0.1, -1, 30])}
    finally:
        executor.close()
    assert results[0].ok and results[0].value == 0.1
    assert results[1].error.startswith("ValueError: negative (test_ray.py:")
    assert results[2].error == "TimeoutError: timed out after 3 s"


def _sleep_or_fail(x):
    if x < 0:
        raise ValueError("negative")
    time.sleep(x)
    return x


def test_a_ray_pxp_starts_has_token_auth_and_no_dashboard(tmp_path):
    code = ("import json, os; from pxp.core.execution import make_executor\n"
            "ex = make_executor('ray'); ray = ex.connect(); node = ray._private.worker.global_worker.node\n"
            "print(json.dumps([os.environ.get('RAY_AUTH_MODE'), node.address_info.get('webui_url')])); ex.close()")
    pytest.importorskip("ray", reason="Ray is the optional extra pxp[ray]; make test installs it")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == ["token", ""]
    assert "without token authentication" not in res.stderr  # a cluster it started itself: no warning


def test_a_driver_killed_mid_evaluation_then_rerun_runs_every_episode_exactly_once(cluster, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(
        datasets={}, policies={}, workers=2,
        evaluations={"e": {"type": "position_split", "policies": ["builtin:expert", "builtin:home"], "grid": [2, 2],
                           "split": "all", "positions": 3, "episodes_per_position": 1, "max_steps": 80}})))
    run = tmp_path / "run"
    args = [sys.executable, "-c", "from pxp.core.cli import main; main()", "run", str(spec), "--out", str(run),
            "--executor", "ray", "--address", cluster.address, "--stage", "evaluation"]
    env = {**os.environ, "MUJOCO_GL": "egl"}
    env.pop("RAY_AUTH_MODE", None)
    journal = run / "evals" / "e" / "episodes.jsonl"
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end and not (journal.exists() and journal.read_text().strip()):
            time.sleep(0.2)
        assert journal.exists(), "no episode finished"
        driver.kill()  # kill -9 of the driver mid-evaluation
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    first = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    assert 1 <= len(first) < 6
    warning = driver.stderr.read().decode()
    assert warning.count("without token authentication") == 1, warning[-2000:]
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    keys = [e["key"] for e in lines]
    assert len(keys) == 6 and len(set(keys)) == 6, keys  # each episode exactly once: none lost, none twice
    result = json.loads((run / "evals/e/result.json").read_text())
    assert len(result["episodes"]) == 6 and not any(e["error"] for e in result["episodes"])


def test_training_on_ray_has_a_time_limit():
    from pxp.core.spec import TrainConfig
    from pxp.experiment.training_unit import STEPS_ONLY_LIMIT_S, time_limit

    assert time_limit(TrainConfig(minutes=10)) == 2 * 600 + 1800
    assert time_limit(TrainConfig(steps=100)) == STEPS_ONLY_LIMIT_S
