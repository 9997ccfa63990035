"""Small plugins used to test the core without the real simulator or models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pxp.core import contracts, io
from pxp.core.contracts import Outcomes
from pxp.core.hookspecs import hookimpl

TOY_OUTCOMES = Outcomes(names=("PLACE", "MISS"), weights={"PLACE": 1.0, "MISS": 0.0}, rates={"place": ("PLACE",)},
                        colours={"PLACE": "green", "MISS": "red", "ERROR": "black"},
                        badges={"PLACE": ("PLACE", (0, 160, 0)), "MISS": ("MISS", (200, 0, 0))})


class ToySceneConfig(contracts.SceneConfig):
    outcomes: ClassVar[Outcomes] = TOY_OUTCOMES
    image_key: ClassVar[str] = "rgb"
    type: Literal["toy_scene"] = "toy_scene"
    size: int = 8


class ToyDatasetConfig(contracts.DatasetConfig):
    type: Literal["toy_dataset"] = "toy_dataset"
    episodes: int = 3
    scene: dict = {}


class ToyBackboneConfig(contracts.BackboneConfig):
    type: Literal["toy_backbone"] = "toy_backbone"
    width: int = 4


class ToyHeadConfig(contracts.HeadConfig):
    output_kind: ClassVar[str] = "toy"
    type: Literal["toy_head"] = "toy_head"


class ToyObjectiveConfig(contracts.ObjectiveConfig):
    accepts: ClassVar[tuple] = ("toy",)
    type: Literal["toy_objective"] = "toy_objective"


class ToyEvaluatorConfig(contracts.EvaluatorConfig):
    type: Literal["toy_eval"] = "toy_eval"
    policies: list[str] = []
    episodes: int = 2
    fail_on: int | None = None


CALLS: list = []


class ToyDataset(contracts.DatasetGenerator):
    def __init__(self, cfg):
        self.cfg = cfg

    def generate(self, path: Path, ctx):
        """Writes one line per episode into a partial file; resumes from it."""
        CALLS.append(("generate", ctx.unit))
        partial = path.with_name(path.name + ".partial")
        done = len(io.read_jsonl(partial))
        with ctx.progress("toy episodes", total=self.cfg.episodes) as task:
            for i in range(done, self.cfg.episodes):
                if CALLS and CALLS[0] == ("interrupt_at", i):
                    raise KeyboardInterrupt
                io.append_jsonl(partial, {"episode": i, "size": ctx.scene_config(**self.cfg.scene).size})
                task.advance()
        partial.replace(path)
        return {"episodes": self.cfg.episodes, "resumed_from": done}


class ToyEvaluator(contracts.Evaluator):
    def __init__(self, cfg):
        self.cfg = cfg

    def run(self, ctx):
        CALLS.append(("evaluate", ctx.unit))
        return [{"evaluation": ctx.unit, "policy": p, "seed": s, "outcome": "PLACE" if s % 2 == 0 else "MISS",
                 "error": None} for p in ctx.resolve_policies(self.cfg.policies) for s in range(self.cfg.episodes)]

    def summarize(self, episodes):
        return {"n": len(episodes), "place": sum(e["outcome"] == "PLACE" for e in episodes)}


class ToyPlugin:
    __version__ = "0.0.1"

    @hookimpl
    def pxp_register_scenes(self, register):
        register("toy_scene", ToySceneConfig, lambda cfg: cfg, summary="a scene that is only a config")

    @hookimpl
    def pxp_register_datasets(self, register):
        register("toy_dataset", ToyDatasetConfig, ToyDataset, summary="writes JSON lines")

    @hookimpl
    def pxp_register_backbones(self, register):
        register("toy_backbone", ToyBackboneConfig, lambda cfg: None, summary="no model")

    @hookimpl
    def pxp_register_heads(self, register):
        register("toy_head", ToyHeadConfig, lambda cfg: None)

    @hookimpl
    def pxp_register_objectives(self, register):
        register("toy_objective", ToyObjectiveConfig, lambda cfg: None)

    @hookimpl
    def pxp_register_evaluators(self, register):
        register("toy_eval", ToyEvaluatorConfig, ToyEvaluator, summary="even seeds place")


def toy_spec(**over) -> dict:
    spec = {
        "name": "toy",
        "scene": {"type": "toy_scene", "size": 8},
        "datasets": {"d": {"type": "toy_dataset", "episodes": 3}},
        "policies": {
            "p": {"backbone": {"type": "toy_backbone"}, "head": {"type": "toy_head"},
                  "objective": {"type": "toy_objective"}, "dataset": "d", "train": {"steps": 1}},
        },
        "evaluations": {"e": {"type": "toy_eval", "policies": ["p"]}},
    }
    spec.update(over)
    return json.loads(json.dumps(spec))
