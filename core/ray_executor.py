"""The Ray backend of :func:`pxp.core.pool.run_tasks`: the same study on a cluster.

Selected with ``pxp run --executor ray [--address ADDR]``, ``PXP_EXECUTOR=ray`` or ``executor: ray`` in the
spec; imported only then (``pip install "pxp[ray]"``). What it keeps from the local pool:

- One :class:`~pxp.core.pool.TaskResult` per task, streamed back as tasks finish, so the driver stays the
  only writer of the run directory and writes incrementally (journal, HDF5). A task's result is yielded
  once even if Ray ran it twice.
- Python exceptions in ``fn`` come back as ``TaskResult.error`` and are not retried; a dead worker (kill,
  segfault, OOM, a lost node) is an infrastructure failure that Ray retries (``retries`` = max_retries).
- ``timeout``: a task running longer is cancelled (``ray.cancel(force=True)`` kills its worker) and
  reported as "TimeoutError: timed out after N s".
- Ray worker processes are reused between tasks: ``initializer`` runs once per process and
  :func:`~pxp.core.pool.worker_cache` keeps a scene / a policy per process, as in the pool's workers.

Files cross the network as bytes, never as paths a worker may not see: evaluation checkpoints are shipped to
each node once (a node-local cache keyed by content), videos written by episodes come back as bytes and are
written by the driver. Training (:func:`train_remotely`) runs where it is when the worker sees the run directory
(a shared file system: the driver's token file is readable there), and otherwise ships the dataset and any
checkpoint to resume from, and ships the checkpoint back. See docs/scaling.md.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from . import io, pool
from .errors import PxpError

INSTALL_HINT = 'the ray executor needs Ray, which is not installed: pip install "pxp[ray]"'
FORWARDED_ENV = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "HF_HUB_OFFLINE", "PXP_STRICT_PLUGINS", "PXP_DISABLE_PLUGINS")
DEFAULT_RETRIES = 3  # Ray's own default max_retries for system failures
TOKEN_FILE = ".stages/cluster-token"  # a worker that can read the driver's token shares the run directory
SHIP_ENV = "PXP_RAY_SHIP"  # "1": ship training data and checkpoints even over a shared file system


class RayMissing(PxpError):
    """``--executor ray`` without ray installed."""


def require_ray():
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


# ---------------------------------------------------------------------------------------------
# The driver side
# ---------------------------------------------------------------------------------------------
class RayExecutor:
    """Runs tasks as Ray tasks declaring ``num_cpus`` (and ``num_gpus``) each.

    ``address``: a running cluster (``ray start --head`` prints it; ``auto`` finds the local one); None
    starts a single-node Ray on this machine, unless this process is already connected or RAY_ADDRESS is set.
    """

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 retries: int = DEFAULT_RETRIES, timeout: float | None = None, window: int = 2, _shared=None):
        self.ray = require_ray()
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.retries, self.timeout, self.window = retries, timeout, window
        self._shared = _shared if _shared is not None else {"started": False}

    def with_options(self, **kw) -> "RayExecutor":
        """The same connection, other resources or limits (e.g. ``num_gpus=1`` for training)."""
        opts = dict(address=self.address, num_cpus=self.num_cpus, num_gpus=self.num_gpus, retries=self.retries,
                    timeout=self.timeout, window=self.window)
        return RayExecutor(**{**opts, **kw}, _shared=self._shared)

    # -- connection
    def connect(self):
        ray = self.ray
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            ray.init(address=self.address, include_dashboard=False, configure_logging=False,
                     runtime_env={"env_vars": env} if env else None, log_to_driver=True)
            self._shared["started"] = True
        return ray

    def close(self) -> None:
        """Disconnect, if this executor connected (a caller's own connection is left alone)."""
        if self._shared.get("started") and self.ray.is_initialized():
            self.ray.shutdown()
        self._shared["started"] = False

    def slots(self) -> int:
        """Tasks the cluster can run at once with this executor's resources."""
        res = self.connect().cluster_resources()
        n = res.get("CPU", 1) // self.num_cpus if self.num_cpus else float("inf")
        if self.num_gpus:
            n = min(n, res.get("GPU", 0) // self.num_gpus)
        if n < 1:
            raise PxpError(f"the Ray cluster has {res.get('CPU', 0):g} CPU(s) and {res.get('GPU', 0):g} GPU(s): "
                           f"not enough for one task of {self.num_cpus:g} CPU(s), {self.num_gpus:g} GPU(s)")
        return int(min(n, 1 << 16))

    # -- running
    def run_tasks(self, fn: Callable, tasks, progress=None, initializer: Callable | None = None, initargs: tuple = (),
                  timeout: float | None = None, retries: int | None = None) -> Iterator[pool.TaskResult]:
        ray = self.connect()
        tasks = list(tasks)
        timeout = self.timeout if timeout is None else timeout
        remote = ray.remote(_run_in_worker).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.retries if retries is None else retries,
            retry_exceptions=False)
        slots = self.slots()
        clock = _StartClock(ray) if timeout else None  # when each task really began (after worker start-up)
        shipped: dict[str, Any] = {}  # checkpoint directory → its files in the object store (once per call)
        todo = iter(enumerate(tasks))
        pending: dict = {}  # ref → (index, task), in submission order
        seen: set[int] = set()
        submit = lambda: self._submit(remote, fn, todo, pending, slots * self.window, shipped, initializer,  # noqa: E731
                                      initargs, clock)
        try:
            submit()
            while pending:
                wait_s = None if clock is None else clock.wait_s(timeout)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
                for ref in ready:
                    i, task = pending.pop(ref)
                    if clock is not None:
                        clock.forget(i)
                    result = self._result(ref, i, task)
                    if i not in seen:
                        seen.add(i)
                        pool._advance(progress)
                        yield result
                for i in clock.expired(timeout) if clock else ():
                    ref = next((r for r, (j, _) in pending.items() if j == i), None)
                    if ref is None:  # it finished while the clock looked: its result was (or will be) yielded
                        continue
                    ray.cancel(ref, force=True)  # kills the worker: a hung simulator or policy does not come back
                    _, task = pending.pop(ref)
                    seen.add(i)
                    pool._advance(progress)
                    yield pool.TaskResult(i, task, None, f"TimeoutError: timed out after {timeout:g} s")
                submit()
        finally:
            for ref in pending:  # stopped early (break, error, Ctrl-C): nothing keeps running for us
                ray.cancel(ref, force=False)

    def _submit(self, remote, fn, todo, pending, limit, shipped, initializer, initargs, clock) -> None:
        while len(pending) < limit:
            nxt = next(todo, None)
            if nxt is None:
                return
            i, task = nxt
            inputs = self._inputs(task, shipped)
            pending[remote.remote(fn, task, initializer, initargs, inputs, clock and (clock.actor, i))] = (i, task)

    def _inputs(self, task, shipped: dict) -> list:
        """[(field, driver path, digest, [ref])] for the directories the task reads (a policy checkpoint)."""
        ckpt = getattr(task, "checkpoint", None)
        if not isinstance(ckpt, str) or not Path(ckpt).is_dir():
            return []
        if ckpt not in shipped:
            files = read_dir(ckpt)
            digest = hashlib.sha256(b"".join(k.encode() + hashlib.sha256(v).digest() for k, v in sorted(files.items())))
            shipped[ckpt] = (digest.hexdigest()[:16], [self.ray.put(files)])  # in a list: resolved by the worker
        digest, ref = shipped[ckpt]
        return [("checkpoint", digest, ref)]

    def _result(self, ref, i, task) -> pool.TaskResult:
        try:
            value, err, tb, files = self.ray.get(ref)
        except Exception as exc:  # retries exhausted on dead workers, a lost node, an object that did not pickle
            err, tb = pool._describe(exc)
            return pool.TaskResult(i, task, None, err.splitlines()[0], tb)
        for path, data in (files or {}).items():
            io.write_bytes(path, data)  # the driver writes the run directory, whichever node ran the task
        return pool.TaskResult(i, task, value, err, tb)


class _StartClock:
    """Times tasks from when they start running, not from submission: a worker's start-up (imports, a
    scene) does not count against ``timeout``. Workers report their start to a small actor; the driver
    times from when it first sees the report (its own clock: nodes' clocks may disagree)."""

    POLL_S = 0.5

    def __init__(self, ray):
        self.ray = ray
        self.actor = ray.remote(num_cpus=0)(_Starts).remote()
        self.seen: dict[int, tuple[int, float]] = {}  # task index → (start count, first seen)
        self.done: set[int] = set()  # finished: a late start report must not bring them back

    def _poll(self) -> None:
        now = time.monotonic()
        for i, count in self.ray.get(self.actor.counts.remote()).items():
            # a retry after a dead worker restarts the clock; a finished task stays finished
            if i not in self.done and self.seen.get(i, (None,))[0] != count:
                self.seen[i] = (count, now)

    def wait_s(self, timeout: float) -> float:
        self._poll()
        left = [t + timeout - time.monotonic() for _, t in self.seen.values()]
        return max(0.0, min([self.POLL_S, *left]))

    def expired(self, timeout: float) -> list[int]:
        self._poll()
        now = time.monotonic()
        gone = [i for i, (_, t) in self.seen.items() if now - t >= timeout]
        for i in gone:
            self.forget(i)
        return gone

    def forget(self, i: int) -> None:
        self.seen.pop(i, None)
        self.done.add(i)
        self.actor.forget.remote(i)


class _Starts:
    def __init__(self):
        self.n: dict[int, int] = {}

    def start(self, i: int) -> None:
        self.n[i] = self.n.get(i, 0) + 1

    def counts(self) -> dict[int, int]:
        return dict(self.n)

    def forget(self, i: int) -> None:
        self.n.pop(i, None)


# ---------------------------------------------------------------------------------------------
# The worker side (module-level functions: Ray pickles them by reference)
# ---------------------------------------------------------------------------------------------
_INITIALIZED: set = set()
INPUT_CACHE = Path(tempfile.gettempdir()) / "pxp-ray-inputs"


def _run_in_worker(fn, task, initializer, initargs, inputs, clock=None):
    """One task in a (reused) Ray worker: initializer once per process, inputs materialised on this node,
    outputs (a video) returned as bytes for the driver to write."""
    if clock is not None:
        import ray

        actor, i = clock
        ray.get(actor.start.remote(i))  # recorded before the task runs, so never after the driver saw it end
    _init_once(initializer, initargs)
    task = _localize_inputs(task, inputs)
    task, outputs = _redirect_outputs(task)
    value, err, tb = pool._call(fn, task)
    files = {}
    for real, local in outputs.items():
        if os.path.exists(local):
            files[real] = Path(local).read_bytes()
            os.unlink(local)
        if isinstance(value, dict):
            value = {k: real if v == local else v for k, v in value.items()}
    return value, err, tb, files


def _init_once(initializer, initargs) -> None:
    if not _INITIALIZED:
        atexit.register(pool.close_worker_cache)  # renderers closed when Ray stops the worker
        _INITIALIZED.add(None)
    key = (getattr(initializer, "__module__", None), getattr(initializer, "__qualname__", None), repr(initargs))
    if initializer is not None and key not in _INITIALIZED:
        initializer(*initargs)
        _INITIALIZED.add(key)


def _localize_inputs(task, inputs):
    """Point the task at this node's copy of each shipped directory (written once per node and content)."""
    for name, digest, (ref,) in inputs:
        local = INPUT_CACHE / digest
        if not (local / ".complete").exists():
            import ray

            tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=_mkdir(INPUT_CACHE)))
            write_dir(tmp, ray.get(ref))
            (tmp / ".complete").touch()
            try:
                os.replace(tmp, local)  # another worker on this node may have won the race: keep its copy
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        task = replace(task, **{name: str(local)})
    return task


