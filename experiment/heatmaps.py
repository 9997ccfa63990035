"""Prediction strips for reports: what each policy predicts on training and out-of-distribution frames.

One PNG per (evaluation, policy), ``plots/<evaluation>_<policy>_heatmaps.png`` (the report embeds
``plots/<evaluation>_*_heatmaps*.png``). Each row is one frame: the input image with the current
end-effector pixel (green dot), then one panel per future step t+1 … t+T, drawn by the head's own
figure (``head.figure``, :class:`pxp.core.contracts.PredictionFigure`): a volume head overlays its
probability map, a point head marks its predicted point. A head without a figure gets
:class:`PointFigure` (the predicted pixel as a red dot), titled with its type.

Rows labelled ``train`` are frames from the policy's training demos (start and middle of demos;
a white ring marks the demo's true future end-effector pixel); ``OOD`` rows are the first frames of
that evaluation's episodes (the scene reset to the episode's offset / view / seed, with the
evaluation's scene overrides). Policies are the evaluation's (sweep groups expanded) plus the
``init_from`` sources of those, so a circle-overlay-pretrained model is shown on its circle frames
and on the robot scenes its fine-tuned policy was evaluated in.

Any failure for one policy is logged and skipped; the report is still written.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pxp.core import execution, io
from pxp.core.camera import Camera
from pxp.core.rundir import RunDir

PANEL = 160  # px per panel (images are resized to this width)
GAP = 4
LABEL_W = 104  # row-label column
TITLE_H = 34
HEADER_H = 18
N_TRAIN = 3  # training-distribution rows
N_OOD = 3  # out-of-distribution rows (first frames of evaluation episodes)

GREEN, RED, WHITE, BG = (40, 220, 60), (235, 40, 40), (255, 255, 255), (250, 250, 250)


# ---------------------------------------------------------------- the default figure

class PointFigure:
    """The head's predicted pixel for each future step as a red dot (world xyz projected with the frame's
    camera, or an image-space track). Heads that predict points use it (with their own ``title``)."""

    legend = "red: predicted point, projected with the camera"

    def __init__(self, title: str = "points"):
        self.title = title

    def predict(self, policy, frame: dict) -> dict:
        state = {k: frame[k] for k in ("eef_pos", "eef_pixel", "gripper")}
        _, dec = policy.infer(frame["image"], state, frame["camera"])
        return {"pixel": dec["pixel"][0]}

    def panel(self, base, row: dict, k: int, font, scale):
        from PIL import ImageDraw

        p = base.copy()
        draw_dot(ImageDraw.Draw(p), scale(row["pixel"][k]), RED, r=5)
        return p


def figure_of(policy):
    """The head's figure, else the default point figure titled with the head's type."""
    figure = policy.head.figure
    return figure if figure is not None else PointFigure((policy.config.get("head") or {}).get("type", "head"))


def draw_dot(draw, xy, colour, r=4, ring=False) -> None:
    """A dot (or a ring) at panel coordinates ``xy``; nothing for a missing or non-finite point."""
    if xy is None or not np.all(np.isfinite(xy)):
        return
    x, y = xy
    box = (x - r, y - r, x + r, y + r)
    if ring:
        draw.ellipse(box, outline=colour, width=2)
    else:
        draw.ellipse(box, fill=colour, outline=(0, 0, 0))


# ---------------------------------------------------------------- entry point

def write_strips(run_dir: Path, spec_dict: dict, device="cpu", *, n_train: int = N_TRAIN, n_ood: int = N_OOD,
                 log=None, registry=None) -> list[Path]:
    """Write the strips for every (evaluation, policy) of a run; returns the PNGs written.

    ``spec_dict`` is the resolved spec as a dict (``spec.resolved.yaml``). Checkpoints are read from
    ``run_dir/checkpoints/<policy>``, datasets from ``run_dir/data/<name>.hdf5`` and episodes from
    ``run_dir/results.json``. A policy that fails (no checkpoint, missing dataset, …) is logged via
    ``log`` (default: stderr) and skipped. ``registry``: whose plugins load the policies and the scene.
    """
    if registry is None:
        from pxp.core.plugins import get_registry

        registry = get_registry()
    run_dir = Path(run_dir)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    policies = spec_dict.get("policies") or {}
    groups = spec_dict.get("policy_groups") or {}
    work = {ev: _with_sources([n for n in _expand(_referenced(cfg), groups) if n in policies], policies)
            for ev, cfg in (spec_dict.get("evaluations") or {}).items()}
    if not any(work.values()):
        return []
    import timm  # noqa: F401  (triton before any scene renders: the other order segfaults)

    results = io.read_json(RunDir(run_dir).results, {}) or {}
    episodes = results.get("episodes") or []
    written: list[Path] = []
    for ev_name, names in work.items():
        frames = _OodFrames(spec_dict, spec_dict["evaluations"][ev_name] or {}, registry)
        try:
            for pol, ran in names.items():
                try:
                    eps = [e for e in episodes if e.get("evaluation") == ev_name and e.get("policy") == ran]
                    path = _strip(run_dir, spec_dict, ev_name, pol, eps, frames, device, n_train, n_ood, log, registry)
                    if path is not None:
                        written.append(path)
                except Exception as exc:  # one policy must not take the report down
                    log(f"heatmaps: {ev_name}/{pol} skipped: {type(exc).__name__}: {exc}")
        finally:
            frames.close()
    return written


def _referenced(ev_cfg) -> list[str]:
    """Policy names an evaluation names (a list, one name, or a dict of lists, e.g. data_efficiency)."""
    value = (ev_cfg or {}).get("policies")
    if isinstance(value, dict):
        return [n for names in value.values() for n in ([names] if isinstance(names, str) else names)]
    if isinstance(value, str):
        return [value]
    return list(value or [])


def _with_sources(names: list[str], policies: dict) -> dict[str, str]:
    """{policy: the policy whose episodes give its OOD frames}: the evaluated policies, then the
    ``init_from`` sources they were fine-tuned from (e.g. a circle-overlay-pretrained model, shown on
    the robot scenes its fine-tuned policy was evaluated in)."""
    out = {n: n for n in names}
    for n in names:
        src = (policies.get(n) or {}).get("init_from")
        if isinstance(src, str) and src in policies and src not in out:
            out[src] = n
    return out


def _expand(names, groups: dict) -> list[str]:
    out: list[str] = []
    for n in names:
        out.extend(groups.get(n, [n]) if isinstance(groups, dict) else [n])
    return out


# ---------------------------------------------------------------- one strip

def _strip(run_dir, spec, ev_name, pol, eps, frames, device, n_train, n_ood, log, registry) -> Path | None:
    from .policy import load_policy, read_marker

    ckpt = RunDir(run_dir).checkpoint(pol)
    policy = load_policy(ckpt, device=device, registry=registry)
    marker = read_marker(ckpt) or {}
    stride = int(policy.target_stride or 1)
    try:
        train_frames = _train_frames(run_dir, spec["policies"][pol], marker, n_train, policy.horizon, stride)
    except Exception as exc:  # e.g. the dataset was deleted after training: keep the OOD rows
        log(f"heatmaps: {ev_name}/{pol}: no training frames ({type(exc).__name__}: {exc})")
        train_frames = []
    try:
        ood_frames = frames.get(eps, n_ood)
    except Exception as exc:  # no scene here: keep the training rows
        log(f"heatmaps: {ev_name}/{pol}: no OOD frames ({type(exc).__name__}: {exc})")
        ood_frames = []
    if not train_frames + ood_frames:
        log(f"heatmaps: {ev_name}/{pol}: no frames to draw")
        return None
    image = draw_strip(policy, train_frames + ood_frames, f"{ev_name} - {pol} ({{title}}, step {policy.step})")
    path = RunDir(run_dir).plot(f"{ev_name}_{pol}_heatmaps.png")
    with io.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def draw_strip(policy, frames: list[dict], title: str = "{title}", figure=None):
    """The strip of ``policy``'s predictions on ``frames`` (PIL image), drawn by the head's figure (or
    ``figure``): a frame holds ``image`` (H, W, 3 uint8), ``camera``, ``eef_pos``, ``eef_pixel``, ``gripper``,
    and ``kind``, ``label`` and ``truth`` (the true future pixels, or None). ``{title}`` in ``title`` becomes the
    figure's title. :func:`pxp.testing.check_figure` draws through here, exactly as the report does."""
    figure = figure or figure_of(policy)
    rows = [{**frame, **figure.predict(policy, frame)} for frame in frames]
    legend = figure.legend + "; white ring: the demo's true future eef"
    return _compose(rows, policy.horizon, title.replace("{title}", figure.title), legend, figure)


