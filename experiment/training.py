"""The training loop: AdamW + warmup/cosine, a step and/or wall-clock budget, bf16 autocast on CUDA,
seeded, metrics.jsonl, atomic checkpoints with resume, ``init_from`` weight transfer, and a clear
stop on a NaN loss that keeps the last good checkpoint.

``train_policy(name, policy_cfg, ctx)`` is what the runner calls; :func:`train` is the loop itself
on ready-made datasets (tests and the benchmark use it directly). torch is imported inside functions.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import numpy as np

from pxp.core import io
from pxp.core.camera import Camera
from pxp.core.errors import PxpError
from . import feature_cache
from .policy import METRICS, CheckpointError, Policy, build_policy, image_hw, read_checkpoint, read_marker, write_checkpoint

LOG_EVERY = 10  # steps between train-metric lines (and NaN checks: one host sync per interval)
EVAL_SAMPLES = 256  # held-out samples per evaluation (evenly spaced, the same every time)


class TrainingDiverged(PxpError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------- runner entry point

def train_policy(name: str, policy_cfg, ctx, workspace=None) -> dict:
    """Train policy ``name`` from its spec entry; checkpoints go to ``ctx.checkpoint_dir(name)``.
    ``workspace``: the scene's box when the caller resolved it (a remote worker has no spec), else from ``ctx``."""
    import torch

    tcfg = policy_cfg.train
    seed_everything(tcfg.seed)
    device = torch.device(ctx.device or "cpu")
    policy = build_policy(policy_cfg.backbone, policy_cfg.head, ctx.create, device, policy_cfg.objective)
    objective = ctx.create("objectives", policy_cfg.objective)
    path = Path(ctx.dataset_path(policy_cfg.dataset))
    train_ds, hold_ds, split = demo_datasets(path, policy, tcfg, policy_cfg.demos, policy_cfg.demo_seed,
                                             policy_cfg.filter_key)
    held = f"holding out {len(split['holdout'])} of them" if split["holdout"] else "none held out"
    ctx.log(f"{name}: training on {len(split['train'])} demos ({len(train_ds)} samples; the dataset has "
            f"{split['available']}, {held}); backbone weights: {policy.weights_info['source']}")
    init = None
    if policy_cfg.init_from:
        init = Path(ctx.checkpoint_dir(policy_cfg.init_from))  # a policy of the spec or a directory
    meta = {"name": name, "dataset": policy_cfg.dataset, "demos": split}
    return train(policy, objective, train_ds, hold_ds, tcfg, ctx.checkpoint_dir(name), log=ctx.log,
                 progress=ctx.progress, init_from=init, meta=meta, description=f"train {name}",
                 workspace=workspace or end_effector_box(policy_cfg, ctx), on_metrics=_step_event(ctx, name))


def _step_event(ctx, name: str):
    """``pxp_training_step`` for policy ``name``, fired here, where it trains (None: the context has no events)."""
    events = getattr(ctx, "events", None)
    if events is None:
        return None
    return lambda row: events.fire("pxp_training_step", policy=name, step=row["step"], metrics=row)


def preflight(spec, source: str | None = None) -> None:
    """Before any work: every policy's backbone config is asked whether its weights can be had here
    (``preflight()``: None or why not; the contract's default asks nothing); if any cannot, stop with ONE
    message (exit 2) that says how to supply them (``how_to_supply``) or how to opt into random init."""
    from pxp.core.errors import SpecError

    missing: dict[str, list[str]] = {}
    for name, pol in spec.policies.items():
        problem = pol.backbone.preflight()
        if problem:
            missing.setdefault(problem, []).append(name)
    if not missing:
        return
    names = [n for ns in missing.values() for n in ns]
    backbone = spec.policies[names[0]].backbone
    hint = backbone.how_to_supply(names)  # the backbone plugin says how to get its weights
    why = "; ".join(f"{p} ({', '.join(ns)})" for p, ns in missing.items())
    raise SpecError([("policies.*.backbone.weights",
                      f"pretrained backbone weights cannot be obtained on this machine: {why}. To run, "
                      f"{hint}")], source=source)


