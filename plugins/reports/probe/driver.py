"""``pxp probe``: does a policy's grasp target follow the object? Measured without a rollout.

The seed report explains PARA's extrapolation with "the heatmap follows the object". The probe
measures that for any policy, of any head, from its checkpoint:

1. **Sweep.** Objects (bowl and plate shifted together, as the position grid shifts them) along a
   line of ``points`` offsets across the scene's workspace in dx through the workspace centre, the
   same in dy, and the camera at the default offset over θ ∈ ``thetas`` × φ ∈ ``phis``.
2. **A defined state**, the same for every policy: the scene's ``pregrasp(offset, view, seed)`` —
   the scripted expert has driven the arm to its pre-grasp pose above the bowl (the moment before
   it descends), gripper open. That frame is rendered and given to each policy exactly as a
   rollout gives it (:func:`pxp.experiment.rollout.predict_targets`: copies, validated ``(T, 4)`` targets).
3. **The grasp target**: the first predicted target at which the policy commands the gripper
   closed (gripper ≥ 0.5); if none in its horizon, its lowest predicted target (the end of the
   descent it predicts). No policy internals are read, so heatmap and regression heads compare.
4. **Error** = horizontal (xy) distance, in cm, from the grasp target to the expert's own grasp
   point for that state (``error_cm``), and to the nearest of the scene's valid grasp points
   (``error_any_cm``: the LIBERO bowl can be grasped on either rim side; with ``grasp_rim: nearer_y0``
   the expert switches side at y = 0, and a policy that follows the bowl but keeps its training side
   differs only there).

The core knows nothing about bowls: the scene provides ``pregrasp`` and ``offset_extent``; privileged
test policies (the scripted expert) get ``prepare(scene, ...)`` and ``seek(steps)`` as in an
evaluation. Results: ``RUN_DIR/probe/probe.json`` (every sample, written atomically), plots
``RUN_DIR/plots/probe_*.png`` and a section in the report.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pxp.core import io
from pxp.core.errors import PxpError
from pxp.core.rundir import RunDir

FORMAT = "pxp-probe/1"
AXES = ("x", "y", "view")
AXIS_LABEL = {"x": "dx (m), away from the robot", "y": "dy (m), image left → right", "view": "camera θ (degrees)"}


@dataclass(frozen=True)
class ProbeSettings:
    points: int = 9  # offsets per position line, both workspace ends included
    thetas: tuple = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    phis: tuple = (0.0, 90.0, 180.0, 270.0)
    seed: int = 0  # the scene seed of every probe state (robot noise, object jitter)


SMOKE_SETTINGS = ProbeSettings(points=3, thetas=(0.0, 25.0), phis=(0.0,))


@dataclass(frozen=True)
class ProbePoint:
    axis: str  # x | y | view
    position: float  # the swept coordinate: dx or dy (m), or θ (degrees)
    offset: tuple
    view: tuple | None = None
    labels: dict = field(default_factory=dict)


# ---------------------------------------------------------------- the sweep

def sweep(workspace, default_offset, settings: ProbeSettings) -> list[ProbePoint]:
    """Lines through the workspace centre along dx and dy, then viewpoints at the default offset."""
    (x0, x1), (y0, y1) = workspace
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    n = max(2, int(settings.points))
    pts = [ProbePoint("x", float(dx), (float(dx), cy)) for dx in np.linspace(x0, x1, n)]
    pts += [ProbePoint("y", float(dy), (cx, float(dy))) for dy in np.linspace(y0, y1, n)]
    off = tuple(float(v) for v in default_offset)
    for th in sorted({float(t) for t in settings.thetas}):
        for ph in ([0.0] if th == 0 else [float(p) for p in settings.phis]):  # θ = 0 is one view for every φ
            pts.append(ProbePoint("view", th, off, (th, ph), {"phi": ph}))
    return pts


def grasp_target(targets: np.ndarray) -> tuple[int, str]:
    """(index, rule) of the grasp target in a (T, 4) prediction: the first closing target, else the lowest."""
    closing = np.flatnonzero(targets[:, 3] >= 0.5)
    if len(closing):
        return int(closing[0]), "close"
    return int(np.argmin(targets[:, 2])), "lowest"


def probe_policies(policies: dict, scene, points: list[ProbePoint], seed: int = 0, log=None) -> dict:
    """Query every policy at every probe point. ``policies``: name → object with ``predict``.
    Returns {"samples": [...], "timing": {...}}; each frame is rendered once and shared."""
    from pxp.experiment.rollout import predict_targets

    samples, frame_s, query_s = [], 0.0, {name: 0.0 for name in policies}
    at = None  # (offset, seed) of the pre-grasp state the scene is in now, if any
    for pt in points:
        t0 = time.perf_counter()
        if at == (pt.offset, seed) and scene.can_set_view:
            # Same state, another camera: the view changes no physics, so only the frame is rendered again.
            scene.set_view(pt.view)
            state = {**state, "obs": scene.observe()}
        else:
            state = scene.pregrasp(offset=pt.offset, view=pt.view, seed=seed)
        at = (pt.offset, seed)
        obs, camera = state["obs"], scene.camera
        frame_s += time.perf_counter() - t0
        grasps = np.asarray(state["grasps"], float).reshape(-1, 3)
        for name, policy in policies.items():
            t0 = time.perf_counter()
            if policy.privileged:  # privileged test policies plan from the scene, as in an evaluation
                policy.prepare(scene, offset=pt.offset, view=pt.view, seed=seed)
                at = None  # prepare reset the scene
            policy.reset()
            policy.seek(state["steps"])
            targets = predict_targets(policy, obs, camera)
            query_s[name] += time.perf_counter() - t0
            samples.append(_sample(name, pt, targets, grasps, state))
    if log:
        log(f"probe: {len(points)} states rendered in {frame_s:.1f}s; "
            + ", ".join(f"{n} {s:.1f}s" for n, s in query_s.items()))
    return {"samples": samples, "timing": {"frames_seconds": round(frame_s, 2), "states": len(points),
                                           "policy_seconds": {n: round(s, 2) for n, s in query_s.items()}}}


def _sample(name: str, pt: ProbePoint, targets: np.ndarray, grasps: np.ndarray, state: dict) -> dict:
    i, rule = grasp_target(targets)
    pred = targets[i, :3]
    dists = np.linalg.norm(grasps[:, :2] - pred[:2], axis=1)
    return {"policy": name, "axis": pt.axis, "position": round(pt.position, 5),
            "offset": [round(v, 5) for v in pt.offset], "view": None if pt.view is None else list(pt.view),
            **pt.labels, "true": grasps[0].round(5).tolist(), "predicted": pred.round(5).tolist(),
            "rule": rule, "index": i, "error_cm": round(100 * float(dists[0]), 3),
            "error_any_cm": round(100 * float(dists.min()), 3),
            "dz_cm": round(100 * float(pred[2] - grasps[0][2]), 3),
            "object": np.asarray(state.get("object", grasps[0]), float).round(5).tolist(),
            "targets": targets.round(5).tolist()}


# ---------------------------------------------------------------- a run directory

def run_probe(run_dir, *, device: str = "cpu", settings: ProbeSettings | None = None, force: bool = False,
              log=None, registry=None) -> Path:
    """Probe every trained policy of a run; write ``probe/probe.json`` and the plots. Cached: nothing is
    redone when the checkpoints, the scene and the settings are unchanged (``force`` redoes it)."""
    run_dir = Path(run_dir)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    registry = registry if registry is not None else _default_registry()
    spec = RunDir(run_dir).read_spec(registry)
    checkpoints = trained_policies(run_dir, spec)
    if not checkpoints:
        raise PxpError(f"{run_dir}: no trained policy to probe (no complete checkpoint under "
                       f"{RunDir(run_dir).checkpoints}/<policy>); run `pxp run SPEC` first")
    settings = settings or ProbeSettings(seed=spec.seed)
    scene_cfg = spec.scene
    key = io.config_hash(FORMAT, asdict(settings), scene_cfg, {n: _checkpoint_id(p) for n, p in checkpoints.items()})
    path = probe_file(run_dir)
    old = io.read_json(path)
    if not force and isinstance(old, dict) and old.get("key") == key:
        log(f"probe: up to date ({path})")
        write_plots(run_dir, old)
        return path
    data = _probe_run(run_dir, spec, checkpoints, scene_cfg, settings, device, log, registry)
    data["key"] = key
    io.write_json(path, data)
    write_plots(run_dir, data)
    return path


def probe_file(run_dir) -> Path:
    return RunDir(run_dir).plugin_dir("probe") / "probe.json"


def trained_policies(run_dir: Path, spec) -> dict[str, Path]:
    """name → checkpoint directory for every complete checkpoint, in the spec's policy order."""
    from pxp.experiment.policy import read_marker

    root = RunDir(run_dir).checkpoints
    names = list(spec.policies)
    if root.is_dir():
        names += sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in names)
    return {n: root / n for n in names if (root / n).is_dir() and read_marker(root / n)}


