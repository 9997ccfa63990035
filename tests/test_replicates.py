"""Replicates: ``replicates: K`` trains K copies of every policy with different training seeds and evaluates
each on the same episodes; K = 1 changes no unit hash, and replicate 0 of a K > 1 run is the K = 1 run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pxp.core.cli import cli
from pxp.experiment import commands as pipeline_commands
from pxp.core.errors import SpecError
from pxp.experiment.pipeline import Runner
from pxp.core.spec import dump_spec, parse_yaml, replicate_index, validate_spec
from tests import core_plugins
from tests.core_plugins import toy_spec

pipeline_commands.pxp_register_commands(cli)  # what `pxp` does first: the built-in pipeline plugin adds `pxp run`

SPECS = Path(__file__).resolve().parent.parent / "specs"


def unit_hashes(spec) -> dict[str, str]:
    r = Runner(spec, "/nonexistent-run-dir", quiet=True)
    return {**{f"datasets.{n}": r.dataset_hash(n) for n in spec.datasets},
            **{f"policies.{n}": r.policy_hash(n) for n in spec.policies},
            **{f"evaluations.{n}": r.evaluation_hash(n) for n in spec.evaluations}}


@pytest.mark.parametrize("name", ["cpu_study", "cpu_pretraining"])
def test_replicate_zero_is_the_unreplicated_run(name):
    raw = parse_yaml(SPECS / f"{name}.yaml")
    raw.pop("replicates", None), raw.pop("replicate_seeds", None)
    single = validate_spec(raw)
    assert single.replicas == {} and unit_hashes(validate_spec({**raw, "replicates": 1})) == unit_hashes(single)
    tripled = validate_spec({**raw, "replicates": 3})
    hashes = unit_hashes(tripled)
    assert {k: hashes[k] for k in unit_hashes(single)} == unit_hashes(single)  # a K = 1 run's cache is replicate 0
    assert len(tripled.policies) == 3 * len(single.policies) and len(tripled.evaluations) == 3 * len(single.evaluations)
    assert len(set(hashes.values())) == len(hashes)  # every replicate is its own unit
    for pol, body in single.policies.items():
        seeds = [tripled.policies[n].train.seed for n in (pol, f"{pol}-rep1", f"{pol}-rep2")]
        assert seeds == [body.train.seed + r for r in range(3)]
        same = {k: v for k, v in body.model_dump().items() if k not in ("train", "init_from")}
        for r in (1, 2):
            rep = tripled.policies[f"{pol}-rep{r}"]
            assert {k: v for k, v in rep.model_dump().items() if k in same} == same  # same demos, same config
            assert rep.init_from == (f"{body.init_from}-rep{r}" if body.init_from else None)
    for ev in single.evaluations:
        assert tripled.replicas[ev] == [ev, f"{ev}-rep1", f"{ev}-rep2"]
        assert replicate_index(tripled)[f"{ev}-rep2"] == (ev, 2)
        rep2 = tripled.evaluations[f"{ev}-rep2"].model_dump()
        assert {k: v for k, v in rep2.items() if k != "policies"} == \
            {k: v for k, v in single.evaluations[ev].model_dump().items() if k != "policies"}  # same episodes


def test_sweep_groups_and_data_efficiency_policies_are_renamed_per_replicate():
    spec = validate_spec({**parse_yaml(SPECS / "cpu_pretraining.yaml"), "replicates": 2})
    assert spec.policy_groups["para_2dpt-rep1"] == [f"para_2dpt-demos{d}-rep1" for d in (1, 3, 5, 10, 20)]
    assert spec.evaluations["finetuning-rep1"].policies["2D-pt"] == ["para_2dpt-rep1", "act_2dpt-rep1"]
    assert spec.policies["para_2dpt-demos3-rep1"].demos == 3
    assert spec.policies["para_2dpt-demos3-rep1"].init_from == "para_pt2d-rep1"


def test_explicit_seeds_and_the_resolved_spec_round_trip():
    raw = {**parse_yaml(SPECS / "cpu_study.yaml"), "replicates": 2, "replicate_seeds": [71, 72]}
    spec = validate_spec(raw)
    assert [spec.policies[n].train.seed for n in ("para", "para-rep1")] == [71, 72]
    again = validate_spec(yaml.safe_load(dump_spec(spec)))  # pxp eval reloads spec.resolved.yaml: no second expansion
    assert list(again.policies) == list(spec.policies) and again.replicas == spec.replicas
    assert unit_hashes(again) == unit_hashes(spec)
    with pytest.raises(SpecError) as info:
        validate_spec({**raw, "replicate_seeds": [71]})
    assert dict(info.value.problems)["replicate_seeds"].startswith("must list 2 different seeds")
    with pytest.raises(SpecError) as info:
        validate_spec({**raw, "replicates": 0})
    assert "replicates" in dict(info.value.problems)


def test_results_json_carries_the_replicate_index(tmp_path, toy_registry):
    spec_file = tmp_path / "toy.yaml"
    spec_file.write_text(yaml.safe_dump(toy_spec()))
    res = CliRunner().invoke(cli, ["run", str(spec_file), "--out", str(tmp_path / "run"), "--replicates", "2",
                                   "--stage", "datasets", "--stage", "evaluation"])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["replicates"] == 2
    assert {k: (v["replicate_of"], v["replicate"]) for k, v in results["summaries"].items()} == \
        {"e": ("e", 0), "e-rep1": ("e", 1)}
    assert [(e["evaluation"], e["replicate"]) for e in results["episodes"]] == [("e", 0)] * 2 + [("e-rep1", 1)] * 2
    assert core_plugins.CALLS == [("generate", "d"), ("evaluate", "e"), ("evaluate", "e-rep1")]


def test_fewer_replicates_than_the_spec_lists_take_its_first_seeds(tmp_path, toy_registry):
    spec_file = tmp_path / "toy.yaml"
    spec_file.write_text(yaml.safe_dump(toy_spec(replicates=3, replicate_seeds=[7, 8, 9])))
    res = CliRunner().invoke(cli, ["validate", str(spec_file)])
    assert res.exit_code == 0 and "3 policy(ies), 3 evaluation(s)" in res.output
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", str(spec_file), "--out", str(out), "--replicates", "1", "--stage", "datasets"])
    assert res.exit_code == 0, res.output
    resolved = yaml.safe_load((out / "spec.resolved.yaml").read_text())
    assert list(resolved["policies"]) == ["p"] and resolved["policies"]["p"]["train"]["seed"] == 7
    res = CliRunner().invoke(cli, ["run", str(spec_file), "--out", str(out), "--replicates", "4", "--stage", "datasets"])
    assert res.exit_code == 2 and "replicate_seeds" in res.output
