"""``pxp run``: datasets → training → evaluation → report, each unit cached by the hash of its config.

A unit (one dataset, one policy, one evaluation) writes a marker in ``.stages/`` when it starts and
when it is done. A done marker with the same hash is skipped, but only while the unit's outputs
exist and verify (dataset header, checkpoint files against their sha256, result.json against the
evaluation's journal); otherwise the unit is recomputed and the log says why. A started or failed
marker with the same hash is resumed (the plugin keeps its partial outputs: an evaluation's journal
keeps the episodes that succeeded, so a rerun retries exactly the failed ones); a marker with another
hash means the config changed, so the old outputs are removed first.

An evaluation with failed episodes is marked ``failed``, never ``done``; the run goes on to the report
and then stops with an error that counts them. One process at a time works in a run directory
(:mod:`pxp.core.lock`). The CLI commands that drive it (``pxp run``, ``pxp eval``) are in
:mod:`pxp.experiment.commands`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pxp.core import doctor, io, manifest
from pxp.core.errors import PxpError, SpecError
from pxp.core.events import RunEvents, RunInfo
from pxp.core.execution import EXECUTORS, Executor, keep_inline_cache, make_executor
from pxp.core.lock import run_lock
from pxp.core.results import collect_results
from pxp.core.plugin_code import CodeKeys
from pxp.core.plugins import Registry, get_registry
from pxp.core.rundir import RunDir
from pxp.core.spec import (apply_overrides, dump_spec, referenced_policies, resolve_policy_names, scene_config,
                   validate_spec)

STAGES = ("datasets", "training", "evaluation", "report")
BUILTIN = "builtin:"  # evaluations may name built-in policies (see core/evaluation.py) beside trained ones
FORMAT_VERSION = 1  # bump when a stage's outputs change shape, to invalidate old caches


class ProgressTask:
    def __init__(self, progress: Progress | None, task_id):
        self._progress, self._id = progress, task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def update(self, **kwargs) -> None:
        if self._progress is not None:
            self._progress.update(self._id, **kwargs)


class StageContext:
    """What the runner hands to plugins (the contract :class:`pxp.core.contracts.StageContext`): paths,
    settings and progress for the current run."""

    def __init__(self, spec, run_dir: Path, registry: Registry, console: Console, progress: Progress | None,
                 device: str = "cpu", workers: int | None = None, executor: Executor | None = None,
                 events: RunEvents | None = None):
        self.spec, self.run_dir, self.registry, self.console = spec, Path(run_dir), registry, console
        self.paths = RunDir(run_dir)
        self.executor = executor or make_executor("local")  # where every unit's tasks run
        self._progress, self.device = progress, device
        self.workers = workers or spec.workers or os.cpu_count() or 1
        self.seed = spec.seed
        self.unit: str | None = None  # name of the dataset / policy / evaluation being run
        self.events = events or RunEvents(registry, RunInfo.of(run_dir, spec), log=self.log)  # pxp.core.events

    def log(self, msg: str) -> None:
        self.console.log(msg)

    @contextlib.contextmanager
    def progress(self, description: str, total: float | None = None):
        task_id = self._progress.add_task(description, total=total) if self._progress else None
        try:
            yield ProgressTask(self._progress, task_id)
        finally:
            if self._progress is not None:
                self._progress.stop_task(task_id)

    def dataset_path(self, name: str) -> Path:
        self.paths.data.mkdir(parents=True, exist_ok=True)
        return self.paths.dataset(name)

    def checkpoint_dir(self, name: str) -> Path:
        if name.startswith(BUILTIN):
            return Path(name)  # a built-in policy (builtin:expert, …): nothing to load
        if name not in self.spec.policies and ("/" in name or Path(name).exists()):
            return Path(name)  # init_from a checkpoint directory outside the run
        return self.paths.checkpoint(name)

    def eval_dir(self, name: str) -> Path:
        return self.paths.evaluation(name)

    def scene_config(self, **overrides):
        return scene_config(self.spec, overrides)

    def make_scene(self, config=None):
        return self.registry.create("scenes", config or self.spec.scene)

    def create(self, kind: str, config, *args, **kwargs):
        return self.registry.create(kind, config, *args, **kwargs)

    def resolve_policies(self, names) -> list[str]:
        return resolve_policy_names(self.spec, names)


# ---------------------------------------------------------------- unit cache

class UnitCache:
    def __init__(self, run_dir: Path):
        self._path = RunDir(run_dir).marker

    def get(self, stage: str, name: str) -> dict | None:
        return io.read_json(self._path(stage, name))

    def start(self, stage: str, name: str, digest: str, code=()) -> None:
        io.write_json(self._path(stage, name), {"hash": digest, "status": "started", "started": time.time(),
                                                "code": list(code)})

    def finish(self, stage: str, name: str, digest: str, result: dict, code=()) -> None:
        io.write_json(self._path(stage, name), {"hash": digest, "status": "done", "finished": time.time(), "result": result,
                                                "code": list(code)})

    def fail(self, stage: str, name: str, digest: str, result: dict, code=()) -> None:
        """Finished with failures: never taken for done, so the next run retries what failed."""
        io.write_json(self._path(stage, name), {"hash": digest, "status": "failed", "finished": time.time(), "result": result,
                                                "code": list(code)})


def _remove(paths) -> None:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ---------------------------------------------------------------- the runner

class Runner:
    def __init__(self, spec, run_dir: Path, *, registry: Registry | None = None, console: Console | None = None,
                 force: bool = False, device: str | None = None, workers: int | None = None, quiet: bool = False,
                 executor: str | None = None, address: str | None = None):
        self.spec, self.run_dir = spec, Path(run_dir)
        self.registry = registry or get_registry()
        self.console = console or Console(stderr=True, quiet=quiet)
        self.force, self.cache = force, UnitCache(self.run_dir)
        self._device, self._workers = device, workers
        self.executor_name, self._address = resolve_executor(executor, spec), address
        self.hashes: dict[tuple[str, str], str] = {}
        self._code_keys = CodeKeys(self.registry)
        self.results: dict[str, dict] = {"datasets": {}, "training": {}, "evaluation": {}}

    # -- hashes: a unit's hash covers its config, the code of its plugins and the hashes of what it consumes
    def dataset_hash(self, name: str) -> str:
        cfg = self.spec.datasets[name]
        scene = scene_config(self.spec, getattr(cfg, "scene", None))
        return config_key("dataset", cfg, scene, *self._smoke, self.unit_code("datasets", name))

    def policy_hash(self, name: str) -> str:
        if name.startswith(BUILTIN):
            return name
        pol = self.spec.policies[name]
        init = self.policy_hash(pol.init_from) if pol.init_from in self.spec.policies else pol.init_from
        return config_key("policy", pol, self.dataset_hash(pol.dataset), init, self.spec.seed, *self._smoke,
                          self.unit_code("training", name))

    def evaluation_hash(self, name: str) -> str:
        cfg = self.spec.evaluations[name]
        pols = [self.policy_hash(p) for p in resolve_policy_names(self.spec, referenced_policies(cfg))]
        return config_key("evaluation", cfg, scene_config(self.spec, getattr(cfg, "scene", None)), pols, self.spec.seed,
                          *self._smoke, self.unit_code("evaluation", name))

    def unit_code(self, stage: str, name: str) -> list[dict]:
        """The plugins a unit runs (name, distribution, version, source hash from a working tree)."""
        if stage == "datasets":
            cfg = self.spec.datasets[name]
            parts = [("datasets", cfg), ("scenes", scene_config(self.spec, getattr(cfg, "scene", None)))]
        elif stage == "training":
            pol = self.spec.policies[name]
            parts = [("backbones", pol.backbone), ("heads", pol.head), ("objectives", pol.objective)]
        else:
            cfg = self.spec.evaluations[name]
            parts = [("evaluators", cfg), ("scenes", scene_config(self.spec, getattr(cfg, "scene", None)))]
        return self._code_keys.of(*parts)

    @property
    def _smoke(self) -> tuple:
        """Smoke units never share a hash with real ones (real runs' hashes are unchanged)."""
        return ("smoke",) if getattr(self.spec, "smoke", False) else ()

    def run(self, stages=STAGES) -> Path:
        manifest.check_smoke(self.run_dir, getattr(self.spec, "smoke", False))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(self.run_dir):
            self._run(stages)
        failed = self._failed_units()
        if failed:
            raise PxpError("; ".join(failed) + " — the report counts them; rerun the same command to retry only those")
        return self.run_dir

    def _run(self, stages) -> None:
        if "evaluation" in stages and "training" not in stages:  # the checkpoints on disk are what gets evaluated
            _check_checkpoints_match(self.spec, self.run_dir, f"spec {self.spec.name!r}")
        drift = None
        if set(stages) & {"datasets", "evaluation"}:
            check_scene_runs_here(self.spec.scene)  # once here, not as one failed episode per task
            if ("datasets" in stages and self.spec.datasets) or ("evaluation" in stages and self.spec.evaluations):
                drift = doctor.preflight(self.registry, self.spec.scene.type, self.console.log)  # recorded, never fatal
        io.write_text(RunDir(self.run_dir).spec, dump_spec(self.spec))
        device = resolve_device(self._device or self.spec.device) if set(stages) & {"training", "evaluation"} else "cpu"
        executor = make_executor(self.executor_name, self._address, shared_root=self.run_dir)
        events = RunEvents(self.registry, RunInfo.of(self.run_dir, self.spec), log=self.console.log)
        try:
            with self._progress() as progress, keep_inline_cache():
                ctx = StageContext(self.spec, self.run_dir, self.registry, self.console, progress, device, self._workers,
                                   executor, events)
                manifest.write(self.run_dir, self.spec, self.registry, device=device, drift=drift)
                for stage in STAGES:
                    if stage in stages:
                        getattr(self, f"_stage_{stage}")(ctx)
                        manifest.write(self.run_dir, self.spec, self.registry, device=device, units=self._unit_records(),
                                       drift=drift)
                events.fire("pxp_run_done", results=io.read_json(self.run_dir / "results.json"))
        finally:
            events.close()
            executor.close()

    def _failed_units(self) -> list[str]:
        out = []
        for name, res in self.results["evaluation"].items():
            if res.get("errors"):
                out.append(f"evaluation {name}: {res['errors']} of {res.get('episodes', '?')} episodes failed"
                           + (f" ({res['first_error']})" if res.get("first_error") else ""))
        return out

    def _progress(self):
        return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)

    def _unit(self, ctx: StageContext, stage: str, name: str, digest: str, outputs, work, verify=None, stale=()):
        """Run ``work()`` unless a done marker with ``digest`` exists and ``verify()`` finds the outputs
        intact (it returns None, or why they are not; then ``stale`` is removed first); returns the
        unit's result dict."""
        marker = self.cache.get(stage, name)
        if marker and marker["hash"] == digest and marker["status"] == "done" and not self.force:
            problem = verify() if verify else None
            if problem is None:
                self.console.log(f"[dim]{stage}: {name} is up to date (cached {digest})[/dim]")
                result = marker.get("result", {})
                ctx.events.fire("pxp_unit_done", stage=stage, unit=name, status="cached", result=result, seconds=0.0)
                return result
            self.console.log(f"[yellow]{stage}: recomputing {name}: {problem}[/yellow]")
            _remove(stale)
        elif self.force or (marker and marker["hash"] != digest):
            _remove(outputs)  # config changed (or --force): old outputs no longer describe this unit
        elif marker and marker["status"] == "failed":
            self.console.log(f"{stage}: retrying what failed in {name} ({_failure_text(marker)})")
        elif marker:
            self.console.log(f"{stage}: resuming {name}")
        code = self.unit_code(stage, name)  # recorded in the marker, so the manifest says what code made it
        self.cache.start(stage, name, digest, code)
        ctx.unit = name
        t0 = time.time()
        result = dict(work() or {})
        result.setdefault("seconds", round(time.time() - t0, 2))
        if result.get("errors"):
            self.cache.fail(stage, name, digest, result, code)
            self.console.log(f"[red]{stage}: {name}: {_failure_text({'result': result})}; not cached as done[/red]")
        else:
            self.cache.finish(stage, name, digest, result, code)
            self.console.log(f"{stage}: {name} done in {result['seconds']:.1f}s")
        ctx.events.fire("pxp_unit_done", stage=stage, unit=name, status="failed" if result.get("errors") else "done",
                        result=result, seconds=float(result["seconds"]))
        return result

    def _stage_datasets(self, ctx: StageContext) -> None:
        for name, cfg in self.spec.datasets.items():
            path = ctx.dataset_path(name)
            digest = self.dataset_hash(name)
            work = lambda cfg=cfg, path=path: self.registry.create("datasets", cfg).generate(path, ctx)
            verify = lambda cfg=cfg, path=path: _dataset_problem(self.registry.create("datasets", cfg), path)
            self.results["datasets"][name] = self._unit(ctx, "datasets", name, digest,
                                                        [path, ctx.paths.dataset_partial(name)], work, verify, [path])

    def _stage_training(self, ctx: StageContext) -> None:
        from .training_unit import train_through  # torch is imported only when training is needed

        if ctx.executor.remote:
            return self._train_on_cluster(ctx, train_through)
        for name in training_order(self.spec):
            pol = self.spec.policies[name]
            work = lambda name=name, pol=pol: train_through(ctx.executor, name, pol, ctx)
            verify = lambda name=name: _checkpoint_problem(ctx.checkpoint_dir(name))
            self.results["training"][name] = self._unit(ctx, "training", name, self.policy_hash(name),
                                                        [ctx.checkpoint_dir(name)], work, verify, [ctx.checkpoint_dir(name)])

    def _train_on_cluster(self, ctx: StageContext, train_through) -> None:
        """The units of a wave (none waits on another's init_from) train at once on the cluster, each awaited
        by a driver thread that runs the usual cache bookkeeping around it."""
        from concurrent.futures import ThreadPoolExecutor

        for wave in training_waves(self.spec):
            with ThreadPoolExecutor(len(wave)) as threads:
                futures = {name: threads.submit(
                    self._unit, ctx, "training", name, self.policy_hash(name), [ctx.checkpoint_dir(name)],
                    lambda name=name: train_through(ctx.executor, name, self.spec.policies[name], ctx),
                    lambda name=name: _checkpoint_problem(ctx.checkpoint_dir(name)), [ctx.checkpoint_dir(name)])
                    for name in wave}
            for name, fut in futures.items():
                self.results["training"][name] = fut.result()

    def _stage_evaluation(self, ctx: StageContext) -> None:
        for name, cfg in self.spec.evaluations.items():
            def work(name=name, cfg=cfg):
                evaluator = self.registry.create("evaluators", cfg)
                episodes = evaluator.run(ctx)
                summary = evaluator.summarize(episodes)
                io.write_json(ctx.paths.eval_result(name),  # its config too: reports need it after another spec's run
                              {"evaluation": name, "evaluator": cfg.type, "config": cfg.model_dump(mode="json"),
                               "episodes": episodes, "summary": summary})
                errors = [e["error"] for e in episodes if e.get("error")]
                first = next((e for e in errors if e.startswith("skipped:")), errors[0] if errors else None)  # says why
                return {"episodes": len(episodes), "errors": len(errors), **({"first_error": first} if errors else {})}
            verify = lambda name=name: _evaluation_problem(ctx.paths, name)
            self.results["evaluation"][name] = self._unit(ctx, "evaluation", name, self.evaluation_hash(name),
                                                          [ctx.eval_dir(name)], work, verify, [ctx.paths.eval_result(name)])
        collect_results(self.run_dir, self.spec)

    def _stage_report(self, ctx: StageContext) -> None:
        from .report import write_report

        io.remove_torn(ctx.paths.plots)  # temp files of a report that was killed mid-write
        path = write_report(self.run_dir, ctx)
        self.console.log(f"report: {path}")

    def _unit_records(self) -> dict:
        out = {}
        for stage in ("datasets", "training", "evaluation"):
            names = {"datasets": self.spec.datasets, "training": self.spec.policies, "evaluation": self.spec.evaluations}[stage]
            out[stage] = {n: (self.cache.get(stage, n) or {}) for n in names}
        return out