def _default_registry():
    from pxp.core.plugins import get_registry

    return get_registry()


def _checkpoint_id(ckpt: Path) -> dict:
    from pxp.experiment.policy import read_marker

    m = read_marker(ckpt) or {}
    return {"step": m.get("step"), "sha256": m.get("sha256")}


def _probe_run(run_dir, spec, checkpoints, scene_cfg, settings, device, log, registry) -> dict:
    from pxp.experiment.evaluation import offset_extent
    from pxp.experiment.policy import load_policy

    t0 = time.perf_counter()
    # Policies (torch, timm → triton) load BEFORE the scene renders: the other order segfaults on llvmpipe.
    policies = {}
    for name, ckpt in checkpoints.items():
        try:
            policies[name] = load_policy(ckpt, device=device, registry=registry)
        except Exception as exc:  # one unreadable checkpoint must not hide the others
            log(f"probe: {name} skipped: {type(exc).__name__}: {exc}")
    if not policies:
        raise PxpError(f"{run_dir}: none of the checkpoints {sorted(checkpoints)} could be loaded (see above)")
    load_s = time.perf_counter() - t0
    points = sweep(offset_extent(scene_cfg), scene_cfg.offset, settings)
    t0 = time.perf_counter()
    scene = registry.create("scenes", scene_cfg)
    try:
        build_s = time.perf_counter() - t0
        with _one_torch_thread(device):
            result = probe_policies(policies, scene, points, seed=settings.seed, log=log)
    finally:
        scene.close()
    result["timing"].update(load_seconds=round(load_s, 2), scene_build_seconds=round(build_s, 2),
                            image_size=scene_cfg.image_size, device=str(device))
    info = {n: {"head": pol.config.get("head", {}).get("type"), "step": pol.step, "horizon": pol.horizon,
                "train_region": training_region(run_dir, spec, n)} for n, pol in policies.items()}
    return {"format": FORMAT, "settings": asdict(settings), "scene": scene_cfg.model_dump(mode="json"),
            "workspace": [list(a) for a in offset_extent(scene_cfg)],
            "policies": info, **result, "summary": summarize(result["samples"], info)}


