"""Evaluators: what to roll out, running it in parallel, and scoring it.

An evaluator plugin subclasses :class:`EpisodeEvaluator` (an implementation of the contract
:class:`pxp.core.contracts.Evaluator`) and usually only writes :meth:`EpisodeEvaluator.episodes` (the list
of :class:`EpisodeTask` to run) and, if it has its own breakdown, :meth:`EpisodeEvaluator.groups`.
Running (worker pool, crash capture, resume, videos) and scoring (rates with Wilson intervals,
weighted score, paired McNemar) are shared here, so every evaluator's numbers mean the same thing.

Worker processes receive only picklable data (checkpoint path, device, scene config, offsets): each
builds its scene and loads each policy once (``execution.worker_cache``) and never sees the run context.
"""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
from pydantic import Field

from pxp.core import contracts, execution, io
from pxp.core.execution import input_dir, output_file
from pxp.core.rundir import RunDir
from pxp.core.results import EPISODE_FIELDS, cluster_keys, episode_pair_key, pair_key  # noqa: F401  (re-exported)
from . import stats

BUILTIN_PREFIX = "builtin:"  # checkpoint "builtin:expert" / "builtin:home": test and benchmark policies
# Fault-injection policies (tests, and checking a setup's failure handling): each fails in predict.
FAULT_POLICIES = ("crash", "hang", "segfault")
SETUP_TIMEOUT = 600.0  # seconds a worker may take to load a policy and build a scene (slow under load)
# Episodes of one policy failing in a row (raised, hung, killed their worker) after which its episodes not yet
# started are skipped: a fault that repeats is the policy's, and retrying it to the end wastes the machine.
FAIL_FAST = 3


@dataclass(frozen=True)
class EpisodeTask:
    """One episode to run. Everything a worker needs, nothing that does not pickle."""

    evaluation: str
    evaluator: str
    policy: str
    checkpoint: str = input_dir()  # a checkpoint directory, or "builtin:expert" / "builtin:home"
    scene: Any  # a validated scene config model (picklable; rebuilt into a scene in the worker)
    offset: tuple = (0.0, 0.0)
    view: tuple | None = None
    seed: int = 0
    cell: Any = None  # grid cell index / viewpoint label: what the summary groups by
    device: str = "cpu"
    max_steps: int = 600
    replan_every: Optional[int] = None
    steps_per_target: int | None = None  # explicit, from the evaluator config
    trained_stride: int | None = None  # the policy's train.target_stride (the fallback)
    video_path: str | None = output_file(default=None)  # record this episode to this mp4
    labels: dict = field(default_factory=dict)  # evaluator-specific (theta, phi, demos, init …)
    plugins: Any = None  # the run's RegistryRecipe: the worker loads the same plugins (None: the installed ones)

    @property
    def key(self) -> str:
        """Identifies the episode within an evaluation (resume) and pairs policies (McNemar)."""
        return f"{self.policy}|{pair_key(self.cell, self.offset, self.view, self.seed)}"


# ----------------------------------------------------------------------------- the worker side

def run_episode(task: EpisodeTask) -> dict:
    """Worker entry point: roll out one task (module-level so it pickles for spawn)."""
    from .rollout import rollout

    # The policy (torch, timm → triton) loads BEFORE the scene renders: importing triton after Mesa's
    # llvmpipe has created an EGL context segfaults (two LLVMs in one process; measured here).
    from pxp.core.plugins import registry_from_recipe

    registry = registry_from_recipe(task.plugins)
    policy = execution.worker_cache((task.checkpoint, task.device), lambda: _load_policy(task, registry), slot="policy")
    scene = execution.worker_cache(task.scene.model_dump_json(), lambda: registry.create("scenes", task.scene),
                                   slot="scene")
    execution.start_clock()  # the episode's time limit counts from here, not from the worker's start-up
    # privileged test policies (the expert) plan from the scene first; for the others it does nothing
    policy.prepare(scene, offset=task.offset, view=task.view, seed=task.seed)
    ep = rollout(scene, policy, offset=task.offset, view=task.view, seed=task.seed, max_steps=task.max_steps,
                 replan_every=task.replan_every, steps_per_target=task.steps_per_target,
                 trained_stride=task.trained_stride,
                 record_frames=task.video_path is not None, meta=_meta(task))
    ep["video"] = _write_video(task, ep)
    return ep