def end_effector_box(policy_cfg, ctx):
    """(low, high, source): the box of end-effector targets of the scene the policy's dataset was recorded
    in, from the scene config's ``end_effector_box()`` (None when the scene has none). It depends on the
    scene only, never on which cells of the grid the dataset covers."""
    scene_cfg = ctx.scene_config(**ctx.spec.datasets[policy_cfg.dataset].scene_overrides())
    box = scene_cfg.end_effector_box()
    if box is None:
        return None
    low, high = box
    return tuple(map(float, low)), tuple(map(float, high)), f"scene {scene_cfg.type}"




def demo_datasets(path: Path, policy: Policy, tcfg, count: int | None, demo_seed: int = 0,
                  filter_key: str | None = None):
    """Train / held-out DemoDatasets split by demo (never by frame, which would leak).

    ``filter_key`` restricts everything to the demos the dataset lists under ``mask/<filter_key>``. With
    ``count`` demos asked for, held-out demos come from the ones not chosen. Without it, every
    demo trains unless ``holdout_fraction`` > 0 (default 0) asks to hold some out: an explicit opt-in,
    logged and stated in the summary, since it changes the demo count the experiment claims.
    """
    from .data import DatasetError, DemoDataset, open_dataset, select_demos

    with open_dataset(path) as f:
        pool = f.filtered(filter_key) if filter_key else np.arange(len(f))
    n = len(pool)
    if n == 0:
        raise DatasetError(f"{path}: filter key {filter_key!r} lists no successful demo")
    chosen = pool[select_demos(n, count, demo_seed)]
    rest = np.setdiff1d(pool, chosen)
    n_hold = int(round(tcfg.holdout_fraction * n))
    n_hold = max(n_hold, 1) if tcfg.holdout_fraction > 0 and n >= 2 else n_hold
    if count is None:  # hold out from all demos, seeded, and train on the others
        perm = np.random.default_rng(demo_seed + 7919).permutation(chosen)
        hold, chosen = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    else:
        hold = np.sort(np.random.default_rng(demo_seed + 7919).permutation(rest)[:n_hold])
    kw = dict(horizon=policy.horizon, stride=tcfg.target_stride)
    train_ds = DemoDataset(path, demos=chosen, **kw)
    hold_ds = DemoDataset(path, demos=hold, **kw) if len(hold) else None
    return train_ds, hold_ds, {"train": chosen.tolist(), "holdout": hold.tolist(), "available": int(n)}


# ---------------------------------------------------------------- pieces

def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(amp: str, device):
    """bf16 autocast on CUDA (``auto``), or wherever ``bf16`` is asked for; None = fp32."""
    import torch

    if amp == "bf16" or (amp == "auto" and torch.device(device).type == "cuda"):
        return torch.bfloat16
    return None


def lr_factor(step: int, progress: float, warmup_steps: int, schedule: str) -> float:
    """Linear warmup over ``warmup_steps``, then cosine to 0 over ``progress`` in [0, 1] (the larger
    of the step and the wall-clock fractions, so a ``minutes:`` budget also anneals)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


NO_DECAY_TENSORS = ("pos_embed", "cls_token", "reg_token", "mask_token")
PRETRAINED_BACKBONE_LR_SCALE = 0.1  # backbone lr = 0.1 × lr for pretrained weights (train.backbone_lr_scale)


def backbone_lr_scale(policy: Policy, tcfg) -> float:
    """``train.backbone_lr_scale``, or by default 0.1 for pretrained backbone weights (fine-tune them
    gently, as DETR/ACT-style recipes do) and 1 for a random init (nothing to preserve)."""
    scale = getattr(tcfg, "backbone_lr_scale", None)
    if scale is not None:
        return float(scale)
    return 1.0 if policy.weights_info.get("source") == "random init" else PRETRAINED_BACKBONE_LR_SCALE


def no_decay(name: str, p) -> bool:
    """Biases, norm scales, position embeddings, class/register tokens and learned embedding vectors."""
    leaf = name.rsplit(".", 1)[-1]
    return p.ndim < 2 or leaf in NO_DECAY_TENSORS or leaf.endswith("_embed")


def param_groups(policy: Policy, tcfg) -> list[dict]:
    """Backbone / head × decay / no decay; each group's ``lr_scale`` multiplies the scheduled lr."""
    scales = {"backbone": backbone_lr_scale(policy, tcfg), "head": 1.0}
    groups: dict[tuple[str, bool], dict] = {}
    for name, p in policy.net.named_parameters():
        if not p.requires_grad:
            continue
        part = "backbone" if name.startswith("backbone.") else "head"
        decay = not no_decay(name, p)
        g = groups.setdefault((part, decay), {"params": [], "names": [], "part": part, "lr_scale": scales[part],
                                              "weight_decay": tcfg.weight_decay if decay else 0.0})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def make_optimizer(policy: Policy, tcfg):
    """AdamW over :func:`param_groups` (a separate backbone lr; no weight decay on :func:`no_decay` tensors)."""
    import torch

    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(policy, tcfg)]
    fused = policy.device.type == "cuda"
    return torch.optim.AdamW(groups, lr=tcfg.lr, betas=(0.9, 0.999), fused=fused)


