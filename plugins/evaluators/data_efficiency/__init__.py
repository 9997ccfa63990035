"""``data_efficiency``: success against demo count, per initialisation (scratch, 2D-, 3D-pretrained).

The spec trains one policy per (initialisation, demo count) — typically with a sweep over
``demos`` — and this evaluator names them per initialisation::

    evaluations:
      efficiency:
        type: data_efficiency
        policies:
          scratch: [para_scratch]        # a sweep group expands to para_scratch-demos1, -demos3, …
          pt2d: [para_pt2d-demos1, para_pt2d-demos3]
        positions: 20
        episodes_per_position: 5

The demo count of each policy is read from its spec entry (``demos``; unset = the whole dataset).
Every policy runs on the same positions and seeds; the summary has one row per (init, demos) with
PLACE and GRASP counts, the binary success rate and the weighted score (PLACE = 1, GRASP = 0.5),
each with its 95% interval, and exact McNemar tests between the policies trained on the same demo count.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from pxp.experiment.evaluation import EpisodeTask, EpisodeEvaluator, EpisodeEvaluatorConfig, episode_seed, pick_positions
from pxp.experiment.grid import SplitConfig, check_grid_split, explicit
from pxp.core.hookspecs import hookimpl


class DataEfficiencyConfig(EpisodeEvaluatorConfig):
    """Binary and weighted success per (initialisation, demo count)."""

    type: Literal["data_efficiency"] = "data_efficiency"
    axis: ClassVar[str] = "Demo count"
    policies: dict[str, list[str]] = Field(
        ..., min_length=1, description="initialisation label → policies (or sweep groups) trained with it")
    split: SplitConfig = Field(SplitConfig(name="all"), description="where the test positions come from")
    positions: Optional[int] = Field(20, ge=1, description="test positions drawn from split (None: all of it)")
    grid: tuple[int, int] = (16, 16)
    extent: Optional[tuple[tuple[float, float], tuple[float, float]]] = None

    def referenced_policies(self) -> list[str]:
        return [p for names in self.policies.values() for p in names]

    def smoke(self) -> dict:
        from pxp.core.smoke import GRID_SIDE
        from pxp.experiment.grid import shrink_split

        grid = tuple(min(n, GRID_SIDE) for n in self.grid)
        return {**super().smoke(), "grid": grid, "split": shrink_split(self.split, *grid), "positions": 1}

    @model_validator(mode="after")
    def _split_fits_grid(self):
        check_grid_split(self.grid, self.split, count=explicit(self, "positions"))
        return self


class DataEfficiency(EpisodeEvaluator):
    def episodes(self, ctx) -> list[EpisodeTask]:
        cfg = self.config
        scene = ctx.scene_config(**cfg.scene)
        positions = pick_positions(scene, cfg.split, cfg.positions, cfg.seed, cfg.grid, cfg.extent)
        tasks = []
        for init, names in cfg.policies.items():
            for pol in self.policy_names(ctx, names):
                labels = {"init": init, "demos": _demos(ctx, pol)}
                tasks += [self.task(ctx, pol, cell=cell, offset=off, seed=episode_seed(ctx.seed, cfg.seed, i, e),
                                    labels=labels)
                          for i, (cell, off) in enumerate(positions) for e in range(cfg.episodes_per_position)]
        return tasks

    def summarize(self, episodes: list[dict]) -> dict:
        summary = super().summarize(episodes)
        labels = {e["policy"]: e.get("labels") or {} for e in episodes}
        rows = [{"init": labels[p].get("init"), "demos": labels[p].get("demos"), "policy": p, **_row(s, self.outcomes)}
                for p, s in summary["policies"].items()]
        summary["table"] = sorted(rows, key=lambda r: (str(r["init"]), r["demos"] if r["demos"] is not None else 1e9))
        return summary

    def compare_within(self) -> str:
        # a paired test means something between policies trained on the same demos (heads, initialisations),
        # not between demo counts: 75 tests for the 30 policies of a 6 × 5 sweep instead of 435
        return "demos"

    def report_figures(self, report, doc, name, episodes, summary) -> None:
        from pxp.plugins.evaluators.data_efficiency.report import data_efficiency_figures

        data_efficiency_figures(report, doc, name, episodes, summary)


def _demos(ctx, policy: str):
    pol = (getattr(ctx.spec, "policies", None) or {}).get(policy)
    return getattr(pol, "demos", None)


def _row(s: dict, outcomes) -> dict:
    """The seed's columns: the best and second-best outcome's counts (P, G), the success rate, the weighted score."""
    best, second = outcomes.names[:2]
    return {"place_count": s["counts"][best], "grasp_count": s["counts"][second], "n": s["n"],
            "errors": s["errors"], "place": s[outcomes.success_rate], "weighted": s["weighted"]}


@hookimpl
def pxp_register_evaluators(register):
    register("data_efficiency", DataEfficiencyConfig, DataEfficiency,
             summary="success vs demo count × initialisation (binary and weighted, with P/G counts)")