@contextlib.contextmanager
def _one_torch_thread(device: str):
    """One frame at a time through a small model: on a busy CPU a second intra-op thread only adds
    contention (measured on 2 shared cores: 22–35 ms a query with 1 thread, 0.1–0.7 s with 2)."""
    import torch

    before = torch.get_num_threads()
    if str(device) == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- training region

def training_region(run_dir: Path, spec, policy: str) -> dict | None:
    """Offsets and views of the demos the policy trained on, from its dataset file and checkpoint
    marker (``demos.train``): {"offsets": [[dx, dy], ...], "thetas": [...]}; None if unreadable."""
    from pxp.experiment.data import open_dataset
    from pxp.experiment.policy import read_marker

    pol = spec.policies.get(policy)
    marker = read_marker(RunDir(run_dir).checkpoint(policy)) or {}
    dataset = pol.dataset if pol is not None else marker.get("dataset")
    if not dataset or not RunDir(run_dir).dataset(dataset).exists():
        return None
    try:
        with open_dataset(RunDir(run_dir).dataset(dataset)) as f:
            chosen = (marker.get("demos") or {}).get("train")
            idx = [int(i) for i in (range(len(f)) if chosen is None else chosen) if 0 <= int(i) < len(f)]
            attrs = [f.demos[i].attrs for i in idx]
    except Exception:  # a dataset that does not open says nothing about the region; the plot says "unknown"
        return None
    offsets = [np.asarray(a["offset"], float).round(5).tolist() for a in attrs if "offset" in a]
    thetas = [float(np.asarray(a["viewpoint"], float)[0]) for a in attrs if "viewpoint" in a]
    return {"offsets": offsets, "thetas": thetas} if offsets or thetas else None