def config_key(*parts) -> str:
    return io.config_hash(FORMAT_VERSION, *parts)


def training_order(spec) -> list[str]:
    """Policies ordered so that every ``init_from`` source trains first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        src = spec.policies[name].init_from
        if src in spec.policies:
            visit(src)
        order.append(name)

    for name in spec.policies:
        visit(name)
    return order


def training_waves(spec) -> list[list[str]]:
    """training_order split into waves: a policy comes one wave after the policy it is initialised from."""
    level: dict[str, int] = {}
    for name in training_order(spec):
        src = spec.policies[name].init_from
        level[name] = level[src] + 1 if src in spec.policies else 0
    return [[n for n in level if level[n] == k] for k in range(max(level.values(), default=-1) + 1)]


def resolve_executor(cli_value: str | None, spec) -> str:
    """Where tasks run: --executor, else PXP_EXECUTOR, else the spec's ``executor:``, else the local pool."""
    name = cli_value or os.environ.get("PXP_EXECUTOR") or getattr(spec, "executor", None) or "local"
    if name not in EXECUTORS:
        raise PxpError(f"PXP_EXECUTOR={name!r} is not an executor; choose one of {', '.join(EXECUTORS)}")
    return name


def check_scene_runs_here(scene_cfg) -> None:
    """The scene config's ``preflight()`` (e.g. a rendering backend it cannot use): one line, exit 2."""
    problem = scene_cfg.preflight()
    if problem:
        err = PxpError(problem)
        err.exit_code = 2
        raise err


