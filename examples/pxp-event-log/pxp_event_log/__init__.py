"""pxp-event-log: every run's events as JSON lines in ``<run>/event-log.jsonl``, for scripts that watch a run.

    tail -f runs/quickstart/event-log.jsonl | jq -c 'select(.event == "episode")'

Installed, it observes every run (no spec change): a line per logged training step, finished episode,
finished unit and finished run, each with the time and the process that fired it (training steps come from
the process that trains; the rest from the driver).
"""
import os
import time
from pathlib import Path

from pxp.core import io
from pxp.core.hookspecs import hookimpl

LOG = "event-log.jsonl"


def _write(run, event: str, **fields) -> None:
    io.append_jsonl(Path(run.dir) / LOG, {"event": event, "time": round(time.time(), 3), "pid": os.getpid(), **fields})


@hookimpl
def pxp_training_step(run, policy, step, metrics):
    _write(run, "training", policy=policy, step=step, split=metrics.get("split"), loss=metrics.get("loss"))


@hookimpl
def pxp_episode_done(run, evaluation, episode):
    _write(run, "episode", evaluation=evaluation, policy=episode["policy"], outcome=episode["outcome"],
           error=episode.get("error"))


@hookimpl
def pxp_unit_done(run, stage, unit, status, seconds):
    _write(run, "unit", stage=stage, unit=unit, status=status, seconds=seconds)


@hookimpl
def pxp_run_done(run, results):
    _write(run, "run", name=run.name, episodes=len((results or {}).get("episodes") or []))
