"""Fault injection (issue 15): what a user loses when things go wrong, on tiny specs and the real simulator.

Every scenario drives the real ``pxp`` command in a subprocess and asserts the outcome: kill -9 of the
main process and of workers, SIGTERM, two runs on one directory, hung / crashing / segfaulting episodes,
corrupted and deleted outputs, a full and a read-only disk, spec and plugin errors. Run alone with
``pytest -m faults``; tiny on purpose (64 px, 1–2 cells, a few training steps, built-in policies).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

pytestmark = pytest.mark.faults

PXP = [sys.executable, "-c", "from pxp.core.cli import main; main()"]
SCENE = {"type": "libero_bowl_plate", "image_size": 64}
REPORT = {"videos_per_policy": 0, "sections": {"prediction_strips": False}}
TINY_POLICY = {
    "backbone": {"type": "tiny_vit", "image_size": 64, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2},
    "head": {"type": "act_regression", "horizon": 4, "hidden_dim": 32},
    "objective": {"type": "behavior_cloning"},
    "dataset": "d",
    "train": {"steps": 60, "batch_size": 4, "warmup_steps": 1, "eval_every": 20, "holdout_fraction": 0.0},
}


# ---------------------------------------------------------------- helpers

def spec_file(tmp: Path, name="f", file="spec", **sections) -> Path:
    spec = {"name": name, "seed": 0, "device": "cpu", "workers": 2, "scene": SCENE, "report": REPORT, **sections}
    path = tmp / f"{file}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def eval_spec(tmp: Path, policies, positions=2, episodes=1, max_steps=5, **extra) -> Path:
    e = {"type": "position_split", "policies": policies, "grid": [2, 2], "split": "all", "positions": positions,
         "episodes_per_position": episodes, "max_steps": max_steps, **extra}
    return spec_file(tmp, evaluations={"e": e})


def env(**extra) -> dict:
    out = {**os.environ, "MUJOCO_GL": "egl", **extra}
    out.pop("PXP_STRICT_PLUGINS", None)  # as a user runs it
    return out


def pxp(*args, timeout=300, **env_extra) -> subprocess.CompletedProcess:
    return subprocess.run([*PXP, *map(str, args)], capture_output=True, text=True, env=env(**env_extra),
                          timeout=timeout)


def start(log: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([*PXP, *map(str, args)], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env(),
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Test cleanup: kill what this test started if an assertion left it running."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_until(predicate, timeout: float, what: str, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid → (ppid, state, cmdline) from /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            out[int(d.name)] = (int(ppid), state, cmd)
    return out


def descendants(pid: int) -> dict[int, str]:
    table, found, todo = _proc_table(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, state, cmd) in table.items():
            if ppid == parent and child not in found and state != "Z":
                found[child] = cmd
                todo.append(child)
    return found


def workers_of(pid: int) -> list[int]:
    return [p for p, cmd in descendants(pid).items() if "spawn_main" in cmd]


def alive(pid: int) -> bool:
    info = _proc_table().get(pid)
    return info is not None and info[1] != "Z"


def journal(run: Path, name="e") -> list[dict]:
    path = run / "evals" / name / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def marker(run: Path, stage: str, name: str) -> dict:
    return json.loads((run / ".stages" / f"{stage}.{name}.json").read_text())


def no_traceback(res) -> None:
    text = res.stdout + res.stderr
    assert "Traceback" not in text, text[-3000:]


# ---------------------------------------------------------------- spec errors: caught by validate, one line each

def _write_eval(tmp_path, **fields) -> Path:
    e = {"type": "position_split", "policies": ["builtin:home"], "grid": [2, 2], **fields}
    return spec_file(tmp_path, evaluations={"e": e})


@pytest.mark.parametrize("fields, path, message", [
    ({"grid": [0, 0]}, "evaluations.e.grid", "at least 1×1"),
    ({"split": "cells:99"}, "evaluations.e.split", "cell 99 is outside the 2×2 grid"),
    ({"split": "random:50"}, "evaluations.e.split", "random:50 asks for more cells"),
    ({"grid": [4, 4], "split": "inner:5"}, "evaluations.e.split", "inner:5 does not fit a 4×4 grid"),
    ({"grid": [1, 1], "split": "right"}, "evaluations.e.split", "selects no cell of the 1×1 grid"),
    ({"split": "right", "positions": 3}, "evaluations.e.positions", "only 2 cell(s)"),
    ({"train_split": "inner:3"}, "evaluations.e.train_split", "inner:3 does not fit"),
    ({"policies": ["builtin:nope"]}, "evaluations.e.policies", "no built-in policy"),
])
def test_validate_rejects_grid_and_split_errors(tmp_path, fields, path, message):
    from pxp.core.cli import cli

    res = CliRunner().invoke(cli, ["validate", str(_write_eval(tmp_path, **fields))])
    assert res.exit_code == 2, res.output
    line = next(l for l in res.output.splitlines() if l.strip().startswith(path + ":"))
    assert message in line and "Traceback" not in res.output


def test_validate_rejects_dataset_split_init_from_name_and_encoding(tmp_path):
    from pxp.core.cli import cli

    policy = {**TINY_POLICY, "init_from": str(tmp_path / "no" / "such-checkpoint")}
    bad = spec_file(tmp_path, datasets={"d": {"type": "position_grid", "rows": 4, "cols": 4, "split": "inner:5"}},
                    policies={"p": policy})
    res = CliRunner().invoke(cli, ["validate", str(bad)])
    assert res.exit_code == 2 and "datasets.d.split: inner:5 does not fit a 4×4 grid" in res.output, res.output
    good_data = {"d": {"type": "position_grid", "rows": 2, "cols": 2}}
    res = CliRunner().invoke(cli, ["validate", str(spec_file(tmp_path, datasets=good_data, policies={"p": policy}))])
    assert res.exit_code == 2 and "policies.p.init_from:" in res.output and "does not exist" in res.output
    long = spec_file(tmp_path, name="n" * 300)
    res = CliRunner().invoke(cli, ["validate", str(long)])
    assert res.exit_code == 2 and "name: String should have at most 100 characters" in res.output
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\xe9\n".encode("latin-1"))
    res = CliRunner().invoke(cli, ["validate", str(latin1)])
    assert res.exit_code == 2 and "not UTF-8" in res.output and isinstance(res.exception, SystemExit)


# ---------------------------------------------------------------- plugins: isolated and named

REGISTERS_BADLY = '''
from typing import Literal
from pydantic import BaseModel
from pxp.core.hookspecs import hookimpl

class NoType(BaseModel):
    width: int = 1

class Dup(BaseModel):
    type: Literal["tiny_vit"] = "tiny_vit"

@hookimpl
def pxp_register_backbones(register):
    register("notype", NoType, lambda cfg: None)
    register("tiny_vit", Dup, lambda cfg: None)
'''


def test_bad_registrations_are_reported_and_the_rest_load(tmp_path):
    root = tmp_path / "site"
    dist = root / "pxp_bad-9.9.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pxp-bad\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text("[pxp]\nbad = pxp_bad_mod\n")
    (root / "pxp_bad_mod.py").write_text(REGISTERS_BADLY)
    res = pxp("list-plugins", "--json", PYTHONPATH=str(root))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    errors = [f["error"] for f in data["failures"] if f["name"] == "bad"]
    assert any("'notype'" in e and "'type' field" in e for e in errors), errors
    assert any("registered twice" in e and "plugin 'vit_backbones'" in e and "plugin 'bad'" in e for e in errors), errors
    tiny = next(c for c in data["components"] if c["name"] == "tiny_vit")
    assert tiny["plugin"] == "vit_backbones"  # the first registration stays; the rest of the plugins load
    table = pxp("list-plugins", PYTHONPATH=str(root))
    assert table.returncode == 0 and "PXP_DISABLE_PLUGINS=bad" in table.stderr
    no_traceback(table)


def test_factory_errors_and_contract_violations_name_the_plugin():
    import torch
    from typing import Literal

    from pxp.core.contracts import BackboneConfig
    from pxp.core.errors import PluginError
    from pxp.core.hookspecs import hookimpl
    from pxp.core.plugins import load_registry

    class Cfg(BackboneConfig):
        type: Literal["wrong_shapes"] = "wrong_shapes"
        image_size: int = 32

    class Raises(BackboneConfig):
        type: Literal["raises"] = "raises"

    class WrongShapes(torch.nn.Module):
        embed_dim, weights_info = 8, {"source": "random init"}

        def forward(self, x):
            return torch.zeros(x.shape[0], 4, 2, 2), torch.zeros(x.shape[0], 8)  # 4 channels, not embed_dim

    class Plugin:
        @hookimpl
        def pxp_register_backbones(self, register):
            register("wrong_shapes", Cfg, lambda cfg: WrongShapes())
            register("raises", Raises, lambda cfg: 1 / 0)

    reg = load_registry(strict=True, extra_plugins=[("shapes", Plugin())], use_entry_points=False)
    with pytest.raises(PluginError) as bad:
        reg.create("backbones", Cfg())
    assert ("backbone 'wrong_shapes' (plugin 'shapes'" in str(bad.value) and "(2, 8, h, w), got (2, 4, 2, 2)"
            in str(bad.value) and "PXP_DISABLE_PLUGINS=shapes" in str(bad.value))
    with pytest.raises(PluginError, match=r"backbone 'raises' \(plugin 'shapes'.*failed to build: ZeroDivisionError"):
        reg.create("backbones", Raises())


# ---------------------------------------------------------------- the run directory lock

def test_locked_run_directory_refuses_a_second_run_and_a_stale_lock_never_blocks(tmp_path):
    from pxp.core.lock import run_lock

    run = tmp_path / "run"
    spec = eval_spec(tmp_path, ["builtin:home"])
    with run_lock(run):
        t0 = time.monotonic()
        res = pxp("run", spec, "--out", run)
        assert res.returncode == 2 and f"pid {os.getpid()}" in res.stderr and "in use" in res.stderr, res.stderr
        assert time.monotonic() - t0 < 30
        shutil.copy(spec, run / "spec.resolved.yaml")
        res = pxp("eval", run)
        assert res.returncode == 2 and f"pid {os.getpid()}" in res.stderr, res.stderr
    holder = subprocess.Popen([sys.executable, "-c", f"from pxp.core.lock import run_lock; import time\n"
                               f"with run_lock({str(run)!r}): print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # kill -9: the lock file stays, the lock does not
    holder.wait()
    with run_lock(run):
        pass


# ---------------------------------------------------------------- evaluation faults

def test_kill_worker_then_second_run_then_kill_main_during_evaluation(tmp_path):
    """A worker killed mid-episode costs nothing (requeued); a second run on the directory is refused;
    kill -9 of the main process leaves no process behind; the rerun resumes and counts nothing twice."""
    run = tmp_path / "run"
    spec = eval_spec(tmp_path, ["builtin:home"], positions=3, episodes=2, max_steps=40)
    a = start(tmp_path / "a.log", "run", spec, "--out", run)
    try:
        wait_until(lambda: journal(run), 180, "the first episode")
        victim = wait_until(lambda: workers_of(a.pid), 30, "a worker")[0]
        os.kill(victim, signal.SIGKILL)
        second = pxp("run", spec, "--out", run)
        assert second.returncode == 2 and f"pid {a.pid}" in second.stderr, second.stderr
        wait_until(lambda: len(journal(run)) >= 3, 180, "three episodes")
        family = list(descendants(a.pid))
        a.kill()
        a.wait()
        left = wait_until(lambda: not any(alive(p) for p in family) or None, 10, "the workers to die", every=0.5)
        assert left is True
    finally:
        stop(a)
    before = len(journal(run))
    assert before < 6 and not any(e.get("error") for e in journal(run)), "the killed worker's episode was requeued"
    res = pxp("run", spec, "--out", run)  # the dead run's lock is stale: it must not block
    assert res.returncode == 0, res.stderr[-3000:]
    eps = journal(run)
    assert len(eps) == 6 and len({e["key"] for e in eps}) == 6, "no episode ran twice"
    result = json.loads((run / "evals/e/result.json").read_text())
    assert len(result["episodes"]) == 6 and not any(e["error"] for e in result["episodes"])


def test_sigterm_stops_like_ctrl_c_and_kills_the_workers(tmp_path):
    run = tmp_path / "run"
    spec = eval_spec(tmp_path, ["builtin:home"], positions=4, episodes=2, max_steps=60)
    a = start(tmp_path / "a.log", "run", spec, "--out", run)
    try:
        wait_until(lambda: len(workers_of(a.pid)) == 2, 180, "the workers")
        time.sleep(1)  # busy building their scenes
        family = list(descendants(a.pid))
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        assert a.wait(timeout=15) == 130
        assert time.monotonic() - t0 < 15
        wait_until(lambda: not any(alive(p) for p in family), 10, "the workers to die")
    finally:
        stop(a)
    log = (tmp_path / "a.log").read_text()
    assert "interrupted" in log and "Traceback" not in log
    assert marker(run, "evaluation", "e")["status"] == "started"  # resumable, not done


def test_crashing_episodes_are_counted_reported_and_retried_by_a_rerun(tmp_path):
    run = tmp_path / "run"
    spec = eval_spec(tmp_path, ["builtin:home", "builtin:crash"], positions=1)
    res = pxp("run", spec, "--out", run)
    assert res.returncode == 1 and "evaluation e: 1 of 2 episodes failed" in res.stderr, res.stderr[-3000:]
    assert "builtin:crash policy raised on purpose" in res.stderr
    no_traceback(res)
    assert marker(run, "evaluation", "e")["status"] == "failed"
    report = (run / "report.md").read_text()
    assert "Failed episodes" in report and "e: 1 of 2" in report and "+nan" not in report
    torn = run / "plots" / ".e_positions.abc.tmp.png"  # what a kill during the report leaves behind
    torn.write_bytes(b"\x89PNG")
    again = pxp("run", spec, "--out", run)
    assert again.returncode == 1 and "retrying what failed in e" in again.stderr, again.stderr[-3000:]
    assert not torn.exists()
    runs = {}
    for e in journal(run):
        runs[e["key"]] = runs.get(e["key"], 0) + 1
    assert sorted(runs.values()) == [1, 2]  # only the failed one ran again
    assert all(n == 2 for k, n in runs.items() if k.startswith("builtin:crash"))
    check = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "scripts/check_report.py"), "run"],
                           cwd=tmp_path, capture_output=True, text=True, env={**env(), "PATH": "/nonexistent"})
    assert check.returncode == 0 and '"missing_files": []' in check.stdout, check.stdout + check.stderr


def test_hung_and_segfaulting_episodes_cost_only_themselves(tmp_path):
    run = tmp_path / "run"
    spec = eval_spec(tmp_path, ["builtin:home", "builtin:hang", "builtin:segfault"], positions=1,
                     episode_timeout=20, episode_retries=0)  # 20 s: under load a worker's start alone took > 8 s
    t0 = time.monotonic()
    res = pxp("run", spec, "--out", run, timeout=240)
    assert res.returncode == 1, res.stderr[-3000:]
    assert time.monotonic() - t0 < 200
    by_policy = {e["policy"]: e for e in json.loads((run / "evals/e/result.json").read_text())["episodes"]}
    assert by_policy["builtin:home"]["error"] is None and by_policy["builtin:home"]["outcome"] == "MISS"
    assert by_policy["builtin:hang"]["error"].startswith("timed out after 20 s")
    assert by_policy["builtin:segfault"]["error"].startswith("worker process died (signal SIGSEGV)")
    assert (run / "report.html").exists()  # the report stage survived
    no_traceback(res)


def _runs_by_key(run: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in journal(run):
        out.setdefault(e["key"], []).append(e)
    return out


def test_a_policy_that_keeps_crashing_is_stopped_after_three_and_a_rerun_retries_the_rest(tmp_path):
    run = tmp_path / "run"
    spec = eval_spec(tmp_path, ["builtin:home", "builtin:crash"], positions=2, episodes=3)  # 6 episodes each
    res = pxp("run", spec, "--out", run)
    assert res.returncode == 1, res.stderr[-3000:]
    log = " ".join(res.stderr.split())
    assert "evaluation e: 6 of 12 episodes failed (skipped: builtin:crash failed 3 episodes in a row" in log, log[-3000:]
    no_traceback(res)
    eps = json.loads((run / "evals/e/result.json").read_text())["episodes"]
    crash = [e for e in eps if e["policy"] == "builtin:crash"]
    raised = [e for e in crash if e["error"].startswith("RuntimeError: builtin:crash policy raised on purpose")]
    skipped = [e for e in crash if e["error"].startswith("skipped: builtin:crash failed")]
    assert len(raised) >= 3 and skipped and len(raised) + len(skipped) == 6  # 2 workers: a 4th may have started
    assert all(e["error"] is None for e in eps if e["policy"] == "builtin:home")
    assert (run / "results.json").exists() and (run / "report.html").exists()
    again = pxp("run", spec, "--out", run)
    assert again.returncode == 1 and "retrying what failed in e" in again.stderr, again.stderr[-3000:]
    runs = _runs_by_key(run)
    assert all(len(v) == 1 for k, v in runs.items() if k.startswith("builtin:home"))  # done: never rerun
    crash_runs = [v for k, v in runs.items() if k.startswith("builtin:crash")]
    assert len(crash_runs) == 6 and all(len(v) == 2 for v in crash_runs)  # skipped ones too: retried by the rerun


def test_a_policy_that_always_hangs_is_stopped_after_three_timeouts_each_run_once(tmp_path):
    run = tmp_path / "run"
    spec = eval_spec(tmp_path, ["builtin:hang"], positions=2, episodes=3, episode_timeout=10)  # default retries
    t0 = time.monotonic()
    res = pxp("run", spec, "--out", run, timeout=400)
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stderr[-3000:]
    assert "skipped: builtin:hang failed" in " ".join(res.stderr.split()), res.stderr[-3000:]
    no_traceback(res)
    eps = json.loads((run / "evals/e/result.json").read_text())["episodes"]
    timed_out = [e for e in eps if e["error"].startswith("timed out after 10 s")]
    skipped = [e for e in eps if e["error"].startswith("skipped: builtin:hang failed")]
    assert len(timed_out) >= 3 and skipped and len(timed_out) + len(skipped) == 6
    assert all(len(v) == 1 for v in _runs_by_key(run).values())  # a timeout is not retried
    assert len(timed_out) <= 4, f"{len(timed_out)} hung episodes waited out their limit ({took:.0f} s)"


def test_bogus_mujoco_gl_is_one_error_before_any_work(tmp_path):
    res = pxp("run", eval_spec(tmp_path, ["builtin:home"]), "--out", tmp_path / "run", MUJOCO_GL="bogus")
    assert res.returncode == 2 and "MUJOCO_GL=bogus" in res.stderr and not (tmp_path / "run/evals").exists()
    no_traceback(res)


# ---------------------------------------------------------------- disks

def _mount_tmpfs(path: Path, options: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs (a full or read-only disk)")
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")


@contextlib.contextmanager
def _tmpfs_disk(path, options):
    _mount_tmpfs(path, options)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)])


@pytest.fixture
def small_disk(tmp_path):
    with _tmpfs_disk(tmp_path / "disk", "size=256k") as disk:
        yield disk


@pytest.fixture
def read_only_disk(tmp_path):
    with _tmpfs_disk(tmp_path / "ro", "ro,size=64k") as disk:
        yield disk


def test_read_only_output_is_one_line(tmp_path, read_only_disk):
    res = pxp("run", eval_spec(tmp_path, ["builtin:home"]), "--out", read_only_disk / "run")
    assert res.returncode == 1 and "read-only" in res.stderr and str(read_only_disk / "run") in res.stderr, res.stderr
    no_traceback(res)


def test_full_disk_while_writing_a_dataset_is_one_line(tmp_path, small_disk):
    spec = spec_file(tmp_path, datasets={"d": {"type": "position_grid", "rows": 1, "cols": 2, "split": "cells:0",
                                               "compression_level": 0}})
    res = pxp("run", spec, "--out", small_disk / "run", "--stage", "datasets")
    assert res.returncode == 1 and "the disk is full" in res.stderr, res.stderr[-3000:]
    no_traceback(res)


# ---------------------------------------------------------------- the whole pipeline: datasets, training, outputs

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One tiny experiment, run the hard way: a worker is killed while the dataset is generated, the main
    process is killed (-9) while training, then the run is repeated. Returns (run, spec, rerun result)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    run = tmp / "run"
    spec = spec_file(tmp, datasets={"d": {"type": "position_grid", "rows": 1, "cols": 2, "split": "cells:0"}},
                     policies={"p": TINY_POLICY},
                     evaluations={"e": {"type": "position_split", "policies": ["p"], "grid": [1, 2], "split": "cells:1",
                                        "positions": 1, "episodes_per_position": 1, "max_steps": 5}})
    a = start(tmp / "first.log", "run", spec, "--out", run)
    try:
        victim = wait_until(lambda: workers_of(a.pid), 180, "a dataset worker")[0]
        time.sleep(1)  # mid-episode (building its scene or running the expert)
        os.kill(victim, signal.SIGKILL)
        ckpt = run / "checkpoints" / "p" / "checkpoint.json"
        wait_until(lambda: ckpt.exists(), 300, "a training checkpoint", every=0.05)
        a.kill()  # kill -9 of the main process while it trains
        a.wait()
    finally:
        stop(a)
    killed_at = json.loads(ckpt.read_text())["step"]
    res = pxp("run", spec, "--out", run, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return run, spec, res, killed_at, (tmp / "first.log").read_text()


def test_worker_killed_while_generating_costs_no_episode(pipeline):
    from pxp.experiment.data import open_dataset

    run, _, _, _, first_log = pipeline
    with open_dataset(run / "data" / "d.hdf5") as f:
        assert len(f.demos) == 1
    assert "raised" not in first_log and "Traceback" not in first_log


def test_killed_training_resumes_without_duplicate_metrics(pipeline):
    run, _, res, killed_at, _ = pipeline
    assert "resuming from step" in res.stderr
    rows = [json.loads(line) for line in (run / "checkpoints/p/metrics.jsonl").read_text().splitlines()]
    kinds = [(row["step"], tuple(sorted(row))) for row in rows]  # training rows and holdout rows share steps
    steps = [row["step"] for row in rows]
    assert len(kinds) == len(set(kinds)) and steps == sorted(steps), kinds
    assert steps[-1] == TINY_POLICY["train"]["steps"]
    assert marker(run, "training", "p")["status"] == "done" and killed_at < steps[-1]


def test_deleted_and_corrupted_outputs_are_recomputed(pipeline, tmp_path):
    from pxp.experiment.data import open_dataset
    from pxp.experiment.policy import read_checkpoint

    run = tmp_path / "run"
    shutil.copytree(pipeline[0], run)
    spec = pipeline[1]
    (run / "data" / "d.hdf5").unlink()  # as the old error message advised
    model = next((run / "checkpoints" / "p").glob("model-*.pt"))
    model.write_bytes(model.read_bytes()[:-100] + b"\0" * 100)
    (run / "evals" / "e" / "result.json").unlink()
    res = pxp("run", spec, "--out", run, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    log = " ".join(res.stderr.split())
    assert "recomputing d:" in log and "d.hdf5 is missing" in log
    assert "recomputing p:" in log and "does not match its sha256" in log
    assert "recomputing e:" in log and "result.json is missing" in log
    with open_dataset(run / "data" / "d.hdf5") as f:
        assert len(f.demos) == 1
    read_checkpoint(run / "checkpoints" / "p")  # verifies every file against its sha256
    assert len(json.loads((run / "evals/e/result.json").read_text())["episodes"]) == 1
    again = pxp("run", spec, "--out", run)
    assert again.returncode == 0 and again.stderr.count("is up to date") == 3


def test_pxp_eval_rejects_a_resolved_spec_edited_away_from_its_checkpoint(pipeline, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pipeline[0], run, ignore=shutil.ignore_patterns("data"))
    resolved = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    resolved["policies"]["p"]["head"]["hidden_dim"] = 64
    (run / "spec.resolved.yaml").write_text(yaml.safe_dump(resolved))
    res = pxp("eval", run)
    assert res.returncode == 2 and "policies.p.head: hidden_dim differ from the checkpoint" in res.stderr, res.stderr
    no_traceback(res)


def test_evaluation_stage_alone_rejects_a_spec_edited_away_from_its_checkpoint(pipeline, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pipeline[0], run, ignore=shutil.ignore_patterns("data"))
    edited = yaml.safe_load(Path(pipeline[1]).read_text())
    edited["policies"]["p"]["head"]["hidden_dim"] = 64
    spec = tmp_path / "edited.yaml"
    spec.write_text(yaml.safe_dump(edited))
    res = pxp("run", spec, "--out", run, "--stage", "evaluation")
    assert res.returncode == 2 and "policies.p.head: hidden_dim differ from the checkpoint" in res.stderr, res.stderr
    no_traceback(res)


# ---------------------------------------------------------------- report details

def test_summary_without_valid_episodes_shows_no_nan_and_counts_failures(tmp_path):
    from pxp.core import io
    from pxp.experiment.report import Doc, FailedEpisodes, Report, TrainingSection
    from pxp.plugins.reports.para_vs_act import ParaVsActSummary
    from pxp.testing import plugin_registry

    spec = {"name": "x", "scene": {"type": "libero_bowl_plate"}, "evaluations": {"e": {"type": "position_split"}},
            "policies": {"para": {"head": {"type": "para_volume"}, "backbone": {"type": "tiny_vit"},
                                  "objective": {"type": "behavior_cloning"}, "dataset": "d"},
                         "act": {"head": {"type": "act_regression"}, "backbone": {"type": "tiny_vit"},
                                 "objective": {"type": "behavior_cloning"}, "dataset": "d"}}}
    eps = [{"evaluation": "e", "policy": "para", "outcome": None, "error": "timed out after 8 s (the worker was killed)",
            "seed": 0}, {"evaluation": "e", "policy": "act", "outcome": "PLACE", "error": None, "seed": 0}]
    (tmp_path / "spec.resolved.yaml").write_text(yaml.safe_dump(spec))
    io.write_json(tmp_path / "results.json", {"episodes": eps, "summaries": {}})
    report, doc = Report(tmp_path, plugin_registry()), Doc()
    for section in (ParaVsActSummary(), FailedEpisodes(), TrainingSection()):  # the report's order
        section.render(report, doc)
    text = doc.markdown()
    assert "nan" not in text and "| 1 / 0 |" in text and "e: 1 of 2 (1× timed out after 8 s)" in text
    assert "| tiny_vit |" in text and "tiny_vit:" not in text