def make_train_step(policy: Policy, objective, optimizer, dtype):
    """One optimizer step on a device batch → (loss, parts): detached tensors, no host sync."""
    import torch

    head = policy.head
    device_type = policy.device.type

    def step(batch: dict):
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = policy.forward(batch, teacher=True)
            loss, parts = objective(out, batch, head)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), parts

    return step


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Batches:
    """Endless device batches; each epoch reshuffles with its own seed, so a resume that starts the
    next epoch sees the same order a straight run would have. With worker processes (``num_workers``;
    None: see :func:`pxp.experiment.data.loader_workers`) the loader and its workers live across epochs, and on
    CUDA batches come in pinned memory and are copied without blocking."""

    def __init__(self, dataset, batch_size: int, seed: int, device, num_workers: int | None = 0, epoch: int = 0,
                 weights=None):
        from .data import loader_workers

        if len(dataset) == 0:
            raise PxpError("the training set is empty")
        self.dataset, self.batch_size, self.seed, self.device = dataset, batch_size, seed, device
        self.weights = weights  # per-sample draw weights (with replacement); None: a shuffle of every sample
        self.num_workers, self.epoch = loader_workers(num_workers, device), epoch
        self._it, self._dl, self._gen = None, None, None

    def _loader(self):
        import torch
        from torch.utils.data import DataLoader, WeightedRandomSampler

        n = len(self.dataset)
        if self._dl is None or not self.num_workers:
            self._gen = torch.Generator()
            workers = dict(persistent_workers=True, prefetch_factor=4) if self.num_workers else {}
            order = dict(shuffle=True, generator=self._gen) if self.weights is None else dict(
                sampler=WeightedRandomSampler(self.weights, n, replacement=True, generator=self._gen))
            self._dl = DataLoader(self.dataset, batch_size=min(self.batch_size, n), **order,
                                  drop_last=n >= self.batch_size, num_workers=self.num_workers,
                                  pin_memory=torch.device(self.device).type == "cuda", **workers)
        self._gen.manual_seed(self.seed * 100_003 + self.epoch)
        if self._dl._iterator is not None:
            # a persistent iterator is reset, not rebuilt, and skips the worker-seed draw a new one makes
            # first: draw it here, so every epoch's order is the one num_workers=0 gives
            torch.empty((), dtype=torch.int64).random_(generator=self._gen)
        return iter(self._dl)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._it is None:
            self._it = self._loader()
        try:
            b = next(self._it)
        except StopIteration:
            self.epoch += 1
            self._it = self._loader()
            b = next(self._it)
        return to_device(b, self.device)


def batch_cameras(batch: dict) -> list[Camera]:
    H, W = image_hw(batch)
    K, E = batch["K"].double().cpu().numpy(), batch["extrinsics"].double().cpu().numpy()
    return [Camera(k, e, int(W), int(H)) for k, e in zip(K, E)]


