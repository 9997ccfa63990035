"""One policy's training as a task any executor runs: in this process on the local executor (with the run's
console and progress bars), as a Ray task on a cluster (a GPU each on CUDA, a whole node on CPU).

The task declares the files it reads and writes (``pxp.core.execution``): the dataset, the checkpoint it
starts from (``init_from``) and its own checkpoint directory (read to resume, written; ``checkpoint.json``, the
commit point, last), so an executor whose worker does not see the run directory ships them both ways.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxp.core.errors import PxpError
from pxp.core.execution import input_dir, input_file, output_dir

from .policy import MARKER
from .training import end_effector_box, train_policy

# A training past this limit on a cluster is stopped (its worker killed; the last checkpoint stays): a unit's
# ``minutes`` budget twice over plus loading, or, for a unit counted in steps only, a day's ceiling.
SETUP_S = 30 * 60
STEPS_ONLY_LIMIT_S = 24 * 3600


@dataclass(frozen=True)
class TrainingUnit:
    name: str
    policy: Any  # the spec's policy entry (a pydantic model: pickles)
    device: str
    dataset: str = input_file()
    checkpoint: str = output_dir(commit=MARKER)
    init: str | None = input_dir(default=None)  # the checkpoint directory init_from names
    workspace: Any = None  # the scene's workspace box, resolved on the driver (a worker has no spec)
    plugins: Any = None  # the run's RegistryRecipe: the worker builds the policy with the same plugins
    run: Any = None  # the run's RunInfo: a worker fires pxp_training_step to the same observers


def time_limit(train_cfg) -> float:
    """Seconds a training task may run on a cluster before it is stopped."""
    minutes = getattr(train_cfg, "minutes", None)
    return 2 * 60 * float(minutes) + SETUP_S if minutes else float(STEPS_ONLY_LIMIT_S)


def train_through(executor, name: str, policy_cfg, ctx) -> dict:
    """Train ``name`` as one task on ``executor``; returns its summary (raises what training raised)."""
    cuda = str(ctx.device).startswith("cuda")
    init = str(ctx.checkpoint_dir(policy_cfg.init_from)) if policy_cfg.init_from else None
    unit = TrainingUnit(name, policy_cfg, str(ctx.device), dataset=str(ctx.dataset_path(policy_cfg.dataset)),
                        checkpoint=str(ctx.checkpoint_dir(name)), init=init,
                        workspace=end_effector_box(policy_cfg, ctx), plugins=getattr(ctx.registry, "recipe", None),
                        run=getattr(ctx.events, "run", None))
    fn = train_unit if executor.remote else functools.partial(train_unit, context=ctx)
    (r,) = executor.run_tasks(fn, [unit], workers=1, timeout=time_limit(policy_cfg.train) if executor.remote else None,
                              resources={"cpus": 1, "gpus": 1} if cuda else {"cpus": "node"})
    if r.exception is not None:
        raise r.exception
    if r.error:
        raise PxpError(f"training {name} failed on the {executor.name} executor: {r.error}")
    return {**r.value, "checkpoint": str(ctx.checkpoint_dir(name))}


def train_unit(unit: TrainingUnit, context=None) -> dict:
    """The task: train with the run's context when in the driver's process, else with one built from the unit."""
    if context is not None:
        return train_policy(unit.name, unit.policy, context, workspace=unit.workspace)
    with contextlib.closing(_UnitContext(unit)) as ctx:
        return train_policy(unit.name, unit.policy, ctx, workspace=unit.workspace)


class _UnitContext:
    """What train_policy reads from the runner's StageContext, from the unit's (possibly shipped) paths."""

    def __init__(self, unit: TrainingUnit):
        from pxp.core.events import RunEvents, RunInfo
        from pxp.core.plugins import registry_from_recipe

        self.unit, self.device = unit, unit.device
        self.registry = registry_from_recipe(unit.plugins)
        self.create = self.registry.create
        run = unit.run or RunInfo(Path(unit.checkpoint).parent.parent)
        # run.dir as this node sees it: where the checkpoint it writes lives
        self.events = RunEvents(self.registry, RunInfo(Path(unit.checkpoint).parent.parent, run.spec), log=self.log)

    def close(self) -> None:
        self.events.close()

    def dataset_path(self, name: str) -> Path:
        return Path(self.unit.dataset)

    def checkpoint_dir(self, name: str) -> Path:
        if name == self.unit.name:
            return Path(self.unit.checkpoint)
        if name == self.unit.policy.init_from and self.unit.init is not None:
            return Path(self.unit.init)
        raise PxpError(f"training {self.unit.name} asked for checkpoint {name}, which the task does not declare")

    def log(self, msg: str) -> None:
        print(f"[{self.unit.name}] {msg}", flush=True)  # Ray forwards worker output to the driver

    @staticmethod
    def progress(description, total=None):
        class _Quiet:
            def advance(self, n=1):
                pass

        return contextlib.nullcontext(_Quiet())
