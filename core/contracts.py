"""The contracts between pxp's framework and its plugins, in one file.

A plugin registers a component with ``register(name, config_model, factory)`` (:mod:`pxp.core.hookspecs`);
``factory(config, ...)`` builds an object that satisfies the kind's protocol below. The protocols are
structural (``typing.Protocol``): nothing needs to inherit from them; they document what the framework
calls and what it expects back, and :mod:`pxp.testing` checks them on a built object. Optional methods
are marked as such; everything else is required.

Two declarations live on the *config model* (class attributes, so they are known before anything is
built, e.g. by ``pxp validate``):

- a head's config declares ``output_kind: ClassVar[str]``, the kind of output it produces (built-in:
  ``"volume"``, ``"regression"``; a plugin may introduce its own), and may declare ``label`` (how
  reports name the head);
- an objective's config declares ``accepts: ClassVar[tuple[str, ...]]``, the head output kinds it
  has a loss for. ``pxp validate`` rejects a policy whose objective does not accept its head's kind.

Torch appears only in annotations (as strings): importing this module imports nothing heavy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Protocol, runtime_checkable

# ---------------------------------------------------------------- models

@runtime_checkable
class Backbone(Protocol):
    """Images → features. ``factory(config)``.

    ``forward(images (B, 3, S, S) normalised) -> (feature_map (B, C, h, w), cls (B, C))`` with
    ``C == embed_dim``; ``weights_info`` says where the weights came from (``{"source": ...}``).

    Optional, for training from cached features when a leading part is frozen (pxp.experiment.feature_cache):
    ``frozen_key() -> dict | None`` (what the frozen part computes; None: nothing frozen),
    ``frozen_features(images) -> Tensor (B, ...)`` (the frozen part alone: no parameter in it trains) and
    ``from_frozen(features) -> (feature_map, cls)`` (the rest), so that
    ``forward(x) == from_frozen(frozen_features(x))``."""

    embed_dim: int
    patch_size: int
    image_size: int
    weights_info: dict

    def __call__(self, images: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]: ...


class HeadConfig(Protocol):
    """A head's config model: ``type: Literal[name]``, ``horizon`` and the class-level declarations."""

    output_kind: ClassVar[str]
    label: ClassVar[str]  # optional: how reports name the head (default: its type)
    type: str
    horizon: int


@dataclass
class HeadSetup:
    """What a head may use once before training (:meth:`Head.prepare`)."""

    workspace: tuple | None  # (low xyz, high xyz, source): the scene's box of end-effector targets, if it has one
    log: Callable[[str], None]


@runtime_checkable
class Head(Protocol):
    """Features → future targets. ``factory(config, backbone)``; reads ``backbone.embed_dim``.

    - ``forward(feature_map, cls, cond) -> out``: ``cond`` holds ``eef_uv`` (B, 2), ``eef_pos`` (B, 3) world
      metres, ``gripper`` (B,) 0 open .. 1 closed and, when training with teacher forcing, ``target_uv``
      (B, T, 2); ``out`` is a dict of tensors whose layout the head's ``output_kind`` defines (it is what
      objectives receive). A ``uv`` is a pixel of the batch image divided by its size, ``(u / W, v / H)`` in
      [0, 1], u along columns and v along rows from the top-left corner (pixel [row j, col i] has its
      centre at ``((i + .5) / W, (j + .5) / H)``), so it survives the resize to the backbone's input.
    - ``decode(out, cameras) -> {"xyz": (B, T, 3) world metres, "pixel": (B, T, 2), "gripper": (B, T) in
      [0, 1]}`` (numpy): what rollouts execute; ``pixel`` is in the pixels of ``cameras[b]`` (its width and
      height, the frame's image), and ``cameras[b].unproject(pixel, z)`` takes those pixels and a world
      height z (metres), not a uv and not a depth.
    - optional ``prepare(setup: HeadSetup) -> dict | None``: one-time setup before training (e.g. a box to
      normalise to); the returned dict is recorded in the checkpoint marker.
    - optional ``transfer_tensor(name, tensor, source_head_config) -> tensor | None``: adapt a tensor of
      another head's checkpoint whose shape differs (``init_from``).
    - optional ``figure``: a :class:`PredictionFigure` (reports draw the head's predictions with it).
    """

    output_kind: str
    horizon: int

    def __call__(self, feature_map: "torch.Tensor", cls: "torch.Tensor", cond: dict) -> dict: ...

    def decode(self, out: dict, cameras: list) -> dict: ...