def _redirect_outputs(task):
    """A task that records a video writes it to a local temp file; the driver gets the bytes."""
    real = getattr(task, "video_path", None)
    if not real or "video_path" not in {f.name for f in fields(task)}:
        return task, {}
    local = str(_mkdir(Path(tempfile.gettempdir()) / "pxp-ray-outputs") / f"{uuid.uuid4().hex}{Path(real).suffix}")
    return replace(task, video_path=local), {real: local}


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def read_dir(directory) -> dict[str, bytes]:
    """Every file of a directory (not hidden, not in subdirectories) as {name: bytes}."""
    d = Path(directory)
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and not p.name.startswith(".")}


def write_dir(directory, files: dict[str, bytes], commit: str | None = None) -> Path:
    """Write files atomically into ``directory``, ``commit`` (a marker naming the others) last."""
    d = _mkdir(Path(directory))
    for name in sorted(files, key=lambda n: n == commit):
        io.write_bytes(d / name, files[name])
    return d


# ---------------------------------------------------------------------------------------------
# Training units
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingUnit:
    """One policy to train, with what a worker needs to find (or receive) its inputs."""

    name: str
    policy: Any  # the spec's policy entry (a pydantic model: pickles)
    run_dir: str
    device: str
    token: str
    init_dir: str | None = None  # the checkpoint directory init_from names, on the driver
    ship: bool = False  # ship even when the worker sees the run directory (PXP_RAY_SHIP=1; tests)
    payload: Any = None  # shipping: [ref] to {"data": bytes, "init": {..}, "resume": {..}}
    workspace: Any = None  # the scene's workspace box, resolved on the driver (the worker has no spec)
    plugins: Any = None  # the run's RegistryRecipe: the worker builds the policy with the same plugins
    run: Any = None  # the run's RunInfo: the worker fires pxp_training_step to the same observers


