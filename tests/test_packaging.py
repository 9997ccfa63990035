"""Packaging: every package directory is installed, and the example third-party plugin works."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_listed_in_pyproject():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = {v: k for k, v in cfg["package-dir"].items()}
    found = set()
    for top, name in mapping.items():
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed, f"missing from pyproject: {found - listed}; stale: {listed - found}"


def test_builtin_entry_points_resolve_to_modules():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    dirs = cfg["tool"]["setuptools"]["package-dir"]
    for name, target in cfg["project"]["entry-points"]["pxp"].items():
        package = max((p for p in dirs if target.startswith(p + ".")), key=len)  # pxp.plugins, pxp.experiment
        rel = Path(dirs[package], *target[len(package) + 1:].split("."))
        assert (REPO / rel / "__init__.py").exists() or (REPO / rel).with_suffix(".py").exists(), \
            f"entry point {name} → {target}: no module {rel}.py or plugin folder {rel}/"


def test_example_plugin_installs_and_is_listed(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO / "examples" / "pxp-cnn-backbone")], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", "from pxp.core.cli import main; main()", "list-plugins", "--json"],
                         capture_output=True, text=True, env=env, check=True)
    comp = next(c for c in json.loads(out.stdout)["components"] if c["name"] == "timm_cnn")
    assert (comp["kind"], comp["distribution"], comp["version"]) == ("backbone", "pxp-cnn-backbone", "0.2.0")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(REPO / "examples" / "pxp-cnn-backbone" / "tests")],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_example_plugin_is_usable_in_a_spec(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO / "examples" / "pxp-cnn-backbone")], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-c", "from pxp.core.cli import main; main()", "validate",
                          str(REPO / "specs" / "quickstart.yaml"),
                          "--set", "policies.para.backbone={type: timm_cnn, model: resnet18, stage: 1, image_size: 128}"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    bad = subprocess.run([sys.executable, "-c", "from pxp.core.cli import main; main()", "validate",
                          str(REPO / "specs" / "quickstart.yaml"), "--set", "policies.para.backbone={type: timm_cnn, stgae: 3}"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "policies.para.backbone.stgae" in bad.stderr and "Traceback" not in bad.stderr
