"""The experiment spec: YAML → pydantic, with sections built from what plugins registered.

Every section that names a component (scene, datasets, backbone, head, objective, evaluations) is a
discriminated union over the registered config models, so an unknown ``type:`` lists the available
names and ``pxp schema`` covers every installed plugin.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from .errors import SpecError
from .plugins import Registry, get_registry

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
NAME_MAX = 100  # names become file names (data/<name>.hdf5.partial …); file systems stop at 255 bytes
BUILTIN_POLICIES = ("expert", "home", "crash", "hang", "segfault")  # builtin:<name>, see core/evaluation.py


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainConfig(Strict):
    """How long and how a policy trains."""
    steps: Optional[int] = Field(None, ge=1, description="optimizer steps (with minutes: whichever comes first)")
    minutes: Optional[float] = Field(None, gt=0, description="wall-clock budget for training")
    batch_size: int = Field(16, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(50, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    seed: int = 0
    eval_every: int = Field(100, ge=1)
    holdout_fraction: float = Field(
        0.0, ge=0, lt=1, description="hold out this fraction of the demos for held-out metrics (they are then "
        "NOT trained on; default 0: train on every demo, metrics on a training subset)")
    backbone_lr_scale: Optional[float] = Field(
        None, gt=0, description="backbone lr = lr × this; null: 0.1 for pretrained weights, 1 for random init")
    amp: Literal["auto", "off", "bf16"] = "auto"
    target_stride: int = Field(4, ge=1, description="frames between consecutive future targets")
    sampling: Literal["frames", "demos", "phases"] = Field(
        "frames", description="how training frames are drawn: every frame equally; every demo equally (long "
        "demos no longer count more); every phase of every demo equally (needs the demos' per-step phase)")
    num_workers: Optional[int] = Field(
        None, ge=0, description="DataLoader worker processes; null: 0 on CPU, on CUDA one per core up to 8")

    @model_validator(mode="after")
    def _needs_budget(self):
        if self.steps is None and self.minutes is None:
            raise ValueError("set steps, minutes or both")
        return self


class ReportConfig(Strict):
    title: Optional[str] = None
    videos_per_policy: int = Field(2, ge=0, description="episodes rendered to mp4 per policy and evaluation")
    sections: dict[str, bool] = Field(default_factory=dict, description=(
        "switch report sections off (false) by name, e.g. {probe: false, prediction_strips: false}; "
        "every section not named here is on"))

    @model_validator(mode="before")
    @classmethod
    def _old_switches(cls, data):
        """Run directories written before ``sections`` say ``heatmaps: false`` / ``probe: false``; read them
        as the sections they switched (``pxp eval`` on an old run keeps working)."""
        if isinstance(data, dict) and ("heatmaps" in data or "probe" in data):
            data = dict(data)
            sections = dict(data.get("sections") or {})
            for old, new in (("heatmaps", "prediction_strips"), ("probe", "probe")):
                if old in data:
                    sections.setdefault(new, bool(data.pop(old)))
            data["sections"] = sections
        return data


def _union(models: list[type], kind: str):
    if not models:
        return Annotated[dict, Field(description=f"no {kind} plugins are installed")]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]


def build_spec_model(registry: Registry) -> type[BaseModel]:
    """The Spec model for the plugins in ``registry``."""
    models = {kind: [c.config_model for c in registry.components[kind].values()] for kind in registry.components}

    Policy = create_model(
        "PolicySpec",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A policy: backbone + head trained with an objective on a dataset.",
        backbone=(_union(models["backbones"], "backbone"), ...),
        head=(_union(models["heads"], "head"), ...),
        objective=(_union(models["objectives"], "objective"), ...),
        dataset=(str, Field(..., description="name of a dataset in this spec")),
        filter_key=(Optional[str], Field(None, description=(
            "train only on the dataset's demos listed under this robomimic filter key (mask/<key>); "
            "position grids write one per half: left, right, near, far"))),
        demos=(Optional[int], Field(None, ge=1, description="train on this many demos, chosen by demo_seed")),
        demo_seed=(int, 0),
        init_from=(Optional[str], Field(None, description="a policy of this spec or a checkpoint directory")),
        train=(TrainConfig, ...),
    )
    return create_model(
        "Spec",
        __config__=ConfigDict(extra="forbid"),
        __doc__="An experiment: scene, datasets, policies, evaluations and report.",
        name=(str, Field(..., pattern=NAME, max_length=NAME_MAX, description="run name; the run directory is runs/<name>")),
        description=(str, ""),
        seed=(int, 0),
        smoke=(bool, Field(False, description="set by `pxp run --smoke`: every size shrunk, results kept apart")),
        device=(Literal["auto", "cpu", "cuda"], "auto"),
        workers=(Optional[int], Field(None, ge=1, description="worker processes (default: one per core)")),
        executor=(Literal["local", "ray"], Field("local", description=(
            "where episodes and training units run: the local process pool, or a Ray cluster "
            "(pip install \"pxp[ray]\"); PXP_EXECUTOR and pxp run --executor override it"))),
        scene=(_union(models["scenes"], "scene"), ...),
        datasets=(dict[Annotated[str, Field(pattern=NAME, max_length=NAME_MAX)], _union(models["datasets"], "dataset")], Field(default_factory=dict)),
        policies=(dict[Annotated[str, Field(pattern=NAME, max_length=NAME_MAX)], Policy], Field(default_factory=dict)),
        evaluations=(dict[Annotated[str, Field(pattern=NAME, max_length=NAME_MAX)], _union(models["evaluators"], "evaluator")], Field(default_factory=dict)),
        report=(ReportConfig, Field(default_factory=ReportConfig)),
        loggers=(list[_union(models["loggers"], "logger")], Field(default_factory=list, description=(
            "run loggers to switch on, e.g. [{type: tensorboard}]: they observe training steps, episodes and "
            "units (docs/plugins.md, \"Observing a run\")"))),
        policy_groups=(dict[str, list[str]], Field(
            default_factory=dict, description="named groups of policies (sweeps fill this in); evaluations may name a group")),
        replicates=(int, Field(1, ge=1, description=(
            "train every policy this many times with different training seeds (init, sampling order; the same "
            "demos) and run every evaluation on each replicate, on the same episodes"))),
        replicate_seeds=(Optional[list[int]], Field(None, description=(
            "train.seed of each replicate, replicate 0 first (default: the policy's train.seed + replicate index)"))),
        replicas=(dict[str, list[str]], Field(default_factory=dict, description=(
            "evaluation → its replicates' evaluations, replicate 0 first (filled in when replicates expand)"))),
    )


# ---------------------------------------------------------------- sweeps

def expand_sweeps(raw: dict) -> tuple[dict, dict[str, list[str]]]:
    """Expand ``policies.X.sweep: {demos: [1, 3], train.seed: [0, 1]}`` into one policy per combination.

    Members are named ``X-demos1`` (``X-demos1-seed0`` for several keys); evaluations may name the
    group ``X`` to mean all of them. Returns the expanded spec and the groups.
    """
    raw = copy.deepcopy(raw)
    policies = raw.get("policies")
    groups: dict[str, list[str]] = {}
    if not isinstance(policies, dict):
        return raw, groups
    out = {}
    for name, body in policies.items():
        sweep = body.pop("sweep", None) if isinstance(body, dict) else None
        if not sweep:
            out[name] = body
            continue
        if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
            raise SpecError([(f"policies.{name}.sweep", "must map field names to non-empty lists")])
        keys = list(sweep)
        groups[name] = []
        for values in itertools.product(*(sweep[k] for k in keys)):
            member = copy.deepcopy(body)
            label = "-".join(f"{k.split('.')[-1]}{v}" for k, v in zip(keys, values))
            for key, value in zip(keys, values):
                _set_dotted(member, key, value)
            out[f"{name}-{label}"] = member
            groups[name].append(f"{name}-{label}")
    raw["policies"] = out
    explicit = raw.get("policy_groups") or {}
    if isinstance(explicit, dict):
        groups = {**explicit, **groups}
    if groups:
        raw["policy_groups"] = groups
    return raw, groups


def replicate_name(name: str, index: int) -> str:
    """Replicate 0 keeps the name (and the hash) of the unreplicated unit; replicate r is ``name-rep<r>``."""
    return f"{name}-rep{index}" if index else name


def expand_replicates(raw: dict) -> dict:
    """Expand ``replicates: K`` into K copies of every policy (``X``, ``X-rep1`` …; replicate r trains with
    seed ``replicate_seeds[r]``, else ``train.seed + r``, from replicate r of its ``init_from``) and of every
    evaluation (``E-rep<r>`` evaluates replicate r's policies on E's episodes). Records ``replicas``, so a
    resolved spec (already expanded) is left as it is. K = 1 without seeds changes nothing."""
    k, seeds = raw.get("replicates", 1), raw.get("replicate_seeds")
    if raw.get("replicas") or not isinstance(k, int) or isinstance(k, bool) or k < 1 or (k == 1 and not seeds):
        return raw
    if seeds is not None and (not isinstance(seeds, list) or len(seeds) != k or len(set(map(str, seeds))) != k):
        raise SpecError([("replicate_seeds", f"must list {k} different seeds, one per replicate (replicates: {k})")])
    raw = copy.deepcopy(raw)
    policies, groups, evaluations = (raw.get(k) or {} for k in ("policies", "policy_groups", "evaluations"))
    if not all(isinstance(x, dict) for x in (policies, groups, evaluations)):
        return raw  # validation names the problem
    replicated = {n for n, body in policies.items() if isinstance(body, dict)}
    rename = lambda name, r: replicate_name(name, r) if name in replicated or name in groups else name
    out_policies, out_groups, out_evals = {}, {}, {}
    for r in range(k):
        for name, body in policies.items():
            seed = seeds[r] if seeds is not None else None
            out_policies[rename(name, r)] = _replicate_policy(body, r, seed, replicated) if name in replicated else body
        for group, members in groups.items():
            out_groups[replicate_name(group, r)] = [rename(m, r) for m in members]
        for name, body in evaluations.items():
            member = copy.deepcopy(body)
            if isinstance(member, dict) and "policies" in member:
                member["policies"] = _rename_policies(member["policies"], lambda n: rename(n, r))
            out_evals[replicate_name(name, r)] = member
    raw["policies"], raw["evaluations"] = out_policies, out_evals
    raw["replicas"] = {name: [replicate_name(name, r) for r in range(k)] for name in evaluations}
    if out_groups:
        raw["policy_groups"] = out_groups
    return raw


def _replicate_policy(body: dict, index: int, seed, replicated: set) -> dict:
    """Replicate ``index`` of a policy: its training seed (``seed``, else ``train.seed`` + index) and replicate
    ``index`` of its ``init_from``; everything else, the demos included, as the policy's."""
    member = copy.deepcopy(body)
    train = member.get("train")
    if isinstance(train, dict) and (seed is not None or index):
        base = train.get("seed", 0)
        train["seed"] = seed if seed is not None else (base + index if isinstance(base, int) else base)
    if member.get("init_from") in replicated:
        member["init_from"] = replicate_name(member["init_from"], index)
    return member