@runtime_checkable
class VolumeHead(Head, Protocol):
    """``output_kind == "volume"``: ``out["logits"]`` (B, T, N, h, w) over N height bins × an h × w pixel
    grid and ``out["gripper_logits"]`` (B, T, 2). Objectives get class indices from the head's own layout:"""

    def volume_targets(self, target_uv: "torch.Tensor", target_z: "torch.Tensor") -> "torch.Tensor":
        """(B, T) flat indices into the flattened (N, h, w) volume of the targets: ``target_uv`` (B, T, 2) as
        in ``cond`` (the batch's ``target_pixel`` / (W, H)), ``target_z`` (B, T) world height in metres."""

    def pixel_targets(self, target_uv: "torch.Tensor") -> "torch.Tensor":
        """(B, T) flat indices into the h × w pixel grid of the targets (``target_uv`` as above)."""


@runtime_checkable
class RegressionHead(Head, Protocol):
    """``output_kind == "regression"``: ``out["pos01"]`` (B, T, D) positions in the head's normalised
    coordinates (D = 3 world, or 2 image for ``space == "image"``) and ``out["gripper_logits"]`` (B, T, 2)."""

    space: str

    def normalize(self, xyz: "torch.Tensor") -> "torch.Tensor":
        """World xyz → the coordinates ``pos01`` is regressed in."""


class ObjectiveConfig(Protocol):
    """An objective's config model: ``type: Literal[name]`` and the head output kinds it accepts."""

    accepts: ClassVar[tuple[str, ...]]
    type: str


@runtime_checkable
class Objective(Protocol):
    """A loss. ``factory(config)``; ``objective(out, batch, head) -> (loss, parts)``: ``out`` is the head's
    output, ``batch`` the training batch (docs/architecture.md), ``head`` the head (an objective uses only
    what its output kind's protocol above provides), ``parts`` detached scalars named ``loss/<part>``."""

    def __call__(self, out: dict, batch: dict, head: Any) -> tuple["torch.Tensor", dict]: ...


@runtime_checkable
class PredictionFigure(Protocol):
    """How a head's predictions are drawn in the report's prediction strips (one row per frame).

    ``legend`` (one line) and ``title`` (e.g. the head family) label the strip.
    ``predict(policy, frame)`` returns what the panels need (at least ``pixel``: (T, 2) predicted pixels in
    the frame's image); ``frame`` holds ``image`` (H, W, 3 uint8), ``camera`` (a Camera of that image),
    ``eef_pos``, ``eef_pixel`` and ``gripper``, and ``policy.infer(image, state, camera) -> (out, decoded)``
    gives the head's raw outputs and its decoded prediction for it. ``panel(base, row, k, font, scale)`` draws
    future step ``k`` over ``base`` (a PIL image of the frame, resized to the panel) and returns a PIL image
    of the same size: ``row`` is the frame merged with what ``predict`` returned, ``font`` a PIL font for
    labels, and ``scale(uv) -> (x, y)`` turns a pixel of the frame's image into panel coordinates (None
    stays None). :func:`pxp.testing.check_figure` draws a figure exactly this way."""

    legend: str
    title: str

    def predict(self, policy: Any, frame: dict) -> dict: ...

    def panel(self, base: Any, row: dict, k: int, font: Any, scale: Callable) -> Any: ...


