"""Run events: the hooks through which a plugin observes a run (``pxp_training_step``, ``pxp_episode_done``,
``pxp_unit_done``, ``pxp_run_done`` in :mod:`pxp.core.hookspecs`).

The observers are the installed plugins' implementations of those hooks, plus the loggers the spec switches
on (``loggers: [{type: tensorboard}]``): built for the run from the registry, their ``@hookimpl`` methods
observe like a plugin's. Each observer is called on its own, so one that raises is reported once, by plugin
name, and the other observers and the run go on (pluggy's own hook call would stop at the first error).

Events fire where the work happens: training steps in the process that trains (a worker rebuilds the
registry from its recipe and makes its own :class:`RunEvents` from the picklable :class:`RunInfo`), episodes
as their results reach the driver, units and the run's end in the runner.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pluggy

from . import hookspecs
from .plugins import GROUP, Registry, _hint, _last_line

EVENTS = ("pxp_training_step", "pxp_episode_done", "pxp_unit_done", "pxp_run_done")


@dataclass(frozen=True)
class RunInfo:
    """The ``run`` every event gets: the run directory and the resolved spec as a dict (what
    spec.resolved.yaml holds). Plain data, so it pickles into worker processes with the work."""

    dir: Path
    spec: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or Path(self.dir).name)

    @classmethod
    def of(cls, run_dir, spec) -> "RunInfo":
        """From a run directory and a spec model (or dict)."""
        dump = getattr(spec, "model_dump", None)
        as_dict = dump(mode="json") if callable(dump) else dict(spec) if isinstance(spec, dict) else {}
        return cls(Path(run_dir), as_dict)


class RunEvents:
    """Sends a run's events to every observer, each isolated from the others.

    ``log(message)`` reports an observer's first failure (and a logger that fails to build); ``close()``
    closes the spec's loggers (a logger may define ``close()``, e.g. to flush its files)."""

    def __init__(self, registry: Registry | None, run: RunInfo, log: Callable[[str], None] = print):
        self.run, self._log = run, log
        self._failed: set[str] = set()
        self._loggers = pluggy.PluginManager(GROUP)
        self._loggers.add_hookspecs(hookspecs)
        self._objects: list[tuple[str, object]] = []
        manager = getattr(registry, "manager", None)
        self._managers = [m for m in (manager, self._loggers) if m is not None]
        for i, cfg in enumerate(run.spec.get("loggers") or ()):
            self._add_logger(registry, i, cfg)

    def _add_logger(self, registry: Registry | None, index: int, cfg: dict) -> None:
        name = f"loggers[{index}] ({cfg.get('type', '?')})"
        try:
            comp = registry.get("loggers", cfg["type"])
            name = comp.plugin if comp.plugin not in self._loggers.list_name_plugin() else f"{comp.plugin}#{index}"
            logger = registry.create("loggers", comp.config_model.model_validate(cfg))
            self._loggers.register(logger, name=name)
        except Exception as exc:  # a logger that cannot start must not stop the run it would observe
            self._log(f"warning: logger {name} is off for this run: {_last_line(exc)}")
            return
        self._objects.append((name, logger))

    def fire(self, event: str, **kwargs) -> None:
        """Call every observer of ``event`` with ``run`` and ``kwargs`` (each takes the arguments it names).
        Observers get a copy of the values: nothing they do changes what the run records."""
        # pluggy's order within a manager: the last registered first
        impls = [(m, impl) for m in self._managers for impl in reversed(getattr(m.hook, event).get_hookimpls())]
        if not impls:
            return
        kwargs = {**copy.deepcopy(kwargs), "run": self.run}
        for manager, impl in impls:
            try:
                impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception as exc:
                self._report(impl.plugin_name, event, exc, manager is not self._loggers)

    def _report(self, plugin: str, event: str, exc: Exception, installed: bool) -> None:
        if plugin in self._failed:
            return
        self._failed.add(plugin)
        hint = _hint(plugin) if installed else "; remove it from the spec's loggers to turn it off"
        self._log(f"warning: plugin '{plugin}' failed in {event}: {_last_line(exc)}; the run goes on "
                  f"(its later failures are not reported){hint}")

    def close(self) -> None:
        for name, logger in self._objects:
            close = getattr(logger, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    self._report(name, "close", exc, False)
        self._objects.clear()