def train_remotely(name: str, policy_cfg, ctx, executor: RayExecutor) -> dict:
    """Train one policy as a Ray task (a GPU each when the device is CUDA); returns its summary.

    Where it is when the worker sees the run directory; otherwise the driver ships the dataset and the
    checkpoint to resume from, and writes the checkpoint the worker ships back.
    """
    cuda = str(ctx.device).startswith("cuda")
    ex = executor.with_options(num_gpus=1 if cuda else 0, num_cpus=1 if cuda else _node_cpus(executor))
    init = str(ctx.checkpoint_dir(policy_cfg.init_from)) if policy_cfg.init_from else None
    from pxp.experiment.training import scene_workspace

    unit = TrainingUnit(name, policy_cfg, str(ctx.run_dir), str(ctx.device), run_token(ctx.run_dir), init,
                        ship=os.environ.get(SHIP_ENV) == "1", workspace=scene_workspace(policy_cfg, ctx),
                        plugins=getattr(ctx.registry, "recipe", None), run=getattr(ctx.events, "run", None))
    out = _run_one(ex, unit)
    if out.get("needs_payload"):
        ctx.log(f"training: {name} runs on a node without the run directory: shipping its dataset and checkpoints")
        out = _run_one(ex, replace(unit, payload=[executor.ray.put(_payload(unit, ctx))]))
    if out.get("files") is not None:
        from pxp.experiment.policy import MARKER

        d = write_dir(ctx.checkpoint_dir(name), out["files"], commit=MARKER)
        for stale in set(read_dir(d)) - set(out["files"]):  # an older step's weights
            (d / stale).unlink()
    summary = dict(out["summary"])
    summary["checkpoint"] = str(ctx.checkpoint_dir(name))
    return summary