def resolve_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise PxpError("the spec asks for device: cuda but no CUDA device is available (use device: auto or cpu)")
    return "cpu"


# ---------------------------------------------------------------- is a cached unit's output intact?

def _failure_text(marker: dict) -> str:
    res = marker.get("result") or {}
    first = f"; first: {res['first_error']}" if res.get("first_error") else ""
    return f"{res.get('errors', '?')} of {res.get('episodes', '?')} episodes failed{first}"


def _dataset_problem(generator, path: Path) -> str | None:
    """None when the dataset file exists and the generator's ``verify(path)`` accepts it."""
    if not Path(path).exists():
        return f"{path} is missing"
    return generator.verify(path)


def _checkpoint_problem(directory: Path) -> str | None:
    """None when the checkpoint's marker is complete and its model file matches the recorded sha256."""
    from .policy import MARKER, read_marker

    directory = Path(directory)
    marker = read_marker(directory)
    if marker is None:
        return f"{directory / MARKER} is missing or incomplete"
    for key, fname in marker.get("files", {}).items():
        f = directory / fname
        if not f.is_file():
            return f"{f} is missing"
        if key == "model" and io.file_sha256(f) != marker.get("sha256", {}).get(key):
            return f"{f} does not match its sha256 in {MARKER}"
    return None