# ---------------------------------------------------------------- the world

@dataclass(frozen=True)
class Outcomes:
    """How a scene's episodes end: declared by its config model (``outcomes: ClassVar[Outcomes]``) and read
    by scoring, paired tests, plots, videos and reports, so a scene defines its own outcomes.

    ``names`` best first (``names[0]`` is success); ``weights`` the weighted score of each; ``rates`` the
    summary's rates (key → the outcomes it counts; the first key is the success rate); ``colours`` a plot
    colour per outcome (and ``"ERROR"``); ``badges`` a video badge (text, RGB) per outcome; ``legend`` the
    caption of a plot coloured by outcome."""

    names: tuple
    weights: dict
    rates: dict
    colours: dict
    badges: dict
    legend: str = ""

    @property
    def success(self) -> str:
        return self.names[0]

    @property
    def success_rate(self) -> str:
        return next(iter(self.rates))


@runtime_checkable
class EpisodeTracker(Protocol):
    """A scene's bookkeeping during one rollout (``scene.tracker(obs)``, optional), for its diagnostics.

    ``command(gripper, target_z)`` before each target, ``update(obs)`` after each control step or target,
    ``finish(obs)`` at the end; ``diagnostics(outcome) -> dict`` goes into the episode record (a
    ``first_failure`` entry is counted per policy in the report); ``badge(obs)`` names the stage a video
    frame shows."""

    def command(self, gripper: float, target_z: float) -> None: ...

    def update(self, obs: dict) -> None: ...

    def finish(self, obs: dict) -> None: ...

    def diagnostics(self, outcome: str) -> dict: ...

    def badge(self, obs: dict) -> str | None: ...


@runtime_checkable
class Scene(Protocol):
    """A simulated scene. ``factory(config)``; a context manager (``close()`` frees the renderer).

    ``reset(offset, view, seed) -> obs`` and ``observe(image=True) -> obs`` give a dict with ``image``
    (H, W, 3 uint8), ``eef_pos`` (3,), ``eef_pixel`` (2,), ``gripper`` (0 open .. 1 closed), ``stage``
    and the object state the scene tracks; ``servo(target_xyz, gripper, max_steps, tol, on_step, image)`` is
    the only way a policy's prediction moves the robot (``on_step(obs)`` after each control step, its obs
    without the image when ``image=False``); ``outcome()`` names how the episode ended;
    ``camera`` is the current :class:`pxp.core.camera.Camera`; ``workspace`` the offset extent;
    ``run_expert(record=True, ...)`` returns a demonstration (per-step arrays); ``outcomes`` (also on its
    config model) names how episodes end; optional ``tracker(obs) -> EpisodeTracker`` for diagnostics.
    Its config model declares ``outcomes: ClassVar[Outcomes]`` and ``image_key: ClassVar[str]``, the name
    its demonstrations store camera images under, and may declare ``tracked`` (the ``<object>_pos`` states
    a demonstration keeps) and ``episode_checks`` (boolean entries of an expert episode kept per demo)."""

    camera: Any
    workspace: tuple
    outcomes: Outcomes

    def reset(self, offset=(0.0, 0.0), view=None, seed: int = 0) -> dict: ...

    def observe(self, image: bool = True) -> dict: ...

    def servo(self, target_xyz, gripper: float, max_steps=None, tol=None, on_step=None, image=True) -> dict: ...

    def outcome(self) -> str: ...

    def run_expert(self, record: bool = True, **kw) -> dict: ...