def evaluate(policy: Policy, objective, dataset, device, dtype=None, batch_size: int = 32, max_samples: int = EVAL_SAMPLES) -> dict:
    """Held-out loss (parts), pixel error (px, in the dataset image), 3D error (cm), gripper accuracy.

    Uses inference-time conditioning (no ground truth), as rollouts would."""
    import torch

    idx = np.unique(np.linspace(0, len(dataset) - 1, min(max_samples, len(dataset))).round().astype(int))
    sums: dict[str, float] = {}
    n = 0
    was_training = policy.net.training
    policy.net.eval()
    try:
        for start in range(0, len(idx), batch_size):
            items = [dataset[int(i)] for i in idx[start : start + batch_size]]
            batch = to_device({k: torch.stack([it[k] for it in items]) for k in items[0]}, device)
            with torch.no_grad(), torch.autocast(policy.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = policy.forward(batch)
                loss, parts = objective(out, batch, policy.head)
            dec = policy.decode(out, batch_cameras(batch))
            b = len(items)
            px = np.linalg.norm(dec["pixel"] - batch["target_pixel"].cpu().numpy(), axis=-1).mean()
            cm = 100 * np.linalg.norm(dec["xyz"] - batch["target_pos"].cpu().numpy(), axis=-1).mean()
            acc = ((dec["gripper"] > 0.5) == (batch["target_gripper"].cpu().numpy() > 0.5)).mean()
            vals = {"loss": float(loss), **{k: float(v) for k, v in parts.items()},
                    "pixel_error_px": float(px), "error_3d_cm": float(cm), "gripper_accuracy": float(acc)}
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + v * b
            n += b
    finally:
        policy.net.train(was_training)
    return {k: v / n for k, v in sums.items()} | {"samples": n}


def transfer_weights(policy: Policy, source_dir, log=print) -> dict:
    """Copy every tensor whose name and shape match from another policy's checkpoint; tensors whose
    shape differs go to the head's ``transfer_tensor(name, tensor, source_head_config)`` hook when it
    has one (PARA tiles a 2D heatmap layer across height bins); log the rest."""
    marker, state, _ = read_checkpoint(source_dir)
    own = policy.state_dict()
    copied = [k for k, v in own.items() if k in state and tuple(state[k].shape) == tuple(v.shape)]
    adapted = _adapt_mismatched(policy, own, state, copied, (marker.get("policy") or {}).get("head") or {})
    reshaped = [f"{k} {tuple(state[k].shape)}→{tuple(own[k].shape)}" for k in own
                if k in state and k not in copied and k not in adapted]
    missing = [k for k in own if k not in state]
    unused = [k for k in state if k not in own]
    policy.load_state_dict({**{k: state[k] for k in copied}, **adapted}, strict=False)
    report = {"source": str(source_dir), "source_step": marker["step"], "copied": copied,
              "adapted": sorted(adapted), "shape_mismatch": reshaped, "missing_in_source": missing,
              "unused_from_source": unused}
    log(f"init_from {source_dir}: copied {len(copied)}/{len(own)} tensors ({_group(copied)})")
    if adapted:
        log(f"init_from: tiled across height bins by the head (2D heatmap → volume): "
            + ", ".join(f"{k} {tuple(state[k].shape)}→{tuple(own[k].shape)}" for k in sorted(adapted)))
    if reshaped or missing:
        log(f"init_from: not transferred — shape mismatch: {', '.join(reshaped) or 'none'}; "
            f"absent in source: {', '.join(missing) or 'none'}")
    if unused:
        log(f"init_from: source tensors with no counterpart: {', '.join(unused)}")
    return report


def _adapt_mismatched(policy: Policy, own: dict, state: dict, copied: list, source_head: dict) -> dict:
    out = {}
    for k in own:
        if k not in state or k in copied or not k.startswith("head."):
            continue
        t = policy.head.transfer_tensor(k[len("head."):], state[k], source_head)
        if t is not None and tuple(t.shape) == tuple(own[k].shape):
            out[k] = t
    return out


def _group(names: list[str], depth: int = 2) -> str:
    """``backbone.model.blocks.0.attn.qkv.weight`` … → ``backbone.model ×N, head.proj ×2`` (readable logs)."""
    counts: dict[str, int] = {}
    for n in names:
        key = ".".join(n.split(".")[:depth])
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} ×{c}" for k, c in counts.items()) or "nothing"