def run_token(run_dir) -> str:
    """The run directory's token (created once): a worker reading the same token shares the directory."""
    path = Path(run_dir) / TOKEN_FILE
    if not path.exists():
        io.write_text(path, uuid.uuid4().hex)
    return path.read_text().strip()


def _run_one(executor: RayExecutor, unit: TrainingUnit) -> dict:
    (r,) = list(pool.run_tasks(train_unit, [unit], executor=executor))
    if r.error:
        raise PxpError(f"training {unit.name} failed on the Ray cluster: {r.error}")
    return r.value


def _node_cpus(executor: RayExecutor) -> float:
    """CPU training takes a whole node (the smallest), as it takes the whole machine locally."""
    ray = executor.connect()
    cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return max(1.0, min(c for c in cpus if c > 0)) if any(cpus) else 1.0


def _payload(unit: TrainingUnit, ctx) -> dict:
    ckpt = Path(ctx.checkpoint_dir(unit.name))
    return {"data": Path(ctx.dataset_path(unit.policy.dataset)).read_bytes(),
            "init": read_dir(unit.init_dir) if unit.init_dir else None,
            "resume": read_dir(ckpt) if ckpt.is_dir() else None}


def train_unit(unit: TrainingUnit) -> dict:
    """Worker side: train in the shared run directory, or in a temp copy of what was shipped."""
    from pxp.experiment.training import train_policy

    shared = _reads_token(unit) and not unit.ship
    if shared:
        with contextlib.closing(_WorkerContext(Path(unit.run_dir), unit)) as ctx:
            return {"summary": train_policy(unit.name, unit.policy, ctx, workspace=unit.workspace), "files": None}
    if unit.payload is None:
        return {"needs_payload": True}
    import ray

    from pxp.experiment.policy import MARKER

    payload = ray.get(unit.payload[0])
    with tempfile.TemporaryDirectory(prefix="pxp-train-") as tmp:
        root = Path(tmp)
        io.write_bytes(root / "data" / f"{unit.policy.dataset}.hdf5", payload["data"])
        init = write_dir(root / "init", payload["init"], commit=MARKER) if payload["init"] is not None else None
        if payload["resume"] is not None:
            write_dir(root / "checkpoints" / unit.name, payload["resume"], commit=MARKER)
        with contextlib.closing(_WorkerContext(root, unit, init)) as ctx:
            summary = train_policy(unit.name, unit.policy, ctx, workspace=unit.workspace)
        return {"summary": summary, "files": read_dir(root / "checkpoints" / unit.name)}


