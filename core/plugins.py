"""Plugin discovery and the component registry.

Plugins are modules (or objects) with pluggy hook implementations, found through entry points in
group ``pxp``. Each entry point is loaded on its own, so one broken plugin is reported and the rest
keep working; ``PXP_STRICT_PLUGINS=1`` raises instead (the test suite runs strict). The same holds
for what a plugin registers: a component with a bad config model or a name already taken is left
out and reported, naming the plugin(s), and the rest load.

Registering checks the config model against its kind's contract (:mod:`pxp.core.contracts`); building a
component (:meth:`Registry.create`) names the plugin when its factory fails, and checks the kind's
contract once on the built object (its base class and required members; a backbone's output shapes), so
a broken plugin is one message with the ``PXP_DISABLE_PLUGINS`` hint instead of a traceback from deep
inside a stage.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

from . import contracts, hookspecs
from .errors import PluginError, PxpError

KINDS = ("scenes", "datasets", "backbones", "heads", "objectives", "evaluators", "loggers")
GROUP = "pxp"


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    config_model: type
    factory: Callable
    summary: str
    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    name: str
    distribution: str
    version: str
    error: str

    def message(self) -> str:
        return (f"plugin '{self.name}' ({self.distribution} {self.version}) failed to load: {self.error}\n"
                f"  the other plugins still work; silence this with PXP_DISABLE_PLUGINS={self.name}")


def _hint(plugin: str) -> str:
    return f"; PXP_DISABLE_PLUGINS={plugin} turns the plugin off"


@dataclass(frozen=True)
class RegistryRecipe:
    """How to load a registry again in another process (a pool worker, a figure task): picklable.

    ``extra`` are (plugin name, importable module name) pairs, e.g. plugins a test injected through
    :func:`pxp.testing.plugin_registry`; a worker imports them by name (the parent's ``sys.path`` travels
    with spawned workers), so they work there exactly as in the parent."""

    use_entry_points: bool = True
    disabled: tuple[str, ...] = ()
    strict: bool = False
    extra: tuple[tuple[str, str], ...] = ()
    unportable: tuple[str, ...] = ()  # plugins given as objects, not modules: a worker cannot import them


@dataclass
class Registry:
    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in KINDS})
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None
    recipe: RegistryRecipe = field(default_factory=RegistryRecipe)

    def get(self, kind: str, name: str) -> Component:
        try:
            return self.components[kind][name]
        except KeyError:
            available = ", ".join(sorted(self.components.get(kind, {}))) or "none installed"
            raise PluginError(f"no {kind[:-1]} named '{name}' (available: {available})") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def create(self, kind: str, config, *args, **kwargs) -> Any:
        """Build the component that ``config`` (a registered config model) describes.

        A factory's own errors (PxpError, OSError such as a missing file) pass unchanged; any other
        exception, or a built object that breaks its kind's contract, becomes one PluginError naming
        the plugin (the original stays chained as ``__cause__`` for debugging)."""
        comp = self.get(kind, config.type)
        what = f"{kind[:-1]} '{comp.name}' (plugin '{comp.plugin}', {comp.distribution} {comp.version})"
        try:
            obj = comp.factory(config, *args, **kwargs)
        except (PxpError, OSError):
            raise
        except Exception as exc:
            raise PluginError(f"{what} failed to build: {_last_line(exc)}{_hint(comp.plugin)}") from exc
        check = CONTRACTS.get(kind)
        try:
            problem = contracts.object_problem(kind, obj) or (check(obj, config) if check else None)
        except Exception as exc:
            problem = f"checking it raised {_last_line(exc)}"
        if problem:
            raise PluginError(f"{what} breaks the {kind[:-1]} contract: {problem}{_hint(comp.plugin)}")
        return obj

    def all(self) -> list[Component]:
        return [c for kind in KINDS for c in self.components[kind].values()]


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist else ("unknown", "unknown")


def _last_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _check_config_model(kind: str, name: str, model) -> None:
    fields = getattr(model, "model_fields", None)
    if not fields or "type" not in fields:
        raise PluginError(f"{kind[:-1]} '{name}': config_model must be a pydantic model with a 'type' field")
    ann = fields["type"].annotation
    if typing.get_origin(ann) is not typing.Literal or typing.get_args(ann) != (name,):
        raise PluginError(f"{kind[:-1]} '{name}': config_model.type must be Literal['{name}'], got {ann!r}")
    problem = contracts.config_problem(kind, model)
    if problem:
        raise PluginError(f"{kind[:-1]} '{name}': {problem}")
    declared = {"heads": ("output_kind", str), "objectives": ("accepts", tuple)}.get(kind)
    if declared and not isinstance(getattr(model, declared[0]), declared[1]):
        raise PluginError(f"{kind[:-1]} '{name}': config_model.{declared[0]} must be a "
                          f"ClassVar[{declared[1].__name__}] (see pxp.core.contracts)")


def load_registry(*, strict: bool | None = None, disabled=None, extra_plugins=(), use_entry_points: bool = True) -> Registry:
    """Load every plugin and collect what they register.

    ``extra_plugins`` are (name, object) pairs registered after the entry points (tests, pxp.testing).
    """
    strict = _env_flag("PXP_STRICT_PLUGINS") if strict is None else strict
    if disabled is None:
        disabled = {s.strip() for s in os.environ.get("PXP_DISABLE_PLUGINS", "").split(",") if s.strip()}
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    extra_plugins = list(extra_plugins)
    modules = [(name, obj.__name__) for name, obj in extra_plugins if isinstance(obj, types.ModuleType)]
    recipe = RegistryRecipe(use_entry_points, tuple(sorted(disabled)), bool(strict), tuple(modules),
                            tuple(name for name, obj in extra_plugins if not isinstance(obj, types.ModuleType)))
    reg = Registry(manager=pm, recipe=recipe)
    provenance: dict[str, PluginInfo] = {}

    if use_entry_points:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name in disabled:
                continue
            dist, version = _dist_of(ep)
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # any import-time failure must not take the CLI down
                if strict:
                    raise PluginError(f"plugin '{ep.name}' ({dist} {version}) failed to load: {_last_line(exc)}") from exc
                reg.failures.append(PluginFailure(ep.name, dist, version, _last_line(exc)))
                continue
            provenance[ep.name] = PluginInfo(ep.name, dist, version)
    for name, obj in extra_plugins:
        pm.register(obj, name=name)
        provenance[name] = PluginInfo(name, getattr(obj, "__distribution__", "local"), getattr(obj, "__version__", "-"))
    reg.plugins = list(provenance.values())

    for kind in KINDS:
        hook = getattr(pm.hook, f"pxp_register_{kind}")
        for impl in sorted(hook.get_hookimpls(), key=lambda i: _precedence(provenance[i.plugin_name])):
            info = provenance[impl.plugin_name]
            try:
                impl.function(register=partial(_register, reg, kind, info, strict))
            except Exception as exc:
                if strict:
                    raise PluginError(f"plugin '{info.name}' failed while registering {kind}: {_last_line(exc)}") from exc
                reg.failures.append(PluginFailure(info.name, info.distribution, info.version, _last_line(exc)))
    _LOADED[recipe] = reg  # the latest registry loaded with this recipe answers for it in this process
    return reg


_LOADED: dict[RegistryRecipe, Registry] = {}  # per process: a recipe is loaded once


def registry_from_recipe(recipe: RegistryRecipe | None) -> Registry:
    """The registry ``recipe`` describes: the one already loaded in this process, else loaded now (in a
    worker process: the same plugins as the parent's registry, injected ones included)."""
    if recipe is None:
        return get_registry()
    if recipe in _LOADED:
        return _LOADED[recipe]
    if recipe.unportable:
        raise PluginError(f"plugin(s) {', '.join(recipe.unportable)} were given as objects, not importable modules: "
                          "another process cannot load them; register a module instead")
    extra = [(name, importlib.import_module(module)) for name, module in recipe.extra]
    return load_registry(strict=recipe.strict, disabled=set(recipe.disabled), extra_plugins=extra,
                         use_entry_points=recipe.use_entry_points)


def _precedence(info: PluginInfo) -> tuple:
    """pxp's own plugins register first, then the others by name: a duplicate name never replaces a
    built-in, and which of two third-party plugins wins does not depend on install order."""
    return (info.distribution != "pxp", info.name)


def _register(reg: Registry, kind: str, info: PluginInfo, strict: bool, name: str, config_model, factory,
              summary: str = "") -> None:
    """Add one component; a bad one is left out and reported (raised when strict), the rest still load."""
    try:
        existing = reg.components[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind[:-1]} '{name}' is registered twice: by plugin '{existing.plugin}' "
                f"({existing.distribution} {existing.version}) and by plugin '{info.name}' ({info.distribution} {info.version}); "
                f"the second is left out")
        _check_config_model(kind, name, config_model)
    except PluginError as exc:
        if strict:
            raise
        reg.failures.append(PluginFailure(info.name, info.distribution, info.version, str(exc)))
        return
    reg.components[kind][name] = Component(kind, name, config_model, factory, summary or "", info.name,
                                           info.distribution, info.version)