def prepare_head(policy: Policy, workspace, log) -> dict | None:
    """The head's one-time setup before training (:class:`pxp.core.contracts.HeadSetup`): e.g. a regression
    head takes the scene's end-effector box to normalise positions to. What it returns is kept in the marker."""
    from pxp.core.contracts import HeadSetup

    return policy.head.prepare(HeadSetup(end_effector_box=workspace, log=log))


# ---------------------------------------------------------------- the loop

class _Budget:
    def __init__(self, steps: int | None, minutes: float | None, elapsed: float):
        self.steps, self.seconds = steps, (minutes * 60 if minutes else None)
        self.t0, self.before = time.monotonic(), elapsed

    @property
    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.t0

    def progress(self, step: int) -> float:
        fr = [step / self.steps] if self.steps else []
        fr += [self.elapsed / self.seconds] if self.seconds else []
        return max(fr)

    def done(self, step: int) -> bool:
        return self.progress(step) >= 1.0


def _resume(policy: Policy, out_dir: Path, optimizer=None):
    """(step, elapsed, epoch, marker) from a complete checkpoint of the same policy, else None."""
    marker = read_marker(out_dir)
    if marker is None:
        return None
    if marker.get("policy", {}).get("backbone") != policy.config["backbone"] or marker["policy"].get("head") != policy.config["head"]:
        raise CheckpointError(f"{out_dir} holds a checkpoint of a different policy; delete it or pick another directory")
    marker, model_state, train_state = read_checkpoint(out_dir, with_train_state=True)
    policy.load_state_dict(model_state)
    if train_state is None:
        raise CheckpointError(f"{out_dir}: checkpoint has no training state to resume from")
    if optimizer is not None:
        optimizer.load_state_dict(train_state["optimizer"])
    import torch

    torch.set_rng_state(train_state["rng"])
    return int(train_state["step"]), float(train_state["elapsed"]), int(train_state["epoch"]) + 1, marker


@contextlib.contextmanager
def flush_denormals(enabled: bool = True):
    """Flush-to-zero / denormals-are-zero on the calling thread for the block, then back as it was.

    Subnormal floats (|x| < 1.2e-38) make x86 CPU arithmetic run on microcode assists, 10-100x
    slower; after a few hundred steps GELU's vanishing derivative produced enough of them to slow
    the quickstart PARA step 7x (heads also guard themselves: see ``FlushGELU`` in the PARA head,
    which also covers intra-op worker threads that this per-thread mode does not reach). Values
    this small change nothing in float32 sums of real gradients. The previous mode is probed (a
    subnormal product is 0 under FTZ) and restored, so MuJoCo rollouts later in the same process
    run in the mode they would have without training.
    """
    import torch

    def on() -> bool:
        return float(torch.tensor(1e-30) * torch.tensor(1e-10)) == 0.0

    before = on()
    changed = enabled and not before and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


def train(policy: Policy, objective, train_ds, holdout_ds, tcfg, out_dir, *, log=print, progress=None,
          init_from=None, meta: dict | None = None, description: str = "train", workspace=None,
          cache_features: bool = True, on_metrics=None) -> dict:
    """Train ``policy`` with ``objective`` until ``tcfg.steps`` / ``tcfg.minutes`` (resuming from a
    checkpoint in ``out_dir``), evaluating and checkpointing every ``tcfg.eval_every`` steps.
    ``workspace``: (low, high, source) box the head may use (see :func:`end_effector_box`, :func:`prepare_head`).
    ``cache_features``: a frozen backbone part's features come from :mod:`.feature_cache` (False: the part
    runs at every step, the reference the cache is tested and benchmarked against).
    ``on_metrics(row)``: called with each row written to metrics.jsonl (train rows get ``steps_per_s`` too)."""
    with flush_denormals(policy.device.type == "cpu"):
        return _train(policy, objective, train_ds, holdout_ds, tcfg, out_dir, log=log, progress=progress,
                      init_from=init_from, meta=meta, description=description, workspace=workspace,
                      cache_features=cache_features, on_metrics=on_metrics)


