"""The contracts say what the framework really calls: every method of every contract in pxp.core.contracts (and
every optional method, as its caller calls it) is checked against the signature of each built-in implementation,
and each contract is called on a tiny built object through pxp.testing, the plugin author's kit."""
from __future__ import annotations

import inspect
import typing

import pytest

from pxp.core import contracts
from pxp.experiment.evaluation import FaultPolicy
from pxp.experiment.heatmaps import PointFigure
from pxp.experiment.policy import Policy
from pxp.experiment.report import Doc, EvaluationSections, FailedEpisodes, ProvenanceSection, TrainingSection
from pxp.experiment.rollout import DemoReplayPolicy, ExpertPolicy, HomePolicy
from pxp.plugins.backbones.cnn.model import SmallCNN
from pxp.plugins.backbones.vit.model import ViTBackbone
from pxp.plugins.datasets.grids import PositionGridGenerator, ViewpointGridGenerator
from pxp.plugins.evaluators.data_efficiency import DataEfficiency
from pxp.plugins.evaluators.ood import Distractors, PositionSplit, ViewpointGrid
from pxp.plugins.heads.act.model import ActHead
from pxp.plugins.heads.para.figures import ParaFigure
from pxp.plugins.heads.para.model import ParaHead
from pxp.plugins.objectives.losses.compute import BehaviorCloning, PointTrack2D
from pxp.plugins.reports.para_vs_act import ParaVsActSummary
from pxp.plugins.reports.probe import ProbeSection
from pxp.plugins.scenes.libero.drift import SceneDriftCheck
from pxp.plugins.scenes.libero.outcomes import BowlTracker
from pxp.plugins.scenes.libero.scene import LiberoScene
from pxp.testing import check_figure, check_head, check_objective, plugin_registry

EVALUATORS = [PositionSplit, ViewpointGrid, Distractors, DataEfficiency]
ROLLOUT_POLICIES = [Policy, HomePolicy, ExpertPolicy, DemoReplayPolicy, FaultPolicy]

# Every contract with methods → the built-in classes that implement it.
IMPLEMENTATIONS = {
    contracts.Backbone: [ViTBackbone, SmallCNN],
    contracts.Head: [ParaHead, ActHead],
    contracts.VolumeHead: [ParaHead],
    contracts.RegressionHead: [ActHead],
    contracts.Objective: [BehaviorCloning, PointTrack2D],
    contracts.PredictionFigure: [ParaFigure, PointFigure],
    contracts.EpisodeTracker: [BowlTracker],
    contracts.Scene: [LiberoScene],
    contracts.DriftCheck: [SceneDriftCheck],
    contracts.DatasetGenerator: [PositionGridGenerator, ViewpointGridGenerator],
    contracts.RolloutPolicy: ROLLOUT_POLICIES,
    contracts.Evaluator: EVALUATORS,
    contracts.Document: [Doc],
    contracts.ReportSection: [ParaVsActSummary, ProbeSection, FailedEpisodes, EvaluationSections, TrainingSection,
                              ProvenanceSection],
}

# Optional methods (a docstring names them; the implementation may leave them out), called exactly as their
# callers call them: (implementations, method, positional arguments, keyword arguments).
OPTIONAL_CALLS = [
    ([ParaHead, ActHead], "prepare", ("setup",), {}),  # training.prepare_head
    ([ParaHead, ActHead], "transfer_tensor", ("name", "tensor", "source_head_config"), {}),  # training.transfer_weights
    ([PositionGridGenerator, ViewpointGridGenerator], "verify", ("path",), {}),  # runner._dataset_problem
    (EVALUATORS, "report_section", ("summary",), {}),  # report.EvaluationSections
    (EVALUATORS, "report_figures", ("report", "doc", "name", "episodes", "summary"), {}),
    ([ParaVsActSummary, ProbeSection], "prepare", ("report",), {}),  # report: every prepare before any render
    ([LiberoScene], "tracker", ("obs",), {}),  # rollout._Recorder
    (ROLLOUT_POLICIES, "reset", (), {}),  # rollout.rollout, once per episode
    (ROLLOUT_POLICIES, "prepare", ("scene",), {"offset": 0, "view": None, "seed": 0}),  # evaluation.run_episode
]


def _methods(protocol) -> dict[str, inspect.Signature]:
    """The methods a protocol declares (its own and those of the protocols it extends)."""
    out = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or klass is typing.Protocol or klass is typing.Generic:
            continue
        for name, value in vars(klass).items():
            if inspect.isfunction(value) and (name == "__call__" or not name.startswith("_")):
                out[name] = inspect.signature(value)
    return out


