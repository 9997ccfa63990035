"""Cache keys know the code: editing a plugin from a working tree recomputes the units that use it."""
import importlib
import json
import sys
import textwrap

import pytest

from pxp.core.plugin_code import in_site_packages, is_editable, plugin_code, source_hash
from pxp.core.plugins import load_registry, set_registry
from pxp.experiment.pipeline import Runner
from pxp.core.spec import validate_spec
from pxp.testing import plugin_registry

from . import core_plugins
from .core_plugins import ToyPlugin, toy_spec

PLUGIN = '''
from pathlib import Path
from typing import Literal

from pxp.core.contracts import DatasetConfig, DatasetGenerator
from pxp.core.hookspecs import hookimpl

MESSAGE = "{message}"


class Config(DatasetConfig):
    type: Literal["edited_dataset"] = "edited_dataset"


class Generator(DatasetGenerator):
    def __init__(self, cfg):
        self.cfg = cfg

    def generate(self, path, ctx):
        Path(path).write_text(MESSAGE)
        return {{"message": MESSAGE}}


@hookimpl
def pxp_register_datasets(register):
    register("edited_dataset", Config, Generator)
'''


@pytest.fixture
def plugin_source(tmp_path, monkeypatch):
    """A third-party plugin package in a source directory outside site-packages (as a plugin author has it)."""
    src = tmp_path / "src"
    (src / "edited_plugin").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a reload within the same second reads the new source
    yield src / "edited_plugin" / "__init__.py"
    sys.modules.pop("edited_plugin", None)
    set_registry(None)


def registry_with(source, message):
    """The registry a fresh `pxp run` would load after the plugin's source says ``message``."""
    source.write_text(PLUGIN.format(message=message))
    module = importlib.reload(sys.modules["edited_plugin"]) if "edited_plugin" in sys.modules \
        else importlib.import_module("edited_plugin")
    reg = load_registry(strict=True, extra_plugins=[("toy", ToyPlugin()), ("edited", module)], use_entry_points=False)
    set_registry(reg)
    return reg


def run(reg, run_dir):
    spec = validate_spec(toy_spec(datasets={"d": {"type": "edited_dataset"}}, policies={},
                                  evaluations={"e": {"type": "toy_eval", "policies": []}}), reg)
    core_plugins.CALLS.clear()
    Runner(spec, run_dir, registry=reg, quiet=True).run(("datasets", "evaluation"))
    return json.loads((run_dir / "manifest.json").read_text())


def test_editing_a_plugin_recomputes_only_the_units_that_use_it(plugin_source, tmp_path):
    run_dir = tmp_path / "run"
    first = run(registry_with(plugin_source, "one"), run_dir)
    assert (run_dir / "data" / "d.hdf5").read_text() == "one" and core_plugins.CALLS == [("evaluate", "e")]
    code = first["units"]["datasets"]["d"]["code"]
    edited = next(c for c in code if c["name"] == "edited")
    assert edited["source"] == source_hash(plugin_source.parent), "the manifest records the plugin's source hash"

    again = run(registry_with(plugin_source, "one"), run_dir)  # unchanged source: everything cached
    assert again["units"]["datasets"]["d"]["finished"] == first["units"]["datasets"]["d"]["finished"]
    assert core_plugins.CALLS == []

    edited_run = run(registry_with(plugin_source, "edited"), run_dir)  # the author edits the plugin
    assert (run_dir / "data" / "d.hdf5").read_text() == "edited", "the edited plugin's unit is recomputed"
    assert edited_run["units"]["datasets"]["d"]["hash"] != first["units"]["datasets"]["d"]["hash"]
    assert core_plugins.CALLS == [], "the evaluation does not use the edited plugin: still cached"


def test_builtin_plugins_enter_by_name_and_version_only():
    """pxp's own plugins never carry a source hash (docs/architecture.md says why), however they are loaded."""
    for reg in (load_registry(strict=True), plugin_registry()):
        records = [plugin_code(reg, p.name) for p in reg.plugins]
        assert records and all("source" not in r for r in records)
    assert {r["distribution"] for r in (plugin_code(load_registry(strict=True), "libero_scene"),)} == {"pxp"}


def test_working_tree_detection_on_real_distributions(tmp_path, monkeypatch):
    import pluggy

    assert not is_editable("pluggy") and in_site_packages(pluggy.__file__.rsplit("/", 1)[0])
    assert not is_editable("no-such-distribution") and not in_site_packages(tmp_path)
    info = tmp_path / "editable_demo-1.0.dist-info"  # what `pip install -e` leaves (PEP 610)
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: editable-demo\nVersion: 1.0\n")
    (info / "direct_url.json").write_text(json.dumps({"url": "file:///src/editable-demo", "dir_info": {"editable": True}}))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert is_editable("editable-demo")