def _load_policy(task: EpisodeTask, registry):
    if task.checkpoint.startswith(BUILTIN_PREFIX):
        from . import rollout

        name = task.checkpoint[len(BUILTIN_PREFIX):]
        return FaultPolicy(name) if name in FAULT_POLICIES else rollout.builtin_policy(name)
    from .policy import load_policy

    return load_policy(task.checkpoint, task.device, registry=registry)


class FaultPolicy(contracts.RolloutPolicy):
    """``builtin:crash`` raises, ``builtin:hang`` blocks forever, ``builtin:segfault`` kills its process
    with SIGSEGV, each on its first prediction (after the scene has been reset, as a real policy would)."""

    horizon = 1

    def __init__(self, fault: str):
        self.fault = fault

    def reset(self) -> None:
        pass

    def predict(self, image, state, camera):
        import signal
        import time

        if self.fault == "hang":
            while True:
                time.sleep(3600)
        if self.fault == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        raise RuntimeError("builtin:crash policy raised on purpose")


def _meta(task: EpisodeTask) -> dict:
    return {"evaluation": task.evaluation, "evaluator": task.evaluator, "policy": task.policy,
            "cell": task.cell, "labels": dict(task.labels), "key": task.key}


def _write_video(task: EpisodeTask, ep: dict) -> str | None:
    """Write the recorded frames (if any) as an mp4 with the stage badge; drop them from the episode."""
    frames, stages = ep.pop("frames", None), ep.pop("frame_stages", None)
    if not task.video_path or not frames:
        return None
    from .video import write_video

    caption = f"{task.policy}  cell {task.cell}  seed {task.seed}"
    hold = 20  # the last frame stays up for a second at 20 fps, so the outcome badge can be read
    write_video(task.video_path, np.stack(frames + frames[-1:] * hold), stages=list(stages) + list(stages[-1:]) * hold,
                caption=caption, fps=20, badges=scene_outcomes(task.scene).badges)
    return str(task.video_path)


# ----------------------------------------------------------------------------- the driver side