@runtime_checkable
class DriftCheck(Protocol):
    """Compares this machine with references committed beside a plugin (hook ``pxp_drift_checks``).

    ``name`` names it in ``pxp doctor`` and the report; ``scene`` is the scene type it guards (``pxp run``
    runs the quick checks of its spec's scene; None: every run). ``environment()`` is a cheap JSON dict of
    what a result depends on (library versions, GL backend, the references' hash): a quick result is reused
    on this host while it is unchanged. ``run(quick) -> dict`` has ``failures`` (one line each, naming what
    differs beyond tolerance: a state error, an image error) and ``notes`` (how this machine differs from
    the references' one: versions, GL backend, renderer); its other keys are recorded as they are."""

    name: str
    scene: str | None

    def environment(self) -> dict: ...

    def run(self, quick: bool = False) -> dict: ...


@runtime_checkable
class DatasetGenerator(Protocol):
    """Writes a demonstration dataset. ``factory(config)``; ``generate(path, ctx) -> summary dict`` (resumable:
    a ``<path>.partial`` is kept until complete); optional ``verify(path) -> None | why the file is unusable``."""

    def generate(self, path: Path, ctx: Any) -> dict: ...


@runtime_checkable
class RolloutPolicy(Protocol):
    """What a rollout drives: ``predict(image (H, W, 3) uint8, state {eef_pos, eef_pixel, gripper}, camera)
    -> (T, 4)`` world xyz + gripper command in [0, 1]. Optional ``reset()`` per episode, ``target_stride``
    (control steps per target), ``prepare(scene, offset=, view=, seed=)`` for privileged test policies."""

    def predict(self, image, state: dict, camera) -> Any: ...


@runtime_checkable
class Evaluator(Protocol):
    """Runs and scores one evaluation. ``factory(config)``.

    ``run(ctx) -> episodes`` (dicts with the fields of :data:`pxp.core.results.EPISODE_FIELDS`),
    ``summarize(episodes) -> summary`` (JSON). For the report, optional ``report_section(summary) -> str``
    (markdown) and ``report_figures(report, doc, name, episodes, summary)`` (figures and tables under
    the evaluation's heading; default: positions and outcomes per position)."""

    def run(self, ctx: Any) -> list[dict]: ...

    def summarize(self, episodes: list[dict]) -> dict: ...


# ---------------------------------------------------------------- the report

@runtime_checkable
class Document(Protocol):
    """What a report section writes to (rendered as report.md and report.html)."""

    def h(self, level: int, text: str) -> None: ...

    def p(self, text: str) -> None: ...

    def table(self, header: list, rows: Iterable[list]) -> None: ...

    def img(self, rel: str, alt: str) -> None: ...

    def md(self, text: str) -> None: ...


@runtime_checkable
class ReportSection(Protocol):
    """A part of the report, contributed by a plugin through ``pxp_report_sections(report)``.

    ``order`` places it (the framework's: 20 evaluations, 40 training, 90 provenance); ``render(report,
    doc)`` reads the run through ``report`` (``run_dir``, ``spec``, ``episodes``, ``evaluations``,
    ``summary(name)``, ``outcomes``, ``score(episodes)``, ``label(policy)``, ``axis(name)``, ``plots``,
    ``rel(path)``, ``registry``) and writes to ``doc``
    (a :class:`Document`). It writes nothing when the run has nothing for it. A section with slow work
    (running policies, rendering scenes) may also define ``prepare(report)``: every section's ``prepare``
    runs before any ``render``, while the report draws its prediction figures in a worker process."""

    title: str
    order: int

    def render(self, report: Any, doc: Document) -> None: ...


# ---------------------------------------------------------------- observing a run

class RunLogger(Protocol):
    """A run logger, switched on in a spec's ``loggers:`` (e.g. ``[{type: tensorboard}]``). ``factory(config)``
    builds an observer whose ``@hookimpl`` methods implement any of the event hooks (``pxp_training_step``,
    ``pxp_episode_done``, ``pxp_unit_done``, ``pxp_run_done`` in :mod:`pxp.core.hookspecs`); they are called
    like an installed plugin's, each isolated (:mod:`pxp.core.events`). Optional ``close()`` runs when the run
    ends, and in a worker when its training unit ends."""
