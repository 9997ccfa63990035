"""Plugin manager, specs, CLI and runner, with the small plugins in tests/core_plugins.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

from typing import ClassVar, Literal

import pydantic
import pytest
from click.testing import CliRunner

from pxp.core import contracts
from pxp.core.cli import cli
from pxp.core.errors import PluginError, SpecError
from pxp.core.hookspecs import hookimpl
from pxp.core.plugins import load_registry
from pxp.core.spec import dump_spec, expand_sweeps, validate_spec
from pxp.experiment import commands as pipeline_commands
from pxp.experiment.pipeline import Runner
import yaml
from tests import core_plugins
from tests.core_plugins import ToyPlugin, toy_spec

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- registry

def test_components_record_their_provider(toy_registry):
    comp = toy_registry.get("datasets", "toy_dataset")
    assert (comp.plugin, comp.version, comp.summary) == ("toy", "0.0.1", "writes JSON lines")


def test_duplicate_names_name_both_providers():
    with pytest.raises(PluginError, match=r"'toy_scene' is registered twice: by plugin 'first'.*by plugin 'second'"):
        load_registry(extra_plugins=[("first", ToyPlugin()), ("second", ToyPlugin())], use_entry_points=False)


def test_config_model_type_must_match_name():
    class Bad:
        @hookimpl
        def pxp_register_scenes(self, register):
            register("other_name", core_plugins.ToySceneConfig, lambda c: c)

    with pytest.raises(PluginError, match=r"Literal\['other_name'\]"):
        load_registry(extra_plugins=[("bad", Bad())], use_entry_points=False)


def test_unknown_component_lists_available(toy_registry):
    with pytest.raises(PluginError, match="available: toy_backbone"):
        toy_registry.get("backbones", "nope")


# ---------------------------------------------------------------- specs

def problems(raw, reg):
    with pytest.raises(SpecError) as info:
        validate_spec(raw, reg)
    return dict(info.value.problems)


def test_valid_spec_fills_defaults(toy_registry):
    spec = validate_spec(toy_spec(), toy_registry)
    assert spec.policies["p"].train.batch_size == 16 and spec.scene.size == 8


def test_unknown_keys_are_errors_at_every_level(toy_registry):
    raw = toy_spec(colour="red")
    raw["policies"]["p"]["train"]["stepz"] = 3
    raw["datasets"]["d"]["episodez"] = 3
    got = problems(raw, toy_registry)
    assert {"colour", "policies.p.train.stepz", "datasets.d.episodez"} <= set(got)
    assert "unknown field" in got["colour"]


def test_unknown_type_lists_available_names(toy_registry):
    raw = toy_spec()
    raw["policies"]["p"]["backbone"] = {"type": "resnet"}
    got = problems(raw, toy_registry)
    assert "'resnet'" in got["policies.p.backbone.type"] and "toy_backbone" in got["policies.p.backbone.type"]


def test_cross_references_are_checked(toy_registry):
    raw = toy_spec()
    raw["policies"]["p"]["dataset"] = "missing"
    raw["policies"]["p"]["init_from"] = "ghost"
    raw["evaluations"]["e"]["policies"] = ["p", "q"]
    got = problems(raw, toy_registry)
    assert "no dataset named 'missing'" in got["policies.p.dataset"]
    assert "no policy named 'ghost'" in got["policies.p.init_from"]
    assert "no policy named 'q'" in got["evaluations.e.policies"]


def test_scene_overrides_are_validated(toy_registry):
    raw = toy_spec()
    raw["datasets"]["d"]["scene"] = {"size": "big"}
    assert "datasets.d.scene.size" in problems(raw, toy_registry)


def test_init_cycles_are_rejected(toy_registry):
    raw = toy_spec()
    raw["policies"]["q"] = dict(raw["policies"]["p"], init_from="p")
    raw["policies"]["p"]["init_from"] = "q"
    assert any("cycle" in m for m in problems(raw, toy_registry).values())


def test_sweeps_expand_and_groups_resolve(toy_registry):
    raw = toy_spec()
    raw["policies"]["p"]["sweep"] = {"demos": [1, 3], "train.seed": [0, 1]}
    spec = validate_spec(raw, toy_registry)
    assert sorted(spec.policies) == ["p-demos1-seed0", "p-demos1-seed1", "p-demos3-seed0", "p-demos3-seed1"]
    assert spec.policies["p-demos3-seed1"].demos == 3 and spec.policies["p-demos3-seed1"].train.seed == 1
    _, groups = expand_sweeps(raw)
    assert len(groups["p"]) == 4
    raw["evaluations"]["e"]["policies"] = ["p"]  # a group name
    spec = validate_spec(raw, toy_registry)
    again = validate_spec(yaml.safe_load(dump_spec(spec)), toy_registry)  # what `pxp eval` reloads
    assert again.policy_groups["p"] == groups["p"] and sorted(again.policies) == sorted(spec.policies)


def test_policy_group_members_must_exist(toy_registry):
    got = problems(toy_spec(policy_groups={"g": ["p", "nope"]}), toy_registry)
    assert "no policy named 'nope'" in got["policy_groups.g"]


# ---------------------------------------------------------------- CLI

def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("case", ["not_yaml", "unknown_key", "missing_file", "unknown_backbone"])
def test_validate_errors_exit_2_with_field_path(case, tmp_path, toy_registry):
    import yaml

    good = toy_spec()
    text = {
        "not_yaml": "name: [unclosed\n  - x: :",
        "unknown_key": yaml.safe_dump(dict(good, extra_section=1)),
        "unknown_backbone": yaml.safe_dump({**good, "policies": {"p": {**good["policies"]["p"], "backbone": {"type": "resnet"}}}}),
    }.get(case)
    path = write(tmp_path, text) if text else tmp_path / "nope.yaml"
    res = CliRunner().invoke(cli, ["validate", str(path)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    expected = {"not_yaml": "not valid YAML", "unknown_key": "extra_section", "missing_file": "no such file",
                "unknown_backbone": "policies.p.backbone.type"}[case]
    assert expected in res.output
    if case == "unknown_backbone":
        assert "toy_backbone" in res.output


def test_validate_ok_and_schema_cover_plugins(tmp_path, toy_registry):
    import yaml

    res = CliRunner().invoke(cli, ["validate", str(write(tmp_path, yaml.safe_dump(toy_spec())))])
    assert res.exit_code == 0 and "ok" in res.output
    schema = json.loads(CliRunner().invoke(cli, ["schema"]).output)
    assert "ToyBackboneConfig" in json.dumps(schema) and "toy_eval" in json.dumps(schema)


def test_list_plugins_json(toy_registry):
    out = json.loads(CliRunner().invoke(cli, ["list-plugins", "--json"]).output)
    assert {"kind": "dataset", "name": "toy_dataset"}.items() <= next(c for c in out["components"] if c["name"] == "toy_dataset").items()


def _fake_installed_plugin(root: Path, module_body: str, name="broken") -> Path:
    """A real distribution on sys.path (dist-info + entry point), without pip."""
    dist = root / f"pxp_{name}-9.9.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: pxp-{name}\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text(f"[pxp]\n{name} = pxp_{name}_mod\n")
    (root / f"pxp_{name}_mod.py").write_text(module_body)
    return root


def _pxp(args, env_extra=None, **kw):
    env = {**os.environ, **(env_extra or {})}
    env.pop("PXP_STRICT_PLUGINS", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", "from pxp.core.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, **kw)


def test_broken_plugin_is_reported_and_others_load(tmp_path):
    root = _fake_installed_plugin(tmp_path, "raise ImportError('needs libfoo 3')\n")
    res = _pxp(["list-plugins", "--json"], {"PYTHONPATH": str(root)})
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    failure = data["failures"][0]
    assert (failure["name"], failure["distribution"], failure["version"]) == ("broken", "pxp-broken", "9.9")
    assert "ImportError: needs libfoo 3" in failure["error"]
    installed = {ep.name for ep in __import__("importlib.metadata").metadata.entry_points(group="pxp")}
    builtin = {ep.name for ep in __import__("importlib.metadata").metadata.entry_points(group="pxp") if ep.dist.metadata["Name"] == "pxp"}
    assert builtin <= {c["plugin"] for c in data["components"]} <= installed  # every other plugin still loaded
    table = _pxp(["list-plugins"], {"PYTHONPATH": str(root)})
    assert table.returncode == 0 and "PXP_DISABLE_PLUGINS=broken" in table.stderr and "Traceback" not in table.stderr
    quiet = _pxp(["list-plugins"], {"PYTHONPATH": str(root), "PXP_DISABLE_PLUGINS": "broken"})
    assert "broken" not in quiet.stderr
    strict = _pxp(["list-plugins"], {"PYTHONPATH": str(root), "PXP_STRICT_PLUGINS": "1"})
    assert strict.returncode == 1 and "needs libfoo 3" in strict.stderr


def test_list_plugins_imports_no_heavy_library():
    code = ("import sys; from click.testing import CliRunner; from pxp.core.cli import cli, _add_plugin_commands; "
            "_add_plugin_commands(); r = CliRunner().invoke(cli, ['list-plugins']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch','timm','mujoco','libero','robosuite','scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- runner

def make_spec(reg, **over):
    over = {"policies": {}, "evaluations": {"e": {"type": "toy_eval", "policies": []}}, **over}
    return validate_spec(toy_spec(**over), reg)


STAGES = ("datasets", "evaluation")


def test_run_writes_run_directory_and_caches(tmp_path, toy_registry):
    spec = make_spec(toy_registry)
    Runner(spec, tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    for f in ("spec.resolved.yaml", "manifest.json", "data/d.hdf5", "results.json", "evals/e/result.json"):
        assert (tmp_path / f).exists(), f
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["libraries"]["pydantic"] and manifest["units"]["datasets"]["d"]["status"] == "done"
    assert manifest["cpu"].endswith(f"{len(os.sched_getaffinity(0))} cores")  # wall-clock budgets depend on it
    assert core_plugins.CALLS == [("generate", "d"), ("evaluate", "e")]
    Runner(spec, tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    assert core_plugins.CALLS == [("generate", "d"), ("evaluate", "e")], "second run must skip cached units"
    Runner(spec, tmp_path, registry=toy_registry, quiet=True, force=True).run(STAGES)
    assert len(core_plugins.CALLS) == 4


def test_changed_config_reruns_only_what_depends_on_it(tmp_path, toy_registry):
    Runner(make_spec(toy_registry), tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    spec2 = make_spec(toy_registry, evaluations={"e": {"type": "toy_eval", "policies": [], "episodes": 5}})
    Runner(spec2, tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    assert core_plugins.CALLS[2:] == [("evaluate", "e")]


def test_interrupted_run_resumes(tmp_path, toy_registry):
    spec = make_spec(toy_registry)
    core_plugins.CALLS.append(("interrupt_at", 2))
    with pytest.raises(KeyboardInterrupt):
        Runner(spec, tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    assert not (tmp_path / "data/d.hdf5").exists()
    core_plugins.CALLS.clear()
    Runner(spec, tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    marker = json.loads((tmp_path / ".stages/datasets.d.json").read_text())
    assert marker["status"] == "done" and marker["result"]["resumed_from"] == 2
    lines = (tmp_path / "data/d.hdf5").read_text().splitlines()
    assert [json.loads(l)["episode"] for l in lines] == [0, 1, 2]


def test_results_json_collects_episodes(tmp_path, toy_registry):
    spec = validate_spec(toy_spec(), toy_registry)
    Runner(spec, tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    res = json.loads((tmp_path / "results.json").read_text())
    assert len(res["episodes"]) == 2 and res["summaries"]["e"] == {"evaluator": "toy_eval", "n": 2, "place": 1}


def test_evaluating_another_spec_into_a_run_keeps_the_first_specs_results(tmp_path, toy_registry):
    Runner(validate_spec(toy_spec(), toy_registry), tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    bigger = toy_spec(evaluations={"e_n4": {"type": "toy_eval", "policies": ["p"], "episodes": 4}})
    Runner(validate_spec(bigger, toy_registry), tmp_path, registry=toy_registry, quiet=True).run(("evaluation",))
    res = json.loads((tmp_path / "results.json").read_text())
    assert list(res["summaries"]) == ["e_n4", "e"]  # this spec's first, then the one already in the directory
    assert [e["evaluation"] for e in res["episodes"]] == ["e_n4"] * 4 + ["e"] * 2
    recorded = json.loads((tmp_path / "evals/e/result.json").read_text())["config"]
    assert recorded["type"] == "toy_eval" and recorded["policies"] == ["p"]
    assert res["configs"]["e"] == recorded  # the report reads an evaluation's config from here


def test_pxp_eval_reruns_evaluations_with_overrides(tmp_path, toy_registry):
    spec = validate_spec(toy_spec(), toy_registry)
    Runner(spec, tmp_path, registry=toy_registry, quiet=True).run(STAGES)
    pipeline_commands.pxp_register_commands(cli)  # what `pxp` does for the built-in pipeline plugin
    res = CliRunner().invoke(cli, ["eval", str(tmp_path), "--set", "evaluations.e.episodes=5"])
    assert res.exit_code == 0, res.output
    assert core_plugins.CALLS[-1] == ("evaluate", "e") and ("generate", "d") not in core_plugins.CALLS[2:]
    assert len(json.loads((tmp_path / "results.json").read_text())["episodes"]) == 5
    assert (tmp_path / "report.html").exists()
    missing = CliRunner().invoke(cli, ["eval", str(tmp_path / "data")])
    assert missing.exit_code == 1 and "no spec.resolved.yaml" in missing.output


# ---------------------------------------------------------------- contracts: a plugin that breaks one is refused, named

def _one_component_plugin(kind: str, name: str, model, factory):
    class Plugin:
        pass

    def register_hook(self, register):
        register(name, model, factory)

    setattr(Plugin, f"pxp_register_{kind}", hookimpl(register_hook))
    return Plugin()


def _config(base, name: str, **classvars):
    ns = {"__annotations__": {"type": Literal[name], **{k: ClassVar[type(v)] for k, v in classvars.items()}},
          "type": name, **classvars}
    return type(f"Cfg_{name}", (base,), ns)


DECLARES = {"heads": {"output_kind": "toy"}, "objectives": {"accepts": ("toy",)},
            "scenes": {"outcomes": core_plugins.TOY_OUTCOMES, "image_key": "rgb"}}


@pytest.mark.parametrize("kind,base", list(contracts.CONFIG_BASES.items()))
def test_a_config_model_off_its_kinds_base_is_refused_naming_the_plugin(kind, base):
    plain = _config(pydantic.BaseModel, "off_base", **DECLARES.get(kind, {}))
    reg = load_registry(strict=False, extra_plugins=[("offbase", _one_component_plugin(kind, "off_base", plain, None))],
                        use_entry_points=False)
    assert "off_base" not in reg.components[kind]
    failure, = reg.failures
    assert failure.name == "offbase" and len(failure.error.splitlines()) == 1
    assert failure.error == f"{kind[:-1]} 'off_base': config_model must derive from pxp.core.contracts.{base.__name__}"


@pytest.mark.parametrize("kind", sorted(DECLARES))
def test_a_config_model_without_its_declarations_is_refused(kind):
    bare = _config(contracts.CONFIG_BASES[kind], "bare")
    reg = load_registry(strict=False, extra_plugins=[("bare", _one_component_plugin(kind, "bare", bare, None))],
                        use_entry_points=False)
    failure, = reg.failures
    assert failure.error == (f"{kind[:-1]} 'bare': config_model declares no {', '.join(DECLARES[kind])} "
                             "(a ClassVar, see pxp.core.contracts)")


class _Callable:
    def __call__(self, *args):
        return None


class _NoDecodeHead(contracts.Head, _Callable):
    output_kind, horizon = "toy", 1


class _NoWeightsBackbone(_Callable):
    embed_dim = 4


class _NoSummarize(contracts.Evaluator):
    def run(self, ctx):
        return []


BROKEN = {  # kind: (what the factory builds, the missing piece the refusal names)
    "backbones": (_NoWeightsBackbone, "it has no weights_info"),
    "heads": (_NoDecodeHead, "it has no decode"),
    "objectives": (object, "it has no __call__"),
    "scenes": (_Callable, "it does not derive from pxp.core.contracts.Scene"),
    "datasets": (contracts.DatasetGenerator, "it has no generate"),
    "evaluators": (_NoSummarize, "it has no summarize"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_built_object_that_breaks_its_contract_is_refused_in_one_line(kind):
    cls, missing = BROKEN[kind]
    model = _config(contracts.CONFIG_BASES[kind], "broken", **DECLARES.get(kind, {}))
    reg = load_registry(strict=True, extra_plugins=[("brk", _one_component_plugin(kind, "broken", model, lambda *a: cls()))],
                        use_entry_points=False)
    with pytest.raises(PluginError) as info:
        reg.create(kind, model(), *([None] if kind == "heads" else []))
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{kind[:-1]} 'broken' (plugin 'brk', local -) breaks the {kind[:-1]} contract: {missing}")
    assert message.endswith("PXP_DISABLE_PLUGINS=brk turns the plugin off")


def test_a_report_section_that_breaks_its_contract_is_left_out_and_named(capsys):
    from types import SimpleNamespace

    from pxp.experiment.report import sections

    class Untyped:
        title, order = "Untyped", 5

        def render(self, report, doc):
            pass

    class Silent(contracts.ReportSection):
        title = "Silent"

    class Good(contracts.ReportSection):
        title = "Good"

        def render(self, report, doc):
            pass

    class Plugin:
        @hookimpl
        def pxp_report_sections(self, report):
            return [Untyped(), Silent(), Good()]

    reg = load_registry(strict=True, extra_plugins=[("sections", Plugin())], use_entry_points=False)
    found = [s.title for s in sections(SimpleNamespace(registry=reg))]
    assert "Good" in found and "Untyped" not in found and "Silent" not in found
    err = capsys.readouterr().err
    assert "a section of plugin 'sections' is left out: it does not derive from pxp.core.contracts.ReportSection" in err
    assert "a section of plugin 'sections' is left out: it has no render" in err
