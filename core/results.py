"""results.json: the episode record's schema, its one writer and the one rule that pairs episodes.

Every evaluation's episodes and summary are collected into ``<run>/results.json`` (docs/evaluation.md).
Two policies' episodes are *paired* (for a paired test, e.g. McNemar) when cell, offset, view and seed all
agree: :func:`pair_key` is that rule, used by the evaluation driver, its summaries and every report
section, so a summary's test and an evaluator's paired table cannot disagree.
"""
from __future__ import annotations

from pathlib import Path

from . import io
from .rundir import RunDir

EPISODE_FIELDS = ("evaluation", "evaluator", "policy", "cell", "offset", "view", "seed", "outcome", "steps",
                  "error", "diagnostics", "video")


def pair_key(cell, offset, view, seed) -> str:
    """Two policies' episodes are paired when cell, offset, view and seed all agree."""
    off = ",".join(f"{float(x):.4f}" for x in (offset if offset is not None else (0.0, 0.0)))
    v = "default" if view is None else ",".join(f"{float(x):.3f}" for x in view)
    return f"{cell}|{off}|{v}|{int(seed or 0)}"


def episode_pair_key(ep: dict) -> str:
    """:func:`pair_key` of an episode record."""
    return pair_key(ep.get("cell"), ep.get("offset") or (0, 0), ep.get("view"), ep.get("seed", 0))


def position_key(ep: dict) -> str:
    """Episodes at the same position (cell, offset and view; any seed) form a cluster: they share the position's
    difficulty, so they are not independent draws (docs/evaluation.md, "Replicates and clustering")."""
    return episode_pair_key(ep).rsplit("|", 1)[0]


def cluster_keys(episodes: list[dict]) -> list[str]:
    """Each episode's cluster: its position, or, when every episode is at one position (the distractor scene),
    the episode itself, since then the inference is about that one position."""
    positions = [position_key(e) for e in episodes]
    return positions if len(set(positions)) > 1 else [episode_pair_key(e) for e in episodes]


def public_episode(ep: dict) -> dict:
    """The documented episode fields first, then anything extra (labels, key)."""
    return {**{k: ep.get(k) for k in EPISODE_FIELDS}, **{k: v for k, v in ep.items() if k not in EPISODE_FIELDS}}


def write_results(run_dir, episodes: list[dict], summaries: dict, **extra) -> Path:
    """Write ``run_dir/results.json`` atomically (temp file + os.replace): see docs/evaluation.md."""
    path = RunDir(run_dir).results
    io.write_json(path, {**extra, "episodes": [public_episode(e) for e in episodes], "summaries": summaries})
    return path


def collect_results(run_dir, spec) -> Path:
    """Collect every evaluation's ``evals/<name>/result.json`` (episodes and summary) into results.json: the
    spec's evaluations in its order, then any other evaluation run into this directory (by another spec, e.g.
    larger samples of the same policies), so that evaluating one spec never drops another's results. With
    replicates, each summary names the evaluation it replicates (``replicate_of``) and every record its
    ``replicate`` index; without, results.json is as it always was."""
    from .spec import replicate_index

    replicated = getattr(spec, "replicas", None) or {}
    index = replicate_index(spec)
    run = RunDir(run_dir)
    others = sorted(p.name for p in run.evals.glob("*")
                    if p.name not in spec.evaluations and run.eval_result(p.name).exists())
    episodes, summaries, configs = [], {}, {}
    for name in [*spec.evaluations, *others]:
        data = io.read_json(run.eval_result(name))
        if data:
            tag = {}
            if replicated and name in index:
                tag = {"replicate_of": index[name][0], "replicate": index[name][1]}
            episodes.extend({**e, **({"replicate": tag["replicate"]} if tag else {})} for e in data["episodes"])
            summaries[name] = {"evaluator": data["evaluator"], **tag, **(data.get("summary") or {})}
            configs[name] = data.get("config")
    extra = {"replicates": spec.replicates} if replicated else {}
    return write_results(run_dir, episodes, summaries, spec=spec.name, **extra, configs=configs)
