"""The TensorBoard logger's observer: event hooks that write scalars with torch's SummaryWriter.

Curves are written live by the process that trains (flushed at every logged step, so a running
``tensorboard`` shows them). A policy with no live curves here (trained before the logger was switched on,
or on a node that does not share the run directory) gets them from its metrics.jsonl when its unit is done,
so switching the logger on for a finished run fills TensorBoard without training again. Evaluation rates are
rewritten at the end of every run (the previous ones removed), so re-running never doubles a point.
"""
from __future__ import annotations

import math
from pathlib import Path

from pxp.core import io
from pxp.core.hookspecs import hookimpl
from pxp.core.rundir import RunDir

LIVE, BACKFILL, RATES = ".train", ".backfill", ".evaluation"  # event-file suffixes: which writer wrote it
SKIPPED = {"step", "split", "elapsed_s", "samples"}


class TensorBoardLogger:
    def __init__(self, config):
        self.config = config
        self._live: dict[tuple[str, str], object] = {}  # (run dir, policy) → the SummaryWriter of its training
        self._steps: dict[str, int] = {}  # policy → its last training step, from this run's training units

    def _folder(self, run, policy: str) -> Path:
        return Path(run.dir) / self.config.dir / policy

    @hookimpl
    def pxp_training_step(self, run, policy, step, metrics):
        key = (str(run.dir), policy)
        if key not in self._live:
            self._live[key] = _writer(self._folder(run, policy), LIVE)
        writer = self._live[key]
        _add_row(writer, metrics, step)
        writer.flush()

    @hookimpl
    def pxp_unit_done(self, run, stage, unit, result):
        if stage != "training":
            return
        if isinstance(result.get("steps"), int):
            self._steps[unit] = result["steps"]
        live = self._live.pop((str(run.dir), unit), None)
        if live is not None:
            live.close()
        folder = self._folder(run, unit)
        if not any(folder.glob(f"*{LIVE}")) and result.get("checkpoint"):
            self._backfill(folder, Path(result["checkpoint"]))

    def _backfill(self, folder: Path, checkpoint: Path) -> None:
        from pxp.experiment.policy import METRICS

        rows = io.read_jsonl(checkpoint / METRICS)
        if not rows:
            return
        for old in folder.glob(f"*{BACKFILL}"):
            old.unlink()
        writer, last = _writer(folder, BACKFILL), None
        for row in rows:
            if row.get("split") == "train" and last is not None and row["elapsed_s"] > last["elapsed_s"]:
                row = {**row, "steps_per_s": (row["step"] - last["step"]) / (row["elapsed_s"] - last["elapsed_s"])}
            _add_row(writer, row, row["step"])
            last = row if row.get("split") == "train" else last
        writer.close()

    @hookimpl
    def pxp_run_done(self, run, results):
        rates: dict[str, list[tuple[str, float]]] = {}
        for evaluation, summary in ((results or {}).get("summaries") or {}).items():
            for policy, entry in (summary.get("policies") or {}).items():
                rates.setdefault(policy, []).extend(_rates(evaluation, entry))
        for policy, scalars in rates.items():
            folder = self._folder(run, policy)
            for old in folder.glob(f"*{RATES}"):
                old.unlink()
            writer, step = _writer(folder, RATES), self._step(run, policy)
            for tag, value in scalars:
                writer.add_scalar(tag, value, step)
            writer.close()

    def _step(self, run, policy: str) -> int:
        """The policy's last training step: from this run's training unit, else its checkpoint, else 0."""
        if policy in self._steps:
            return self._steps[policy]
        from pxp.experiment.policy import read_marker

        marker = read_marker(RunDir(run.dir).checkpoint(policy)) or {}
        return int(marker.get("step") or 0)

    def close(self) -> None:
        for writer in self._live.values():
            writer.close()
        self._live.clear()


def _writer(folder: Path, suffix: str):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), filename_suffix=suffix)


def _add_row(writer, row: dict, step: int) -> None:
    """A metrics row's numbers as ``<split>/<name>`` scalars (``train/loss``, ``holdout/pixel_error_px``, …)."""
    split = row.get("split", "train")
    for name, value in row.items():
        if name not in SKIPPED and isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"{split}/{name}", float(value), int(step))


def _rates(evaluation: str, entry: dict) -> list[tuple[str, float]]:
    """One policy's rates in an evaluation summary (each ``{k, n, rate, ci}`` entry) and its weighted score."""
    out = [(f"{evaluation}/{key}", float(v["rate"])) for key, v in entry.items()
           if isinstance(v, dict) and {"k", "n", "rate"} <= set(v)]
    score = (entry.get("weighted") or {}).get("score")
    if isinstance(score, (int, float)):
        out.append((f"{evaluation}/weighted_score", float(score)))
    return [(tag, value) for tag, value in out if math.isfinite(value)]
