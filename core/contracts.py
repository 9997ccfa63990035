"""The contracts between pxp's framework and its plugins, in one file.

A plugin registers a component with ``register(name, config_model, factory)`` (:mod:`pxp.core.hookspecs`);
``factory(config, ...)`` builds the object. Every kind has a contract here, checked by the registry:

- the config model derives from the kind's config base (:class:`BackboneConfig`, :class:`HeadConfig`,
  :class:`ObjectiveConfig`, :class:`SceneConfig`, :class:`DatasetConfig`, :class:`EvaluatorConfig`),
  checked when the plugin registers;
- the built object derives from the kind's base class (:class:`Head`, :class:`Scene`,
  :class:`DatasetGenerator`, :class:`Evaluator`) or, for backbones and objectives (a torch module, a
  loss function), has the members of the kind's ``Protocol``; checked when it is built.

The bases declare the optional methods with their defaults, so the framework calls them directly; a
plugin overrides what it needs. :data:`REQUIRED` lists each kind's required members: a plugin missing
one is refused with one line naming the plugin and the member. Report sections (``pxp_report_sections``)
derive from :class:`ReportSection`; what a rollout drives from :class:`RolloutPolicy`.

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
from typing import Any, Callable, ClassVar, Iterable, Optional, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

# ---------------------------------------------------------------- config models


class ComponentConfig(BaseModel):
    """Base of every plugin config model: add ``type: Literal["<name>"] = "<name>"`` and the fields."""

    model_config = ConfigDict(extra="forbid")

    def smoke(self) -> dict:
        """Field overrides at smoke scale (``pxp run --smoke``); default: none."""
        return {}


class BackboneConfig(ComponentConfig):
    """A backbone's config."""

    def preflight(self) -> Optional[str]:
        """Before any work: None if the weights can be had on this machine, else why not."""
        return None

    def how_to_supply(self, policies: list[str]) -> str:
        """How to get the weights ``preflight`` found missing (``policies`` use this backbone)."""
        return "supply the weights or set weights: random"


class HeadConfig(ComponentConfig):
    """A head's config: ``output_kind`` (required ClassVar), ``label`` (how reports name the head; None:
    its type) and a ``horizon`` field."""

    output_kind: ClassVar[str]
    label: ClassVar[Optional[str]] = None


class ObjectiveConfig(ComponentConfig):
    """An objective's config: ``accepts`` (required ClassVar), the head output kinds it has a loss for."""

    accepts: ClassVar[tuple]


class SceneConfig(ComponentConfig):
    """A scene's config: ``outcomes`` and ``image_key`` (required ClassVars), optional ``tracked`` (the
    ``<object>_pos`` states a demonstration keeps) and ``episode_checks`` (boolean entries of an expert
    episode kept per demo). Two boxes, not to be confused: :meth:`offset_extent` is where the objects may
    be shifted to; :meth:`end_effector_box` is where the arm's targets can be."""

    outcomes: ClassVar["Outcomes"]
    image_key: ClassVar[str]
    tracked: ClassVar[tuple] = ()
    episode_checks: ClassVar[tuple] = ()

    def offset_extent(self) -> Optional[tuple]:
        """((dx_min, dx_max), (dy_min, dy_max)), m: the object-offset grid's extent; None: no grid."""
        return None

    def preflight(self) -> Optional[str]:
        """Before datasets or evaluations: None if the scene can run on this machine, else why not."""
        return None

    def end_effector_box(self) -> Optional[tuple]:
        """((x, y, z) low, (x, y, z) high), world m: every end-effector target of the scene; None: no box."""
        return None


class DatasetConfig(ComponentConfig):
    """A dataset generator's config: ``filter_keys`` are the robomimic filter keys its files carry (what a
    policy's ``filter_key`` may name; None: not known before generation)."""

    filter_keys: ClassVar[Optional[tuple]] = None

    def scene_overrides(self) -> dict:
        """Scene-config fields this dataset records with (overrides of the spec's scene)."""
        return {}


class LoggerConfig(ComponentConfig):
    """A run logger's config (a spec's ``loggers:`` list); what it builds is a :class:`RunLogger`."""


