"""The run directory: every path inside it has one home, here.

    runs/<name>/
      spec.resolved.yaml   the spec as run (defaults filled in, sweeps expanded)
      manifest.json        versions, machine, units' status
      .lock                one process at a time (pxp.core.lock)
      .stages/             a marker per unit: <stage>.<name>.json
      data/<dataset>.hdf5  datasets (<dataset>.hdf5.partial while generating)
      checkpoints/<policy>/
      evals/<evaluation>/  result.json, episodes.jsonl (the journal), videos/<policy>-NN.mp4
      results.json         every evaluation's episodes and summaries
      report.md, report.html, plots/
      <plugin>/            a plugin's own artefacts (e.g. probe/)
"""
from __future__ import annotations

from pathlib import Path

from .errors import PxpError

SPEC_FILE = "spec.resolved.yaml"


class RunDir:
    """Paths of one run directory; nothing is created or read until asked."""

    def __init__(self, root):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # -- files at the top
    @property
    def spec(self) -> Path:
        return self.root / SPEC_FILE

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    # -- units
    @property
    def stages(self) -> Path:
        return self.root / ".stages"

    def marker(self, stage: str, name: str) -> Path:
        return self.stages / f"{stage}.{name}.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dataset(self, name: str) -> Path:
        return self.data / f"{name}.hdf5"

    def dataset_partial(self, name: str) -> Path:
        return self.data / f"{name}.hdf5.partial"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, policy: str) -> Path:
        return self.checkpoints / policy

    @property
    def evals(self) -> Path:
        return self.root / "evals"

    def evaluation(self, name: str) -> Path:
        return self.evals / name

    def eval_result(self, name: str) -> Path:
        return self.evaluation(name) / "result.json"

    def eval_journal(self, name: str) -> Path:
        return self.evaluation(name) / "episodes.jsonl"

    def eval_video(self, name: str, policy: str, k: int) -> Path:
        return self.evaluation(name) / "videos" / f"{policy}-{k:02d}.mp4"

    # -- the report and plugins' artefacts
    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def plot(self, filename: str) -> Path:
        return self.plots / filename

    def plugin_dir(self, plugin: str) -> Path:
        """A directory for one plugin's own artefacts (e.g. ``probe/``)."""
        return self.root / plugin

    # -- the resolved spec
    def spec_data(self) -> dict:
        """``spec.resolved.yaml`` as parsed YAML (to apply overrides to, or to hand to another process)."""
        from .spec import parse_yaml

        if not self.spec.exists():
            raise PxpError(f"{self.root} has no {SPEC_FILE}; is it a pxp run directory?")
        return parse_yaml(self.spec)

    def read_spec(self, registry=None):
        """The run's resolved spec, validated with ``registry``'s plugins (the process-wide ones by default)."""
        from .spec import validate_spec

        return validate_spec(self.spec_data(), registry, source=str(self.spec))