def _evaluation_problem(run: RunDir, name: str) -> str | None:
    """None when result.json exists and holds the journal's latest record of every episode."""
    path, journal_path = run.eval_result(name), run.eval_journal(name)
    result = io.read_json(path)
    if not isinstance(result, dict) or not isinstance(result.get("episodes"), list):
        return f"{path} is missing or unreadable"
    journal = {ep.get("key"): ep for ep in io.read_jsonl(journal_path)}
    if not journal:
        return None  # an evaluator that keeps no journal (it does not use run_episodes)
    for ep in result["episodes"]:
        rec = journal.get(ep.get("key"))
        if rec is None or (rec.get("outcome"), rec.get("error")) != (ep.get("outcome"), ep.get("error")):
            return f"{path} does not match its journal {journal_path.name}"
    return None


# ---------------------------------------------------------------- pxp eval: evaluate a finished run again

def evaluate_run(run_dir, episodes_override: int | None = None, workers: int | None = None, registry=None,
                 sets=(), device: str | None = None, report: bool = False, executor: str | None = None,
                 address: str | None = None) -> Path:
    """Re-evaluate a finished run's saved checkpoints and rewrite results.json (``pxp eval RUN_DIR``).

    ``episodes_override`` sets every evaluation's ``episodes_per_position`` (e.g. more episodes for
    tighter intervals) and ``sets`` are ``key=value`` overrides of the resolved spec; the evaluations
    always re-run (``force``), datasets and training are untouched; ``report`` rewrites the report too.
    """
    run = RunDir(run_dir)
    raw = apply_overrides(run.spec_data(), sets)
    if episodes_override is not None:
        for cfg in (raw.get("evaluations") or {}).values():
            cfg["episodes_per_position"] = int(episodes_override)
    spec = validate_spec(raw, registry, source=str(run.spec))
    stages = ("evaluation", "report") if report else ("evaluation",)
    Runner(spec, run.root, registry=registry, workers=workers, device=device, force=True, executor=executor,
           address=address).run(stages)
    return run.results