def run_episodes(tasks: Iterable[EpisodeTask], *, workers: int | None = 1, progress=None,
                 journal: Path | None = None, log=None, timeout: float | None = None, retries: int = 2,
                 setup_timeout: float | None = SETUP_TIMEOUT, fail_fast: int = FAIL_FAST,
                 executor: execution.Executor | None = None, on_episode=None) -> list[dict]:
    """Run tasks on ``executor`` (default: the local pool); a crash becomes an episode with ``error`` set.

    ``journal``: a JSONL file each finished episode is appended to as it arrives. Episodes already in
    it (without error) are not run again, so an interrupted evaluation resumes where it stopped and a
    rerun retries exactly the failed ones. ``timeout`` (seconds per episode, counted once its scene and
    policy are loaded; loading may take ``setup_timeout``) and ``retries`` (runs after a worker died)
    follow :func:`pxp.core.execution.run_tasks` (no time limit with ``workers=1``, in-process); a timed-out
    episode is not run again. After ``fail_fast`` episodes of one policy fail in a row (0: never), its
    episodes not yet started come back as errors with one reason, unrun, so a rerun retries them.
    ``on_episode(episode)`` is called here, in the driver, as each episode's record arrives.
    Returns the episodes in task order.
    """
    tasks = list(tasks)
    done = _journaled(journal, tasks)
    todo = [t for t in tasks if t.key not in done]
    if progress is not None and done:
        progress.advance(len(tasks) - len(todo))
    n = execution.default_workers() if workers is None else int(workers)
    init = (_limit_threads, (max(1, execution.default_workers() // n),)) if n > 1 else (None, ())
    streaks = FailureStreaks(fail_fast)
    executor = executor or execution.LocalExecutor()
    for r in executor.run_tasks(run_episode, todo, workers=n, progress=progress, initializer=init[0],
                                initargs=init[1], timeout=timeout, retries=retries,
                                setup_timeout=setup_timeout if timeout else None, skip=streaks.reason):
        ep = r.value if r.ok else error_episode(r.task, r.error)
        if not r.skipped:
            stopped = streaks.record(r.task.policy, r.error)
            if log is not None and not r.ok:
                log(f"episode {r.task.key} failed: {r.error}")
            if log is not None and stopped:
                log(f"[red]{stopped}[/red]")
        done[r.task.key] = ep
        if journal is not None:
            io.append_jsonl(journal, ep)
        if on_episode is not None:
            on_episode(ep)
    return [done[t.key] for t in tasks]


class FailureStreaks:
    """Consecutive failed episodes per policy; at ``limit`` the policy's remaining episodes are skipped."""

    def __init__(self, limit: int):
        self.limit, self.streak, self.stopped = int(limit), {}, {}

    def record(self, policy: str, error: str | None) -> str | None:
        """Count one finished episode; returns the skip reason when this one stops the policy."""
        n = self.streak[policy] = 0 if error is None else self.streak.get(policy, 0) + 1
        if self.limit and n >= self.limit and policy not in self.stopped:
            self.stopped[policy] = (f"skipped: {policy} failed {n} episodes in a row (last: {error}); "
                                    f"its other episodes were not run, a rerun retries them")
            return self.stopped[policy]
        return None

    def reason(self, task: EpisodeTask) -> str | None:
        return self.stopped.get(task.policy)


def _limit_threads(threads: int) -> None:
    """Worker initializer: N workers × all-core torch thread pools would oversubscribe the CPU.
    Runs before torch is imported in the worker, so the environment variables take effect."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def error_episode(task: EpisodeTask, message: str) -> dict:
    """The record of an episode that crashed: no outcome, the error's one-line message."""
    return {**_meta(task), "offset": [float(x) for x in task.offset],
            "view": None if task.view is None else [float(x) for x in task.view], "seed": int(task.seed),
            "outcome": None, "steps": 0, "error": message or "unknown error", "diagnostics": {}, "video": None}


def _journaled(journal: Path | None, tasks: list[EpisodeTask]) -> dict[str, dict]:
    if journal is None:
        return {}
    wanted = {t.key for t in tasks}
    return {ep["key"]: ep for ep in io.read_jsonl(journal) if ep.get("key") in wanted and not ep.get("error")}


# ----------------------------------------------------------------------------- scoring

def summarize_episodes(episodes: list[dict], group_by: Iterable[str] = (), outcomes=None,
                       compare_within: str | None = None) -> dict:
    """Per-policy aggregates, optional per-group breakdowns, and paired tests between policies.

    ``group_by``: label names (keys of ``episode["labels"]``, or ``"cell"``) to break each policy down by;
    ``outcomes``: the scene's :class:`pxp.core.contracts.Outcomes`; ``compare_within``: a label name, to test
    only policies whose episodes share its value (e.g. ``demos``: never one demo count against another).
    """
    by_policy: dict[str, list[dict]] = {}
    for ep in episodes:
        by_policy.setdefault(ep["policy"], []).append(ep)
    summary = {"policies": {}, "paired": []}
    for name, eps in by_policy.items():
        entry = stats.summarize_outcomes([e["outcome"] for e in eps], outcomes)
        entry["clustered"] = clustered_success(eps, outcomes)
        entry["failures"] = _failure_counts(eps)
        entry["groups"] = {g: _grouped(eps, g, outcomes) for g in group_by}
        summary["policies"][name] = entry
    paired = {name: {episode_pair_key(e): e["outcome"] for e in eps} for name, eps in by_policy.items()}
    kind = None if compare_within is None else {n: label_of(eps[0], compare_within) for n, eps in by_policy.items()}
    summary["paired"] = stats.all_paired_tests(paired, outcomes, kind)
    return summary


def clustered_success(eps: list[dict], outcomes, replicate=lambda ep: 0) -> dict:
    """The success rate with an interval that accounts for clustering by position (and by replicate, given
    ``replicate``): :func:`pxp.experiment.stats.clustered_rate`."""
    valid = [e for e in eps if e.get("outcome") in outcomes.weights]
    return stats.clustered_rate((replicate(e), c, float(e["outcome"] == outcomes.success))
                                for e, c in zip(valid, cluster_keys(valid)))


def paired_records(a_eps: list[dict], b_eps: list[dict], value) -> list[tuple]:
    """(replicate, cluster, value(a), value(b)) for every pair of episodes of two policies in the same replicate
    (:func:`pxp.core.results.episode_pair_key`), for :func:`pxp.experiment.stats.pooled_difference`; ``value``
    maps an outcome to a number, or None to leave the pair out (a crashed episode)."""
    b_by_key = {(e.get("replicate", 0), episode_pair_key(e)): e for e in b_eps}
    pairs = [(a, b_by_key.get((a.get("replicate", 0), episode_pair_key(a)))) for a in a_eps]
    pairs = [(a, b) for a, b in pairs if b is not None and value(a.get("outcome")) is not None
             and value(b.get("outcome")) is not None]
    clusters = cluster_keys([a for a, _ in pairs])
    return [(a.get("replicate", 0), c, value(a["outcome"]), value(b["outcome"])) for (a, b), c in zip(pairs, clusters)]


def label_of(ep: dict, name: str):
    return ep.get(name) if name == "cell" else (ep.get("labels") or {}).get(name)


def _grouped(eps: list[dict], name: str, outcomes) -> dict:
    groups: dict[str, list] = {}
    for e in eps:
        groups.setdefault(_label_str(label_of(e, name)), []).append(e["outcome"])
    return {k: stats.summarize_outcomes(v, outcomes) for k, v in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))}


def _label_str(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_label_str(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _sort_key(s: str):
    try:
        return (0, tuple(float(x) for x in s.split(",")), s)
    except ValueError:
        return (1, (), s)


def _failure_counts(eps: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for e in eps:
        label = "error" if e.get("error") else (e.get("diagnostics") or {}).get("first_failure")
        if label:
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------------------- markdown

def paired_table(summary: dict) -> str:
    tests = summary.get("paired") or []
    if not tests:
        return ""
    rows = ["| A | B | pairs | only A placed | only B placed | A − B [95% CI] | exact McNemar p |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {t['a']} | {t['b']} | {t['pairs']} | {t['only_a']} | {t['only_b']} | {_diff_text(t)} | {t['p_value']:.3g} |"
             for t in tests]
    return "\n".join(rows)


def _diff_text(test: dict) -> str:
    if "diff_ci" not in test:  # a results.json written before the interval existed
        return "–"
    lo, hi = test["diff_ci"]
    return f"{100 * test['diff']:+.0f} pts [{100 * lo:+.0f}, {100 * hi:+.0f}]"


def failure_table(summary: dict) -> str:
    """How unsuccessful episodes first went wrong, per policy (the scene's ``first_failure`` diagnostic)."""
    pols = summary.get("policies", {})
    labels = sorted({k for s in pols.values() for k in s.get("failures", {})})
    if not labels:
        return ""
    rows = ["| policy | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    rows += [f"| {p} | " + " | ".join(str(s.get("failures", {}).get(k, 0)) for k in labels) + " |" for p, s in pols.items()]
    return "\n".join(rows)


# ----------------------------------------------------------------------------- plugin configs and helpers

class EpisodeEvaluatorConfig(contracts.EvaluatorConfig):
    """Fields every :class:`EpisodeEvaluator` takes. Subclasses add ``type: Literal["<name>"] = "<name>"``."""
    policies: list[str] = Field(..., min_length=1, description="policies of this spec (or sweep groups) to evaluate")
    episodes_per_position: int = Field(5, ge=1, description="episodes (seeds) per test position or viewpoint")
    max_steps: int = Field(600, ge=1, description="control steps per episode, at most")
    seed: int = Field(0, description="picks test positions and episode seeds (the same for every policy)")
    scene: dict = Field(default_factory=dict, description="overrides of the spec's scene config")
    videos: int = Field(0, ge=0, description="episodes per policy recorded as mp4")
    replan_every: Optional[int] = Field(
        None, ge=1, description="predicted targets executed before predicting again (default: the whole predicted chunk)")
    steps_per_target: Optional[int] = Field(
        None, ge=1, description="servo steps per target (default: the policy's train.target_stride)")
    episode_timeout: Optional[float] = Field(
        None, gt=0, description="seconds an episode may take before it is recorded as an error and the run "
                                "moves on, counted once the scene and policy are loaded (default: 60 + 1 s per max_steps; "
                                "not enforced with workers: 1)")
    episode_retries: int = Field(
        2, ge=0, le=10, description="runs of an episode again whose worker process died (segfault, OOM kill)")

    def referenced_policies(self) -> list[str]:
        return list(self.policies)

    def scene_overrides(self) -> dict:
        return dict(self.scene or {})

    def smoke(self) -> dict:
        """Overrides at smoke scale (``pxp run --smoke``); subclasses add their own sizes."""
        from pxp.core import smoke

        return {"episodes_per_position": smoke.EPISODES, "max_steps": min(self.max_steps, smoke.MAX_STEPS),
                "videos": min(self.videos, 1)}

    def time_limit(self) -> float:
        """Seconds per episode once its scene and policy are loaded: generous (CPU inference is slow)."""
        return float(self.episode_timeout) if self.episode_timeout else 60.0 + 1.0 * self.max_steps


def episode_seed(*parts: int) -> int:
    """A scene seed from (run seed, evaluator seed, position, episode): the same for every policy,
    so episodes pair up for McNemar, and different for every position and episode."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def scene_outcomes(scene_cfg):
    """The :class:`pxp.core.contracts.Outcomes` a scene's config model declares (its contract requires them)."""
    return scene_cfg.outcomes


def offset_extent(scene_cfg) -> tuple:
    """((dx_min, dx_max), (dy_min, dy_max)), m: where the scene's objects may be shifted to, from its config."""
    extent = scene_cfg.offset_extent()
    if extent is None:
        raise ValueError(f"scene {scene_cfg.type} declares no offset extent; set the evaluator's extent")
    return tuple(tuple(float(v) for v in axis) for axis in extent)


def pick_positions(scene_cfg, split, n: int | None, seed: int, grid=(16, 16), extent=None) -> list[tuple[list, tuple]]:
    """``n`` cells of ``split`` on the position grid as (cell [row, col], offset (dx, dy)).

    The grid spans ``extent`` (default: the scene config's offset extent), rows along dx, columns along
    dy (see pxp.experiment.grid). ``n`` cells are drawn without replacement with ``seed`` (all when None or
    larger than the split), then sorted, so every policy sees the same positions.
    """
    from pxp.experiment.grid import position_grid

    g = position_grid(int(grid[0]), int(grid[1]), extent or offset_extent(scene_cfg))
    cells = g.select(split)
    if n is not None and n < len(cells):
        cells = np.sort(np.random.default_rng(seed).choice(cells, size=n, replace=False))
    return [([int(r), int(c)], (float(dx), float(dy))) for (r, c), (dx, dy) in zip(g.rowcol(cells), g.values(cells))]


# ----------------------------------------------------------------------------- the plugin base class

class EpisodeEvaluator(contracts.Evaluator, abc.ABC):
    """Base class for evaluator plugins that run episodes on the worker pool. ``config`` is the plugin's
    config (an :class:`EpisodeEvaluatorConfig`).

    Subclasses implement :meth:`episodes`; they may override :meth:`groups` (labels to break the
    summary down by), :meth:`summarize` (add to the base summary), :meth:`report_section` and
    ``report_figures``. ``outcomes`` is the scene's :class:`pxp.core.contracts.Outcomes` (set by :meth:`run`).
    """

    outcomes = None

    def __init__(self, config):
        self.config = config

    # -- what to run
    @abc.abstractmethod
    def episodes(self, ctx) -> list[EpisodeTask]:
        """The episodes to run: one task per (policy, position or viewpoint, seed)."""

    def groups(self) -> list[str]:
        return []

    def compare_within(self) -> str | None:
        """A label name: paired tests only between policies whose episodes share its value (None: all pairs)."""
        return None

    # -- running
    def run(self, ctx) -> list[dict]:
        """Run every episode through the worker pool; crashed episodes come back with ``error`` set."""
        name = self.name(ctx)
        self.outcomes = scene_outcomes(ctx.scene_config(**self.config.scene_overrides()))
        tasks = self.with_videos(ctx, self.episodes(ctx))
        ctx.log(f"{name}: {len(tasks)} episodes on {ctx.workers} worker(s)")
        with ctx.progress(f"eval {name}", total=len(tasks)) as bar:
            episodes = run_episodes(tasks, workers=ctx.workers, progress=bar, log=ctx.log, executor=ctx.executor,
                                    journal=RunDir(ctx.run_dir).eval_journal(name),
                                    timeout=self.config.time_limit(), retries=self.config.episode_retries,
                                    on_episode=_episode_event(ctx, name))
        for ep in episodes:  # the report links videos relative to the run directory
            if ep.get("video"):
                ep["video"] = _relative(ep["video"], ctx.run_dir)
        return episodes

    # -- scoring
    def summarize(self, episodes: list[dict]) -> dict:
        if self.outcomes is None:
            raise ValueError(f"{self.config.type}: summarize() needs the scene's outcomes: run(ctx) first, "
                             "or set evaluator.outcomes")
        return summarize_episodes(episodes, self.groups(), self.outcomes, self.compare_within())

    def report_section(self, summary: dict) -> str:
        """Markdown the report adds under this evaluation (the report draws the policy table itself)."""
        parts = [paired_table(summary), failure_table(summary)]
        return "\n\n".join(p for p in parts if p)

    # -- helpers for subclasses
    def name(self, ctx) -> str:
        """The evaluation's name in the spec (the runner sets ``ctx.unit``)."""
        return ctx.unit or self.config.type

    def policy_names(self, ctx, names=None) -> list[str]:
        """Policy names with sweep groups expanded into their members."""
        from pxp.core.spec import resolve_policy_names

        return resolve_policy_names(ctx.spec, self.config.policies if names is None else names)

    def task(self, ctx, policy: str, **kw) -> EpisodeTask:
        """An EpisodeTask with the run's settings filled in (checkpoint, device, scene, limits)."""
        cfg = self.config
        scene = ctx.scene_config(**cfg.scene_overrides())
        defaults = dict(evaluation=self.name(ctx), evaluator=cfg.type, policy=policy,
                        checkpoint=str(ctx.checkpoint_dir(policy)), scene=scene, device=str(ctx.device),
                        max_steps=cfg.max_steps, replan_every=cfg.replan_every,
                        steps_per_target=cfg.steps_per_target, trained_stride=_target_stride(ctx, policy),
                        plugins=_recipe(ctx))
        return EpisodeTask(**{**defaults, **kw})

    def with_videos(self, ctx, tasks: list[EpisodeTask]) -> list[EpisodeTask]:
        """Record the first ``config.videos`` episodes of each policy (the same positions for all)."""
        n = self.config.videos
        seen: dict[str, int] = {}
        out = []
        for t in tasks:
            k = seen.get(t.policy, 0)
            if k < n:
                path = RunDir(ctx.run_dir).eval_video(self.name(ctx), t.policy, k)
                t = _replace(t, video_path=str(path))
            seen[t.policy] = k + 1
            out.append(t)
        return out


def _episode_event(ctx, name: str):
    """``pxp_episode_done`` for evaluation ``name`` (None: the context has no events)."""
    events = getattr(ctx, "events", None)
    if events is None:
        return None
    return lambda ep: events.fire("pxp_episode_done", evaluation=name, episode=ep)


def _recipe(ctx):
    return ctx.registry.recipe


def _relative(path: str, root) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _target_stride(ctx, policy: str) -> int | None:
    """The frames between the targets the policy was trained on: about the steps to reach one."""
    pol = ctx.spec.policies.get(policy)  # None for builtin: policies
    return pol.train.target_stride if pol is not None else None


def _replace(task: EpisodeTask, **kw) -> EpisodeTask:
    return EpisodeTask(**{**{f: getattr(task, f) for f in task.__dataclass_fields__}, **kw})