def _rename_policies(value, rename):
    """An evaluation's ``policies`` (a name, a list, or a mapping of lists) with every name renamed."""
    if isinstance(value, str):
        return rename(value)
    if isinstance(value, list):
        return [_rename_policies(v, rename) for v in value]
    if isinstance(value, dict):
        return {k: _rename_policies(v, rename) for k, v in value.items()}
    return value


def replicate_index(spec) -> dict[str, tuple[str, int]]:
    """Evaluation name → (the evaluation it replicates, replicate index); (itself, 0) without replicates."""
    index = {name: (name, 0) for name in spec.evaluations}
    for base, names in (getattr(spec, "replicas", None) or {}).items():
        index.update({name: (base, r) for r, name in enumerate(names)})
    return index


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    """``a.b.c`` = value; a ``*`` part sets it in every entry at that level (``policies.*.backbone.weights``)."""
    *parents, leaf = dotted.split(".")
    for i, p in enumerate(parents):
        if p == "*":
            for child in d.values():
                if isinstance(child, dict):
                    _set_dotted(child, ".".join([*parents[i + 1:], leaf]), value)
            return
        d = d.setdefault(p, {})
    d[leaf] = value


# ---------------------------------------------------------------- loading and checking

def apply_overrides(raw: dict, sets=()) -> dict:
    """Apply ``a.b.c=VALUE`` overrides (VALUE parsed as YAML; ``*`` matches every entry of a level) to a raw
    spec dict (modified, and returned)."""
    for item in sets or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError([(key, "an override needs KEY=VALUE")])
        _set_dotted(raw, key, yaml.safe_load(value))
    return raw