def _reads_token(unit: TrainingUnit) -> bool:
    try:
        return (Path(unit.run_dir) / TOKEN_FILE).read_text().strip() == unit.token
    except OSError:
        return False


class _WorkerContext:
    """What train_policy reads from the runner's StageContext, rebuilt in the worker."""

    def __init__(self, root: Path, unit: TrainingUnit, init: Path | None = None):
        from .events import RunEvents, RunInfo
        from .plugins import registry_from_recipe

        self.root, self.unit, self.device = root, unit, unit.device
        self.init = init if init is not None else (Path(unit.init_dir) if unit.init_dir else None)
        self.registry = registry_from_recipe(unit.plugins)
        self.create = self.registry.create
        spec = unit.run.spec if unit.run is not None else {}
        self.events = RunEvents(self.registry, RunInfo(root, spec), log=self.log)  # run.dir: where this node sees the run

    def close(self) -> None:
        self.events.close()

    def dataset_path(self, name: str) -> Path:
        return self.root / "data" / f"{name}.hdf5"

    def checkpoint_dir(self, name: str) -> Path:
        if name == self.unit.name:
            return self.root / "checkpoints" / name
        if name == self.unit.policy.init_from and self.init is not None:
            return self.init
        raise PxpError(f"training {self.unit.name} asked for checkpoint {name}, which was not shipped")

    def log(self, msg: str) -> None:
        print(f"[{self.unit.name}] {msg}", flush=True)  # Ray forwards worker output to the driver

    @staticmethod
    def progress(description, total=None):
        class _Quiet:
            def advance(self, n=1):
                pass

        return contextlib.nullcontext(_Quiet())