def _implementation(impl, name: str):
    """The function a call of ``name`` reaches: a torch module's ``__call__`` runs its ``forward``."""
    if name == "__call__" and hasattr(impl, "forward") and not _defines(impl, "__call__"):
        name = "forward"
    return getattr(impl, name, None)


def _defines(klass, name: str) -> bool:
    return any(name in vars(k) for k in klass.__mro__ if k is not object and k.__module__.split(".")[0] != "torch")


def _call_shape(sig: inspect.Signature) -> tuple[tuple, dict]:
    """How the framework calls a contract method: required parameters by position, the others by name."""
    params = [p for p in sig.parameters.values() if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    args = tuple(p.name for p in params if p.default is p.empty and p.kind is not p.KEYWORD_ONLY)
    kwargs = {p.name: p.default for p in params if p.default is not p.empty or p.kind is p.KEYWORD_ONLY}
    return args, kwargs


def _accepts(function, args: tuple, kwargs: dict) -> str | None:
    sig = inspect.signature(function)
    try:
        sig.bind(None, *args, **kwargs) if _unbound(function) else sig.bind(*args, **kwargs)
    except TypeError as exc:
        return f"{function.__qualname__}{sig} cannot be called with ({', '.join([*args, *kwargs])}): {exc}"
    return None


def _unbound(function) -> bool:
    params = list(inspect.signature(function).parameters)
    return bool(params) and params[0] == "self" and not inspect.ismethod(function)


def test_every_contract_with_methods_has_its_builtin_implementations_listed():
    protocols = [v for v in vars(contracts).values()
                 if isinstance(v, type) and v.__module__ == contracts.__name__ and _methods(v)
                 and not issubclass(v, (contracts.ComponentConfig, Exception)) and v is not contracts.StageContext]
    assert sorted(p.__name__ for p in protocols) == sorted(p.__name__ for p in IMPLEMENTATIONS)


@pytest.mark.parametrize("protocol", list(IMPLEMENTATIONS), ids=lambda p: p.__name__)
def test_builtin_implementations_take_the_contracts_arguments(protocol):
    problems = []
    for impl in IMPLEMENTATIONS[protocol]:
        for name, sig in _methods(protocol).items():
            function = _implementation(impl, name)
            if function is None:
                problems.append(f"{impl.__name__} has no {name}")
                continue
            problem = _accepts(function, *_call_shape(sig))
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("impls, name, args, kwargs", OPTIONAL_CALLS, ids=lambda v: v if isinstance(v, str) else "")
def test_optional_methods_take_the_arguments_their_callers_pass(impls, name, args, kwargs):
    problems = [p for impl in impls if getattr(impl, name, None) is not None
                for p in [_accepts(getattr(impl, name), args, kwargs)] if p]
    assert not problems, "\n".join(problems)
    assert any(getattr(impl, name, None) is not None for impl in impls), f"no built-in implements {name}: drop the row"


def test_the_figure_contract_names_the_scale_argument_the_report_passes():
    args, _ = _call_shape(_methods(contracts.PredictionFigure)["panel"])
    assert args == ("base", "row", "k", "font", "scale")


def test_a_figure_that_follows_an_old_contract_is_refused_by_check_figure(monkeypatch):
    import pxp.experiment.heatmaps as heatmaps

    class OldFigure(PointFigure):
        def panel(self, base, row, k, font):  # the four-argument panel the contract once documented
            return base

    monkeypatch.setattr(heatmaps, "figure_of", lambda policy: OldFigure("old"))
    with pytest.raises(AssertionError, match=r"must take base, row, k, font, scale"):
        check_figure(plugin_registry(), "act_regression", hidden_dim=16)


# ---------------------------------------------------------------- each contract called on a tiny built object

HEADS = {"para_volume": dict(height_bins=4, heatmap_size=16, hidden_dim=16), "act_regression": dict(hidden_dim=32)}


@pytest.mark.parametrize("head", HEADS)
def test_builtin_heads_pass_the_head_objective_and_figure_checks(head):
    reg = plugin_registry()
    check_objective(reg, "behavior_cloning", check_head(reg, head, **HEADS[head]))
    strip = check_figure(reg, head, **HEADS[head])
    assert strip.size[0] > strip.size[1] > 0