def _train(policy: Policy, objective, train_ds, holdout_ds, tcfg, out_dir, *, log, progress, init_from, meta,
           description, workspace, cache_features, on_metrics) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / METRICS
    optimizer = make_optimizer(policy, tcfg)
    resumed = _resume(policy, out_dir, optimizer)
    meta = dict(meta or {})
    if resumed:
        step, elapsed, epoch, marker = resumed
        meta["init_from"], meta["workspace"] = marker.get("init_from"), marker.get("workspace")
        log(f"resuming from step {step} in {out_dir}")
        io.keep_jsonl(metrics_path, lambda row, step=step: row.get("step", 0) <= step)  # no rows twice after a kill
        if marker.get("finished"):
            return marker["summary"]
    else:
        step, elapsed, epoch = 0, 0.0, 0
        io.keep_jsonl(metrics_path, lambda row: False)  # rows of a run killed before its first checkpoint
        meta["init_from"] = transfer_weights(policy, init_from, log) if init_from else None
        meta["workspace"] = prepare_head(policy, workspace, log)  # after init_from: the scene's box wins
        scale = backbone_lr_scale(policy, tcfg)
        log(f"learning rates: head {tcfg.lr:.2e}, backbone {tcfg.lr * scale:.2e} (×{scale:g}); no weight decay "
            "on biases, norms, position embeddings, class/register tokens")
    meta.update(policy=policy.config, weights_info=policy.weights_info, train=_dump(tcfg))
    # after init_from / resume set the weights: a frozen backbone part's features come from its cache
    if cache_features:
        train_ds, holdout_ds = feature_cache.wrap(policy, train_ds, holdout_ds, log)
        meta["feature_cache"] = feature_cache.summary(train_ds)

    dtype = amp_dtype(tcfg.amp, policy.device)
    loop = LoopStep(policy, objective, optimizer, tcfg, dtype)
    # any map-style dataset trains with the default; the other schemes need DemoDataset's per-demo structure
    weights = None if tcfg.sampling == "frames" else train_ds.sample_weights(tcfg.sampling)
    data = Batches(train_ds, tcfg.batch_size, tcfg.seed, policy.device, tcfg.num_workers, epoch, weights=weights)
    budget = _Budget(tcfg.steps, tcfg.minutes, elapsed)
    state = {"data": data, "last_good": read_marker(out_dir), "first_loss": None, "last": None, "holdout": None}
    since, since_s = step, budget.elapsed
    policy.net.train()
    with (progress or _rich_progress)(description, tcfg.steps) as bar:
        while not budget.done(step):
            lr = loop(next(data), step, budget.progress(step))
            step += 1
            bar.advance(1)
            finished = budget.done(step)
            if step % LOG_EVERY == 0 or step == 1 or step % tcfg.eval_every == 0 or finished:
                row = loop.flush(step, since, lr, budget, out_dir, state)
                state["first_loss"] = state["first_loss"] or row["loss"]
                state["last"] = row
                io.append_jsonl(metrics_path, row)
                if on_metrics is not None:
                    on_metrics({**row, "steps_per_s": (step - since) / max(budget.elapsed - since_s, 1e-9)})
                since, since_s = step, budget.elapsed
            if step % tcfg.eval_every == 0 or finished:
                _evaluate_and_save(policy, objective, holdout_ds, train_ds, optimizer, dtype, step, budget,
                                   out_dir, meta, state, finished, log)
                if on_metrics is not None:
                    on_metrics(state["holdout"])
                since_s = budget.elapsed  # steps/s counts training steps, not the evaluation's time
    return state["summary"]