class EvaluatorConfig(ComponentConfig):
    """An evaluator's config: ``axis`` (how report headings name what it varies; None: its type)."""

    axis: ClassVar[Optional[str]] = None

    def referenced_policies(self) -> list[str]:
        """Names of the spec's policies (or sweep groups, ``builtin:`` policies) it evaluates; default: its
        ``policies`` field (a name, a list, or a mapping of labels to names or lists), if it has one."""
        value = self.__dict__.get("policies")
        if isinstance(value, dict):
            return [n for names in value.values() for n in ([names] if isinstance(names, str) else names)]
        return [value] if isinstance(value, str) else list(value or [])

    def scene_overrides(self) -> dict:
        """Scene-config fields its episodes run with (overrides of the spec's scene)."""
        return {}


# ---------------------------------------------------------------- models

@runtime_checkable
class Backbone(Protocol):
    """Images → features. ``factory(config)``.

    ``forward(images (B, 3, S, S) normalised) -> (feature_map (B, C, h, w), cls (B, C))`` with
    ``C == embed_dim``; ``weights_info`` says where the weights came from (``{"source": ...}``).

    Optional, for training from cached features when a leading part is frozen (the training layer's feature cache):
    ``frozen_key() -> dict | None`` (what the frozen part computes; None: nothing frozen),
    ``frozen_features(images) -> Tensor (B, ...)`` (the frozen part alone: no parameter in it trains) and
    ``from_frozen(features) -> (feature_map, cls)`` (the rest), so that
    ``forward(x) == from_frozen(frozen_features(x))``."""

    embed_dim: int
    patch_size: int
    image_size: int
    weights_info: dict

    def __call__(self, images: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]: ...


@dataclass
class HeadSetup:
    """What a head may use once before training (:meth:`Head.prepare`)."""

    end_effector_box: tuple | None  # (low xyz, high xyz, source): the scene's box of end-effector targets, if any
    log: Callable[[str], None]


class Head:
    """Features → future targets. ``factory(config, backbone)``; reads ``backbone.embed_dim``. A torch
    module deriving from this class too (``class MyHead(nn.Module, Head)``).

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
    figure: Optional["PredictionFigure"] = None

    def prepare(self, setup: "HeadSetup") -> Optional[dict]:
        return None

    def transfer_tensor(self, name: str, tensor: "torch.Tensor", source_head_config: dict) -> Optional["torch.Tensor"]:
        return None


class VolumeHead(Head):
    """``output_kind == "volume"``: ``out["logits"]`` (B, T, N, h, w) over N height bins × an h × w pixel
    grid and ``out["gripper_logits"]`` (B, T, 2). Objectives get class indices from the head's own layout:"""

    def volume_targets(self, target_uv: "torch.Tensor", target_z: "torch.Tensor") -> "torch.Tensor":
        """(B, T) flat indices into the flattened (N, h, w) volume of the targets: ``target_uv`` (B, T, 2) as
        in ``cond`` (the batch's ``target_pixel`` / (W, H)), ``target_z`` (B, T) world height in metres."""
        raise NotImplementedError

    def pixel_targets(self, target_uv: "torch.Tensor") -> "torch.Tensor":
        """(B, T) flat indices into the h × w pixel grid of the targets (``target_uv`` as above)."""
        raise NotImplementedError


class RegressionHead(Head):
    """``output_kind == "regression"``: ``out["pos01"]`` (B, T, D) positions in the head's normalised
    coordinates (D = 3 world, or 2 image for ``space == "image"``) and ``out["gripper_logits"]`` (B, T, 2)."""

    space: str

    def normalize(self, xyz: "torch.Tensor") -> "torch.Tensor":
        """World xyz → the coordinates ``pos01`` is regressed in."""
        raise NotImplementedError


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


