"""The drift guard: `pxp doctor` passes on this machine, fails naming the cause on a perturbed scene (real
MuJoCo, the model edited after load), and a run records its preflight and banners a failure."""
import json
import subprocess
import sys

import pytest

from pxp.core import doctor
from pxp.core.hookspecs import hookimpl
from pxp.core.plugins import load_registry, set_registry
from pxp.experiment.pipeline import Runner
from pxp.core.spec import validate_spec

from .core_plugins import ToyPlugin, toy_spec


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PXP_CACHE_DIR", str(tmp_path / "cache"))  # no result kept from another test


def test_doctor_passes_on_this_machine():
    res = subprocess.run([sys.executable, "-c", "from pxp.core.cli import main; main()", "doctor", "--json"],
                         capture_output=True, text=True, timeout=300)
    result = json.loads(res.stdout)
    check = next(c for c in result["checks"] if c["name"] == "libero_bowl_plate")
    assert res.returncode == 0 and result["ok"], check["failures"]
    assert set(check["state_error"]) == {"centre", "far_right"}
    assert set(check["image_error"]) == {"clean", "circle", "orbit", "distractors"}
    assert check["environment"]["libraries"]["mujoco"] and check["environment"]["renderer"]


@pytest.fixture
def perturbed_scene(monkeypatch):
    """Edit every LIBERO scene's MjModel right after it is loaded (what another MuJoCo or asset might do)."""
    from pxp.plugins.scenes.libero.scene import LiberoScene

    setup = LiberoScene._setup_rendering

    def perturb(**change):
        def edited(scene):
            setup(scene)
            if "friction" in change:
                scene.model.geom_friction[scene._bowl_geoms, 0] *= change["friction"]
            if "light" in change:
                scene.model.light_diffuse[:] *= change["light"]
        monkeypatch.setattr(LiberoScene, "_setup_rendering", edited)
    return perturb


def test_dimmer_lights_fail_naming_the_image_error(perturbed_scene):
    from pxp.plugins.scenes.libero.drift import SceneDriftCheck

    perturbed_scene(light=0.9)
    out = SceneDriftCheck().run(quick=True)
    assert any(f.startswith("image error: frame 'clean' mean differs by") for f in out["failures"]), out["failures"]
    assert not any(f.startswith("state error") for f in out["failures"]), "light moves pixels, not physics"


def test_lower_friction_fails_naming_the_state_error(perturbed_scene):
    from pxp.plugins.scenes.libero.drift import SceneDriftCheck

    perturbed_scene(friction=0.8)
    out = SceneDriftCheck().run(quick=True)
    assert any(f.startswith("state error: expert from reset 'centre' is") for f in out["failures"]), out["failures"]
    assert not any(f.startswith("image error") for f in out["failures"])


def test_environment_differences_are_named():
    from pxp.plugins.scenes.libero.drift import environment_notes

    golden = {"libraries": {"mujoco": "3.1.6", "torch": "2.15.0"}, "gl_backend": "egl", "renderer": "llvmpipe"}
    here = {"libraries": {"mujoco": "3.4.0", "torch": "2.15.0"}, "gl_backend": "osmesa", "renderer": "NVIDIA H200"}
    assert environment_notes(here, golden) == [
        "mujoco 3.4.0 here, goldens made with 3.1.6", "GL backend MUJOCO_GL=osmesa here, goldens made with egl",
        "renderer 'NVIDIA H200' here, goldens made with 'llvmpipe'"]


# ---------------------------------------------------------------- the run's preflight (toy plugins)

class Check:
    scene = "toy_scene"

    def __init__(self, name, failures):
        self.name, self.failures, self.runs = name, failures, 0

    def environment(self):
        return {"version": 1}

    def run(self, quick=False):
        self.runs += 1
        return {"failures": list(self.failures), "notes": ["toy 2 here, goldens made with toy 1"]}


class DriftingPlugin:
    def __init__(self, checks):
        self.checks = checks

    @hookimpl
    def pxp_drift_checks(self):
        return self.checks


class BrokenChecks:
    @hookimpl
    def pxp_drift_checks(self):
        raise RuntimeError("golden file unreadable")


def run_toy(tmp_path, *plugins, stages=("datasets", "evaluation", "report")):
    reg = load_registry(strict=True, extra_plugins=[("toy", ToyPlugin()), *plugins], use_entry_points=False)
    set_registry(reg)
    try:
        spec = validate_spec(toy_spec(policies={}, evaluations={"e": {"type": "toy_eval", "policies": []}}), reg)
        Runner(spec, tmp_path, registry=reg, quiet=True).run(stages)
    finally:
        set_registry(None)
    return json.loads((tmp_path / "manifest.json").read_text())


def test_failed_preflight_is_recorded_and_the_report_banners_it(tmp_path):
    failing = Check("toy_drift", ["image error: frame 'clean' mean differs by 9.00 of 255 (tolerance 0.5)"])
    other_scene = Check("elsewhere", ["never run"])
    other_scene.scene = "another_scene"
    manifest = run_toy(tmp_path, ("drifting", DriftingPlugin([failing, other_scene])), ("broken", BrokenChecks()))
    drift = manifest["drift"]
    assert drift["ok"] is False and other_scene.runs == 0, "only the checks of the spec's scene run"
    by_name = {c["name"]: c for c in drift["checks"]}
    assert by_name["toy_drift"]["failures"] == failing.failures
    assert by_name["broken"]["failures"] == ["plugin 'broken' failed to give its drift checks: "
                                             "RuntimeError: golden file unreadable"]
    report = (tmp_path / "report.md").read_text()
    assert "DRIFT CHECK FAILED" in report and "mean differs by 9.00" in report and "toy 2 here" in report
    assert "drift check | FAILED" in report.replace("  ", " ")


def test_passing_preflight_is_kept_per_environment(tmp_path):
    passing = Check("toy_drift", [])
    first = run_toy(tmp_path / "a", ("drifting", DriftingPlugin([passing])), stages=("datasets",))
    second = run_toy(tmp_path / "b", ("drifting", DriftingPlugin([passing])), stages=("datasets",))
    assert first["drift"]["ok"] and passing.runs == 1 and second["drift"]["cached"], "one check per environment"
    passing.environment = lambda: {"version": 2}  # e.g. another MuJoCo: checked again
    run_toy(tmp_path / "c", ("drifting", DriftingPlugin([passing])), stages=("datasets",))
    assert passing.runs == 2


def test_preflight_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("PXP_PREFLIGHT", "0")
    check = Check("toy_drift", ["would fail"])
    manifest = run_toy(tmp_path, ("drifting", DriftingPlugin([check])), stages=("datasets",))
    assert manifest["drift"] is None and check.runs == 0


def test_doctor_summary_names_failures_and_notes():
    result = {"ok": False, "checks": [doctor.run_check("p", Check("c", ["state error: x"]), quick=True)]}
    assert doctor.summary(result) == "c: state error: x; note: toy 2 here, goldens made with toy 1"
