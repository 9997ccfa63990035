"""What code a unit ran: the distribution, version and (from a working tree) source hash of its plugins.

A unit's cache key includes these, so upgrading a plugin, or editing one installed from a working tree
(``pip install -e``, or a plugin module that lives outside site-packages), recomputes the units that
use it. pxp's own plugins enter with pxp's name and version only, not a hash of their source:
an edit of pxp in a development checkout keeps its caches (docs/architecture.md, "Run directory and
caching", says why); ``--force`` recomputes.
"""
from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
import types
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

BUILTIN_DISTRIBUTION = "pxp"


def plugin_code(registry, plugin: str) -> dict:
    """``{name, distribution, version}`` of a plugin plus ``source`` (sha256 of its package's .py files) when the
    plugin is not pxp's own and comes from a working tree."""
    info = next((p for p in registry.plugins if p.name == plugin), None)
    dist, ver = (info.distribution, info.version) if info else ("unknown", "unknown")
    out = {"name": plugin, "distribution": dist, "version": ver}
    obj = registry.manager.get_plugin(plugin) if registry.manager is not None else None
    root = package_root(obj) if obj is not None else None
    if dist == BUILTIN_DISTRIBUTION or root is None or root.name == BUILTIN_DISTRIBUTION:
        return out  # pxp's own (also when a test registers them as modules): name and version only
    if is_editable(dist) or not in_site_packages(root):
        out["source"] = source_hash(root)
    return out


def package_root(plugin) -> Path | None:
    """The top-level package directory (or the single module file) that a plugin (a module, or an
    object whose class defines the hooks) belongs to."""
    name = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
    top = sys.modules.get(name.split(".")[0]) if isinstance(name, str) else None
    if top is None:
        return None
    paths = list(getattr(top, "__path__", []) or [])
    if paths:
        return Path(paths[0])
    file = getattr(top, "__file__", None)
    return Path(file) if file else None


def is_editable(dist_name: str) -> bool:
    """Whether a distribution was installed from a working tree (PEP 610 ``direct_url.json``)."""
    try:
        text = distribution(dist_name).read_text("direct_url.json")
    except PackageNotFoundError:
        return False
    try:
        return bool(json.loads(text or "{}").get("dir_info", {}).get("editable", False))
    except ValueError:
        return False


def in_site_packages(path: Path) -> bool:
    roots = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    path = Path(path).resolve()
    return any(root == path or root in path.parents for root in roots)


def source_hash(root: Path) -> str:
    """sha256 over the relative names and contents of the .py files under ``root`` (or of the file)."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root if root.is_dir() else root.parent)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class CodeKeys:
    """Per run: the code record of each plugin, computed once (a run's source does not change under it)."""

    def __init__(self, registry):
        self.registry = registry
        self._seen: dict[str, dict] = {}

    def of(self, *components) -> list[dict]:
        """The code records of the plugins behind ``components`` ((kind, config) pairs), in a stable order."""
        names = sorted({self.registry.get(kind, cfg.type).plugin for kind, cfg in components})
        for name in names:
            if name not in self._seen:
                self._seen[name] = plugin_code(self.registry, name)
        return [self._seen[n] for n in names]