def axis_range(region: dict | None, axis: str):
    """(lo, hi) of the training positions' coordinate along a probe axis, or None."""
    if not region:
        return None
    vals = ([o[0] for o in region.get("offsets", [])] if axis == "x" else
            [o[1] for o in region.get("offsets", [])] if axis == "y" else region.get("thetas", []))
    return (min(vals), max(vals)) if vals else None


def in_region(position: float, rng, tol: float = 1e-6) -> bool | None:
    return None if rng is None else bool(rng[0] - tol <= position <= rng[1] + tol)


# ---------------------------------------------------------------- summary

def summarize(samples: list[dict], info: dict) -> dict:
    """policy → axis → {n, mean/max error, inside / outside the training range}."""
    out: dict = {}
    for name in dict.fromkeys(s["policy"] for s in samples):
        region = (info.get(name) or {}).get("train_region")
        out[name] = {}
        for axis in AXES:
            rows = [s for s in samples if s["policy"] == name and s["axis"] == axis]
            if not rows:
                continue
            rng = axis_range(region, axis)
            inside = [s for s in rows if in_region(s["position"], rng)]
            outside = [s for s in rows if in_region(s["position"], rng) is False]
            out[name][axis] = {"n": len(rows), "train_range": rng, **_errors(rows, ""),
                               **_errors(inside, "inside_"), **_errors(outside, "outside_")}
    return out


def _errors(rows: list[dict], prefix: str) -> dict:
    if not rows:
        return {f"{prefix}n": 0}
    e = np.array([s["error_cm"] for s in rows])
    a = np.array([s["error_any_cm"] for s in rows])
    stats = {"median_cm": np.median(e), "mean_cm": e.mean(), "max_cm": e.max(), "median_any_cm": np.median(a)}
    return {f"{prefix}n": len(rows), **{prefix + k: round(float(v), 2) for k, v in stats.items()}}


# ---------------------------------------------------------------- plots

def plot_paths(run_dir: Path) -> dict[str, Path]:
    return {axis: RunDir(run_dir).plot(f"probe_{axis}.png") for axis in AXES}


def write_plots(run_dir: Path, data: dict) -> dict[str, Path]:
    from pxp.experiment import plots

    written = {}
    regions = {n: (p or {}).get("train_region") for n, p in (data.get("policies") or {}).items()}
    for axis, path in plot_paths(run_dir).items():
        rows = [s for s in data.get("samples", []) if s["axis"] == axis]
        if rows:
            ranges = {n: axis_range(r, axis) for n, r in regions.items()}
            written[axis] = plots.probe_axis(rows, axis, ranges, path, xlabel=AXIS_LABEL[axis])
    return written


def read_spec_seed(run_dir, registry=None) -> int:
    return RunDir(run_dir).read_spec(registry).seed


def summary_rows(data: dict) -> list[list]:
    """[policy, axis, n, inside, outside, max] with 'median (median to the nearest rim side)' cells
    (medians: an untrained policy's target can land metres away, which would swamp a mean)."""
    rows = []
    for name, axes in (data.get("summary") or {}).items():
        for axis, s in axes.items():
            rows.append([name, axis, s["n"], _cell(s, "inside_"), _cell(s, "outside_"), f"{s['max_cm']:.1f}"])
    return rows


def _cell(s: dict, prefix: str) -> str:
    if not s.get(f"{prefix}n"):
        return "–" if s.get("train_range") is not None else "range unknown"
    return f"{s[prefix + 'median_cm']:.1f} ({s[prefix + 'median_any_cm']:.1f}), n={s[prefix + 'n']}"


def ensure_probe(run_dir, device: str = "cpu", log=None, registry=None) -> Path | None:
    """The report's call: probe a run that has trained policies, with the settings of an earlier probe
    (``pxp probe --points …``) or the defaults; cached like :func:`run_probe`. None: nothing to probe."""
    run_dir = Path(run_dir)
    spec = RunDir(run_dir).read_spec(registry)
    if not trained_policies(run_dir, spec):
        return None
    old = io.read_json(probe_file(run_dir))
    settings = SMOKE_SETTINGS if spec.smoke else None  # a smoke run checks the path, not the numbers
    if isinstance(old, dict) and isinstance(old.get("settings"), dict):
        s = old["settings"]
        settings = ProbeSettings(points=int(s["points"]), thetas=tuple(s["thetas"]), phis=tuple(s["phis"]),
                                 seed=int(s["seed"]))
    return run_probe(run_dir, device=device, settings=settings, log=log, registry=registry)