# ---------------------------------------------------------------- frames

def _train_frames(run_dir: Path, pol_cfg: dict, marker: dict, n: int, horizon: int, stride: int) -> list[dict]:
    """Frames from the policy's training demos: the start of one demo, the middle of the next, …"""
    from .data import open_dataset

    if n <= 0:
        return []
    path = RunDir(run_dir).dataset(pol_cfg["dataset"])
    out = []
    with open_dataset(path) as f:
        demos = list(((marker.get("demos") or {}).get("train")) or range(len(f)))
        demos = [d for d in demos if 0 <= int(d) < len(f)]
        if not demos:
            return []
        picks = np.unique(np.linspace(0, len(demos) - 1, min(n, len(demos))).round().astype(int))
        choices = [(int(demos[p]), k) for k, p in enumerate(picks)]
        while len(choices) < n:  # fewer demos than rows: more frames of the same demos
            choices.append((choices[len(choices) % len(picks)][0], len(choices)))
        for d, k in choices[:n]:
            length = f.demos[d].length
            t = 0 if k % 2 == 0 else length // 2
            if k >= 2 and k % 2 == 0:
                t = min(length - 1, length // 4)
            eef_pix = f.read(d, "obs/eef_pixel")
            fut = np.minimum(t + stride * np.arange(1, horizon + 1), length - 1)
            out.append({"kind": "train", "label": f"demo {f.demos[d].episode}, t={t}",
                        "image": f.read(d, f"obs/{f.image_key}", t), "camera": f.camera(d),
                        "eef_pos": f.read(d, "obs/eef_pos", t), "eef_pixel": eef_pix[t],
                        "gripper": float(f.read(d, "obs/gripper", t)), "truth": eef_pix[fut]})
    return out


class _OodFrames:
    """First frames of an evaluation's episodes, rendered once per (offset, view, seed) and shared by
    all of its policies (they ran on the same positions). The scene is built on first use."""

    def __init__(self, spec: dict, ev_cfg: dict, registry):
        self.spec, self.ev_cfg, self.registry = spec, ev_cfg, registry
        self.scene, self.cache, self.error, self.shared = None, {}, None, False

    def get(self, eps: list, n: int) -> list[dict]:
        if n <= 0:
            return []
        chosen = _pick_episodes(eps, n)
        return [self._frame(e) for e in chosen]

    def _frame(self, e: dict) -> dict:
        offset = tuple(float(v) for v in (e.get("offset") or (0.0, 0.0)))
        view = None if e.get("view") is None else tuple(float(v) for v in e["view"])
        seed = int(e.get("seed") or 0)
        key = (offset, view, seed)
        if key not in self.cache:
            scene = self._scene()
            obs = scene.reset(offset=offset, view=view, seed=seed)
            obs = scene.observe() if obs is None or "image" not in obs else obs
            label = f"view ({view[0]:g}, {view[1]:g})" if view else f"offset ({offset[0]:+.2f}, {offset[1]:+.2f})"
            self.cache[key] = {"kind": "OOD", "label": label, "image": np.array(obs["image"], dtype=np.uint8),
                               "camera": Camera.from_dict(scene.camera.to_dict()),
                               "eef_pos": np.asarray(obs["eef_pos"], float), "eef_pixel": np.asarray(obs["eef_pixel"], float),
                               "gripper": float(obs["gripper"]), "truth": None}
        return self.cache[key]

    def _scene(self):
        if self.error is not None:  # tried once for this evaluation: do not rebuild for every policy
            raise self.error
        if self.scene is None:
            create = self.registry.create
            try:
                base = dict(self.spec.get("scene") or {})
                merged = {**base, **(self.ev_cfg.get("scene") or {})}
                model = self.registry.get("scenes", merged["type"]).config_model.model_validate(merged)
                if execution.keeping_inline_cache():  # the run's scene (same config) is reused, and closed by the run
                    self.scene = execution.worker_cache(model.model_dump_json(), lambda: create("scenes", model), slot="scene")
                    self.shared = True
                else:
                    self.scene = create("scenes", model)
            except Exception as exc:
                self.error = exc
                raise
        return self.scene

    def close(self) -> None:
        if self.scene is not None and not self.shared:
            self.scene.close()
            self.scene = None


def _pick_episodes(eps: list, n: int) -> list[dict]:
    """Up to n episodes with distinct (offset, view, seed), evenly spread, error-free ones first."""
    seen, uniq = set(), []
    for e in sorted(eps, key=lambda e: (e.get("error") is not None, str(e.get("key") or ""))):
        k = (tuple(e.get("offset") or ()), tuple(e.get("view") or ()), e.get("seed"))
        if k not in seen:
            seen.add(k)
            uniq.append(e)
    if len(uniq) <= n:
        return uniq
    idx = np.unique(np.linspace(0, len(uniq) - 1, n).round().astype(int))
    return [uniq[i] for i in idx]


# ---------------------------------------------------------------- drawing (Pillow)

def strip_size(horizon: int, rows: int, image_hw: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """(width, height) of a strip with ``rows`` rows of (1 + horizon) panels of images ``image_hw``."""
    ph = _panel_height(image_hw)
    return LABEL_W + (horizon + 1) * (PANEL + GAP), TITLE_H + HEADER_H + rows * (ph + GAP)


def _panel_height(image_hw) -> int:
    H, W = image_hw
    return max(1, int(round(PANEL * H / W)))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _compose(rows: list[dict], horizon: int, title: str, legend: str = "", figure=None):
    from PIL import Image, ImageDraw

    H, W = rows[0]["image"].shape[:2]
    ph = _panel_height((H, W))
    width, height = strip_size(horizon, len(rows), (H, W))
    canvas = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(canvas)
    small, big = _font(11), _font(13)
    draw.text((GAP, 3), title, fill=(0, 0, 0), font=big)
    while legend and draw.textlength(legend, font=small) > width - 2 * GAP:  # narrow strips: truncate
        legend = legend[:-5].rstrip() + "…" if len(legend) > 8 else ""
    draw.text((GAP, 20), legend, fill=(60, 60, 60), font=small)
    for c, head in enumerate(["input (t), green = eef"] + [f"t+{k}" for k in range(1, horizon + 1)]):
        draw.text((LABEL_W + c * (PANEL + GAP) + 2, TITLE_H + 2), head, fill=(40, 40, 40), font=small)
    for r, row in enumerate(rows):
        y = TITLE_H + HEADER_H + r * (ph + GAP)
        draw.text((GAP, y + 4), row["kind"], fill=(0, 0, 0) if row["kind"] == "train" else (170, 20, 20), font=big)
        for i, line in enumerate(_wrap(row.get("label", ""), 16)):
            draw.text((GAP, y + 24 + 13 * i), line, fill=(70, 70, 70), font=small)
        for c, panel in enumerate(_panels(row, horizon, (PANEL, ph), small, figure or PointFigure())):
            canvas.paste(panel, (LABEL_W + c * (PANEL + GAP), y))
    return canvas


def _wrap(text: str, n: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > n:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return lines + ([cur] if cur else [])


def _panels(row: dict, horizon: int, size: tuple[int, int], font, figure) -> list:
    from PIL import Image, ImageDraw

    img = np.asarray(row["image"], dtype=np.uint8)
    H, W = img.shape[:2]
    sx, sy = size[0] / W, size[1] / H
    base = Image.fromarray(img).resize(size, Image.BILINEAR)

    def scale(uv):
        return None if uv is None else (float(uv[0]) * sx, float(uv[1]) * sy)

    first = base.copy()
    draw_dot(ImageDraw.Draw(first), scale(row["eef_pixel"]), GREEN)
    panels = [first]
    truth = row.get("truth")
    for k in range(horizon):
        p = figure.panel(base, row, k, font, scale)
        d = ImageDraw.Draw(p)
        if truth is not None:
            draw_dot(d, scale(truth[k]), WHITE, r=6, ring=True)
        draw_dot(d, scale(row["eef_pixel"]), GREEN, r=2)
        panels.append(p)
    return panels