class Scene:
    """A simulated scene. ``factory(config)``; a context manager (``close()`` frees the renderer).

    ``reset(offset, view, seed) -> obs`` and ``observe(image=True) -> obs`` give a dict with ``image``
    (H, W, 3 uint8), ``eef_pos`` (3,), ``eef_pixel`` (2,), ``gripper`` (0 open .. 1 closed), ``stage``
    and the object state the scene tracks; ``servo(target_xyz, gripper, max_steps, tol, on_step, image)`` is
    the only way a policy's prediction moves the robot (``on_step(obs)`` after each control step, its obs
    without the image when ``image=False``); ``outcome()`` names how the episode ended;
    ``camera`` is the current :class:`pxp.core.camera.Camera`; ``offset_extent`` the objects' offset extent;
    ``run_expert(record=True, ...)`` returns a demonstration (per-step arrays); ``outcomes`` (also on its
    config model) names how episodes end; optional ``tracker(obs) -> EpisodeTracker`` for diagnostics.
    Its config model declares ``outcomes: ClassVar[Outcomes]`` and ``image_key: ClassVar[str]``, the name
    its demonstrations store camera images under (:class:`SceneConfig`). Optional, with defaults here:
    ``tracker``, ``set_view(view) -> camera`` (move the camera without a reset, where ``can_set_view``)
    and ``close``."""

    camera: Any
    offset_extent: tuple
    outcomes: Outcomes
    can_set_view: bool = False

    def tracker(self, obs: dict) -> Optional[EpisodeTracker]:
        return None

    def set_view(self, view) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot move its camera without a reset")

    def close(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


class DatasetGenerator:
    """Writes a demonstration dataset. ``factory(config)``; ``generate(path, ctx) -> summary dict`` (resumable:
    a ``<path>.partial`` is kept until complete); optional ``verify(path) -> None | why the file is unusable``."""

    def verify(self, path: Path) -> Optional[str]:
        return None


class RolloutPolicy:
    """What a rollout drives: ``predict(image (H, W, 3) uint8, state {eef_pos, eef_pixel, gripper}, camera)
    -> (T, 4)`` world xyz + gripper command in [0, 1]. Optional ``reset()`` per episode, ``target_stride``
    (control steps per target; None: the caller's default), ``prepare(scene, offset=, view=, seed=)`` and
    ``seek(step)`` for privileged test policies (the scripted expert plans from the scene)."""

    target_stride: Optional[int] = None
    privileged: bool = False  # plans from the scene in ``prepare`` (which resets it): test policies only

    def reset(self) -> None:
        return None

    def prepare(self, scene: Scene, *, offset, view, seed: int) -> None:
        return None

    def seek(self, step: int) -> None:
        return None


class Evaluator:
    """Runs and scores one evaluation. ``factory(config)``.

    ``run(ctx) -> episodes`` (dicts with the fields of :data:`pxp.core.results.EPISODE_FIELDS`),
    ``summarize(episodes) -> summary`` (JSON). For the report, optional ``report_section(summary) -> str``
    (markdown) and ``report_figures(report, doc, name, episodes, summary)`` (figures and tables under
    the evaluation's heading; None: the report's default, positions and outcomes per position). The
    experiment layer's ``EpisodeEvaluator`` (in its evaluation module) implements ``run`` and
    ``summarize`` on the worker pool; most evaluators derive from it."""

    def report_section(self, summary: dict) -> str:
        return ""

    report_figures: Optional[Callable] = None


# ---------------------------------------------------------------- the report

@runtime_checkable
class Document(Protocol):
    """What a report section writes to (rendered as report.md and report.html)."""

    def h(self, level: int, text: str) -> None: ...

    def p(self, text: str) -> None: ...

    def table(self, header: list, rows: Iterable[list]) -> None: ...

    def img(self, rel: str, alt: str) -> None: ...

    def md(self, text: str) -> None: ...


class ReportSection:
    """A part of the report, contributed by a plugin through ``pxp_report_sections(report)``.

    ``order`` places it (the framework's: 20 evaluations, 40 training, 90 provenance); ``render(report,
    doc)`` reads the run through ``report`` (``run_dir``, ``spec``, ``episodes``, ``evaluations``,
    ``summary(name)``, ``outcomes``, ``score(episodes)``, ``label(policy)``, ``axis(name)``, ``plots``,
    ``rel(path)``, ``registry``) and writes to ``doc``
    (a :class:`Document`). It writes nothing when the run has nothing for it. A section with slow work
    (running policies, rendering scenes) may also define ``prepare(report)``: every section's ``prepare``
    runs before any ``render``, while the report draws its prediction figures in a worker process."""

    title: str
    order: int = 50

    def prepare(self, report: Any) -> None:
        return None


# ---------------------------------------------------------------- what the runner hands to plugins

@runtime_checkable
class StageContext(Protocol):
    """What a dataset generator's ``generate(path, ctx)``, an evaluator's ``run(ctx)`` and training receive.

    ``progress(description, total)`` is a context manager whose task has ``.advance(n=1)``; ``unit`` is the
    name of the dataset / policy / evaluation being run; paths come from the run directory."""

    run_dir: Path
    spec: Any
    registry: Any
    device: str
    workers: int
    seed: int
    unit: Optional[str]

    def log(self, msg: str) -> None: ...

    def progress(self, description: str, total: Optional[float] = None) -> Any: ...

    def dataset_path(self, name: str) -> Path: ...

    def checkpoint_dir(self, name: str) -> Path: ...

    def eval_dir(self, name: str) -> Path: ...

    def scene_config(self, **overrides) -> SceneConfig: ...

    def make_scene(self, config: Optional[SceneConfig] = None) -> Scene: ...

    def create(self, kind: str, config, *args, **kwargs) -> Any: ...

    def resolve_policies(self, names) -> list[str]: ...


# ---------------------------------------------------------------- the checks the registry runs

CONFIG_BASES: dict[str, type] = {"backbones": BackboneConfig, "heads": HeadConfig, "objectives": ObjectiveConfig,
                                 "scenes": SceneConfig, "datasets": DatasetConfig, "evaluators": EvaluatorConfig,
                                 "loggers": LoggerConfig}
CONFIG_DECLARES: dict[str, tuple] = {"heads": ("output_kind",), "objectives": ("accepts",),
                                     "scenes": ("outcomes", "image_key")}
BASES: dict[str, type] = {"heads": Head, "scenes": Scene, "datasets": DatasetGenerator, "evaluators": Evaluator}
REQUIRED: dict[str, tuple] = {
    "backbones": ("embed_dim", "weights_info", "__call__"),
    "heads": ("output_kind", "horizon", "decode", "__call__"),
    "objectives": ("__call__",),
    "scenes": ("camera", "offset_extent", "outcomes", "reset", "observe", "servo", "outcome", "run_expert"),
    "datasets": ("generate",),
    "evaluators": ("run", "summarize"),
    "loggers": (),  # an observer: any of the event hooks, each optional
}


def config_problem(kind: str, model: type) -> Optional[str]:
    """Why ``model`` cannot be the config model of a ``kind`` component (None if it can)."""
    base = CONFIG_BASES[kind]
    if not (isinstance(model, type) and issubclass(model, base)):
        return f"config_model must derive from pxp.core.contracts.{base.__name__}"
    missing = [name for name in CONFIG_DECLARES.get(kind, ()) if not hasattr(model, name)]
    return f"config_model declares no {', '.join(missing)} (a ClassVar, see pxp.core.contracts)" if missing else None


def object_problem(kind: str, obj: Any) -> Optional[str]:
    """Why ``obj``, built by a ``kind`` factory, breaks its contract (None if it keeps it)."""
    base = BASES.get(kind)
    if base is not None and not isinstance(obj, base):
        return f"it does not derive from pxp.core.contracts.{base.__name__}"
    missing = [name for name in REQUIRED[kind] if not _has(obj, name)]
    return f"it has no {', '.join(missing)}" if missing else None


def _has(obj: Any, name: str) -> bool:
    """Declared on the object's class or set on the instance (a property is not evaluated)."""
    return any(name in vars(k) for k in type(obj).__mro__) or name in getattr(obj, "__dict__", {})


def section_problem(section: Any) -> Optional[str]:
    """Why a report section (returned by ``pxp_report_sections``) breaks its contract (None if it keeps it)."""
    if not isinstance(section, ReportSection):
        return "it does not derive from pxp.core.contracts.ReportSection"
    missing = [name for name in ("title", "render") if not _has(section, name)]
    return f"it has no {', '.join(missing)}" if missing else None


# ---------------------------------------------------------------- observing a run

class RunLogger(Protocol):
    """A run logger, switched on in a spec's ``loggers:`` (e.g. ``[{type: tensorboard}]``). ``factory(config)``
    builds an observer whose ``@hookimpl`` methods implement any of the event hooks (``pxp_training_step``,
    ``pxp_episode_done``, ``pxp_unit_done``, ``pxp_run_done`` in :mod:`pxp.core.hookspecs`); they are called
    like an installed plugin's, each isolated (:mod:`pxp.core.events`). Optional ``close()`` runs when the run
    ends, and in a worker when its training unit ends."""