class LoopStep:
    """Everything train() does in a step except logging and evaluation: the lr schedule, the
    optimizer step, and on-device loss sums and a NaN flag (no host sync until :meth:`flush`).
    benchmarks/bench_train.py times exactly this against a bare PyTorch loop."""

    def __init__(self, policy: Policy, objective, optimizer, tcfg, dtype):
        import torch

        self.step_fn = make_train_step(policy, objective, optimizer, dtype)
        self.optimizer, self.tcfg = optimizer, tcfg
        self.acc, self.names = None, []
        self.bad = torch.zeros((), device=policy.device)

    def __call__(self, batch: dict, step: int, progress: float) -> float:
        import torch

        lr = self.tcfg.lr * lr_factor(step, progress, self.tcfg.warmup_steps, self.tcfg.schedule)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        loss, parts = self.step_fn(batch)
        self.names = list(parts)
        vec = torch.stack([loss.float(), *[p.float() for p in parts.values()]])
        self.acc = vec if self.acc is None else self.acc + vec
        self.bad = self.bad + (~torch.isfinite(loss)).float()
        return lr

    def flush(self, step, since, lr, budget, out_dir, state) -> dict:
        """Average the interval's losses (one host sync) and stop on NaN."""
        if float(self.bad) > 0:
            good = state["last_good"]
            where = f"step {good['step']} in {out_dir}" if good else "none (no checkpoint had been written)"
            raise TrainingDiverged(f"loss became NaN/inf between steps {since + 1} and {step} (lr {lr:.2e}); "
                                   f"training stopped. Last good checkpoint: {where}. Try a lower lr or amp: off.")
        vals = (self.acc / (step - since)).tolist()
        self.acc = None
        row = {"step": step, "split": "train", "lr": lr, "elapsed_s": round(budget.elapsed, 3), "loss": vals[0]}
        row.update(zip(self.names, vals[1:]))
        return row


def _evaluate_and_save(policy, objective, holdout_ds, train_ds, optimizer, dtype, step, budget, out_dir, meta, state, finished, log):
    import torch

    ds, split = (holdout_ds, "holdout") if holdout_ds is not None and len(holdout_ds) else (train_ds, "train-subset")
    ev = evaluate(policy, objective, ds, policy.device, dtype)
    row = {"step": step, "split": split, "elapsed_s": round(budget.elapsed, 3), **ev}
    io.append_jsonl(out_dir / METRICS, row)
    state["holdout"] = row
    demos = meta.get("demos") or {}
    summary = {"steps": step, "seconds": round(budget.elapsed, 1), "first_loss": state["first_loss"],
               "train_demos": len(demos.get("train", [])) if demos else len(getattr(train_ds, "demos", [])),
               "holdout_demos": len(demos.get("holdout", [])) if demos else 0,
               "final_loss": state["last"]["loss"], "eval": row, "weights": policy.weights_info,
               "checkpoint": str(out_dir),
               "init_from": _short_report(meta.get("init_from")), "feature_cache": meta.get("feature_cache")}
    train_state = {"optimizer": optimizer.state_dict(), "step": step, "elapsed": budget.elapsed,
                   "epoch": state["data"].epoch, "rng": torch.get_rng_state()}
    write_checkpoint(out_dir, step, policy.state_dict(), train_state,
                     {**meta, "finished": finished, "summary": summary})
    state["last_good"], state["summary"] = read_marker(out_dir), summary
    log(f"step {step}: loss {summary['final_loss']:.4f}, {split} pixel error {ev['pixel_error_px']:.2f} px, "
        f"3D error {ev['error_3d_cm']:.2f} cm")


def _short_report(report):
    if not report:
        return None
    return {"source": report["source"], "copied": len(report["copied"]), "adapted": report.get("adapted", []),
            "not_transferred": report["shape_mismatch"] + report["missing_in_source"]}


def _dump(cfg):
    return cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else dict(vars(cfg))


@contextlib.contextmanager
def _rich_progress(description: str, total):
    from rich.progress import Progress

    with Progress(transient=True) as p:
        task = p.add_task(description, total=total)

        class _Task:
            @staticmethod
            def advance(n=1):
                p.advance(task, n)

        yield _Task()