def _check_checkpoints_match(spec, run_dir: Path, source: str) -> None:
    """Evaluation without training (``pxp eval``, ``pxp run --stage evaluation``) uses the checkpoints as
    trained: a spec whose backbone or head differs from them would be reported under a config the
    weights never had."""
    from .policy import read_marker

    problems = []
    for name, pol in spec.policies.items():
        marker = read_marker(RunDir(run_dir).checkpoint(name))
        trained = (marker or {}).get("policy") or {}
        for part in ("backbone", "head"):
            now = getattr(pol, part).model_dump(mode="json")
            if part in trained and _differs(trained[part], now, part):
                changed = sorted(k for k in set(now) | set(trained[part]) if now.get(k) != trained[part].get(k))
                problems.append((f"policies.{name}.{part}",
                                 f"{', '.join(changed)} differ from the checkpoint in checkpoints/{name}; "
                                 f"undo the edit, or run `pxp run` to train this config"))
    if problems:
        raise SpecError(problems, source=source)


def _differs(trained: dict, now: dict, part: str) -> bool:
    if part == "backbone":  # evaluation loads the trained tensors, never the pretrained weights file
        trained, now = {k: v for k, v in trained.items() if k != "weights"}, {k: v for k, v in now.items() if k != "weights"}
    return trained != now