# ---------------------------------------------------------------- contracts, checked once on what a factory built

def _backbone_contract(backbone, config) -> str | None:
    """A backbone maps (B, 3, S, S) images to a (B, C, h, w) feature map and a (B, C) CLS token,
    C = ``embed_dim``; S is the config's ``image_size`` (checked with one forward pass of 2 images)."""
    import torch

    size = int(getattr(config, "image_size", None) or getattr(backbone, "image_size", 0) or 224)
    dim = getattr(backbone, "embed_dim", None)
    if not isinstance(dim, int) or dim < 1:
        return f"it has no integer embed_dim (got {dim!r})"
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(2, 3, size, size))
    backbone.train(was_training)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return f"forward must return (feature_map, cls_token), got {type(out).__name__}"
    fmap, cls = out
    if getattr(fmap, "ndim", None) != 4 or tuple(fmap.shape[:2]) != (2, dim):
        return f"feature map for 2 images of {size}×{size} must be (2, {dim}, h, w), got {tuple(getattr(fmap, 'shape', ()))}"
    if tuple(getattr(cls, "shape", ())) != (2, dim):
        return f"CLS token for 2 images must be (2, {dim}), got {tuple(getattr(cls, 'shape', ()))}"
    return None


CONTRACTS: dict[str, Callable] = {"backbones": _backbone_contract}


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests, pxp.testing)."""
    global _REGISTRY
    _REGISTRY = registry


def create(kind: str, config, *args, **kwargs):
    """Build a component from its config with the process-wide registry (usable in worker processes)."""
    return get_registry().create(kind, config, *args, **kwargs)


def report_failures(registry: Registry, file=None) -> None:
    for failure in registry.failures:
        print(f"warning: {failure.message()}", file=file or sys.stderr)