def _format_loc(err: dict, raw: dict) -> str:
    """The error's field path in the user's spec: pydantic puts a discriminated union's chosen tag
    in the path (policies.p.backbone.dinov2.weights); walking the input shows which parts are tags.
    A config validator that raised a FieldError adds the field it names."""
    path = _loc_path(err, raw)
    field = getattr((err.get("ctx") or {}).get("error"), "field", None)
    return ".".join([*path, field] if field else path)


def _loc_path(err: dict, raw: dict) -> list[str]:
    path, node = [], raw
    for part in err["loc"]:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue  # the union's tag, not a key the user wrote
        path.append(str(part))
        if isinstance(node, list):  # a list of components (loggers): the index, then the item
            node = node[part] if isinstance(part, int) and 0 <= part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    if err["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        path.append("type")
    return path


def _format_msg(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown field (not allowed here; check the spelling)"
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r}; available: {ctx.get('expected_tags')}"
    if err["type"] == "union_tag_not_found":
        return f"missing 'type'; {msg}"
    return msg.removeprefix("Value error, ")


def parse_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SpecError([("", f"no such file: {path}")], source=str(path))
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError([("", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                              f"save the spec as UTF-8")], source=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError([("", f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}")], source=str(path)) from None
    if not isinstance(raw, dict):
        raise SpecError([("", f"a spec must be a YAML mapping, got {type(raw).__name__}")], source=str(path))
    return raw


def validate_spec(raw: dict, registry: Registry | None = None, source: str | None = None):
    """Validate a spec dict; returns the Spec instance or raises SpecError listing every problem."""
    registry = registry or get_registry()
    raw, _ = expand_sweeps(raw)
    raw = expand_replicates(raw)
    groups = raw.get("policy_groups") or {}
    model = build_spec_model(registry)
    try:
        spec = model.model_validate(raw)
    except ValidationError as exc:
        raise SpecError([(_format_loc(e, raw), _format_msg(e)) for e in exc.errors()], source=source) from None
    problems = check_references(spec, groups) + check_contracts(spec, registry)
    if problems:
        raise SpecError(problems, source=source)
    return spec


def check_contracts(spec, registry: Registry) -> list[tuple[str, str]]:
    """Each policy's objective accepts what its head outputs (``accepts`` / ``output_kind`` of their config
    models, see :mod:`pxp.core.contracts`): a mismatch is found here, naming both plugins, not at step 1."""
    problems = []
    for name, pol in spec.policies.items():
        head, objective = registry.get("heads", pol.head.type), registry.get("objectives", pol.objective.type)
        kind, accepts = head.config_model.output_kind, objective.config_model.accepts
        if kind not in accepts:
            problems.append((f"policies.{name}.objective",
                             f"objective '{objective.name}' (plugin '{objective.plugin}') accepts head outputs "
                             f"{', '.join(map(repr, accepts))}, but head '{head.name}' (plugin '{head.plugin}') "
                             f"outputs {kind!r}"))
    return problems


def load_spec(path, registry: Registry | None = None):
    return validate_spec(parse_yaml(Path(path)), registry, source=str(path))


def policy_groups(spec) -> dict[str, list[str]]:
    return dict(getattr(spec, "policy_groups", None) or {})


def referenced_policies(config) -> list[str]:
    """Policy names an evaluator config refers to (its contract's ``referenced_policies()``)."""
    return list(config.referenced_policies())


def resolve_policy_names(spec, names) -> list[str]:
    """Expand sweep group names into their members, keeping order."""
    groups = policy_groups(spec)
    out: list[str] = []
    for n in names:
        out.extend(groups.get(n, [n]))
    return out


def scene_config(spec, overrides: dict | None = None):
    """The spec's scene config with a section's overrides applied (validated)."""
    base = spec.scene
    if not overrides:
        return base
    return type(base).model_validate({**base.model_dump(), **overrides})


def check_references(spec, groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    problems = []
    datasets, policies = set(spec.datasets), set(spec.policies)
    known_policies = policies | set(groups)
    for name, pol in spec.policies.items():
        if pol.dataset not in datasets:
            problems.append((f"policies.{name}.dataset", f"no dataset named {pol.dataset!r} (datasets: {', '.join(sorted(datasets)) or 'none'})"))
        keys = spec.datasets[pol.dataset].filter_keys if pol.dataset in datasets else None
        if pol.filter_key and keys is not None and pol.filter_key not in keys:
            problems.append((f"policies.{name}.filter_key", f"dataset {pol.dataset!r} has no filter key "
                                                            f"{pol.filter_key!r} (allowed: {', '.join(keys)})"))
        if pol.init_from and _looks_like_path(pol.init_from):
            problem = _checkpoint_dir_problem(Path(pol.init_from))
            if problem:
                problems.append((f"policies.{name}.init_from", problem))
        elif pol.init_from:
            if pol.init_from not in policies:
                problems.append((f"policies.{name}.init_from", f"no policy named {pol.init_from!r} (and not a path to a checkpoint)"))
            elif pol.init_from == name:
                problems.append((f"policies.{name}.init_from", "a policy cannot initialise from itself"))
    problems += _init_cycles(spec)
    for group, members in spec.policy_groups.items():
        if group in policies:
            problems.append((f"policy_groups.{group}", "a group cannot share its name with a policy"))
        for m in members:
            if m not in policies:
                problems.append((f"policy_groups.{group}", f"no policy named {m!r}"))
    for section in ("datasets", "evaluations"):
        for name, cfg in getattr(spec, section).items():
            overrides = getattr(cfg, "scene", None)
            if overrides:
                try:
                    scene_config(spec, overrides)
                except ValidationError as exc:
                    for e in exc.errors():
                        problems.append((f"{section}.{name}.scene.{'.'.join(map(str, e['loc']))}", _format_msg(e)))
    for name, cfg in spec.evaluations.items():
        for ref in referenced_policies(cfg):
            if ref.startswith("builtin:"):
                if _builtin_name(ref[len("builtin:"):]) not in BUILTIN_POLICIES:
                    problems.append((f"evaluations.{name}.policies", f"no built-in policy {ref!r} (built-in: "
                                     + ", ".join(f"builtin:{b}" for b in BUILTIN_POLICIES) + ", builtin:expertN)"))
            elif ref not in known_policies:
                problems.append((f"evaluations.{name}.policies", f"no policy named {ref!r} (policies: {', '.join(sorted(known_policies)) or 'none'})"))
    return problems


def _builtin_name(name: str) -> str:
    return "expert" if name.startswith("expert") and name[len("expert"):].isdigit() else name


def _checkpoint_dir_problem(path: Path) -> str | None:
    if not path.exists():
        return f"{path} does not exist (a checkpoint directory, or the name of a policy of this spec)"
    if not (path / "checkpoint.json").is_file():
        return f"{path} is not a pxp checkpoint directory (it has no checkpoint.json)"
    return None


def _looks_like_path(s: str) -> bool:
    return "/" in s or s.endswith((".pt", ".pth", ".safetensors"))


def _init_cycles(spec) -> list[tuple[str, str]]:
    for start in spec.policies:
        seen, cur = [start], spec.policies[start].init_from
        while cur in spec.policies:
            if cur in seen:
                return [(f"policies.{start}.init_from", "initialisation cycle: " + " → ".join(seen + [cur]))]
            seen.append(cur)
            cur = spec.policies[cur].init_from
    return []


def dump_spec(spec) -> str:
    """The resolved spec (defaults filled in, sweeps expanded) as YAML."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def spec_json_schema(registry: Registry | None = None) -> dict:
    return build_spec_model(registry or get_registry()).model_json_schema()
