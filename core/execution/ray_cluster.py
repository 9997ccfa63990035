"""The Ray executor: the same study on a cluster.

Selected with ``pxp run --executor ray [--address ADDR]``, ``PXP_EXECUTOR=ray`` or ``executor: ray`` in the
spec; imported only then (``pip install "pxp[ray]"``). What it keeps from the local pool:

- One :class:`~pxp.core.execution.TaskResult` per task, streamed back as tasks finish, so the driver stays the
  only writer of the run directory and writes incrementally (journal, HDF5). A task's result is yielded
  once even if Ray ran it twice.
- Python exceptions in ``fn`` come back as ``TaskResult.error`` and are not retried; a dead worker (kill,
  segfault, OOM, a lost node) is an infrastructure failure that Ray retries (``retries`` = max_retries).
- ``timeout``: a task running longer is cancelled (``ray.cancel(force=True)`` kills its worker) and
  reported as "TimeoutError: timed out after N s"; it is not run again.
- Ray worker processes are reused between tasks: ``initializer`` runs once per process and
  :func:`~pxp.core.execution.worker_cache` keeps a scene / a policy per process, as in the pool's workers.

Files cross the network as bytes, never as paths a worker may not see, and only the files a task declares
(``input_dir``, ``input_file``, ``output_dir``, ``output_file`` fields, ``base.py``). A worker that reads the
driver's token in ``shared_root`` (the run directory on a shared file system) uses the paths as they are; any
other worker answers that it needs them, and from then on the driver ships the declared inputs (directories
once per node, cached by content) and writes the declared outputs the worker sends back, a directory's
``commit`` file last. See docs/scaling.md.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import io
from ..errors import PxpError
from . import local
from .base import INPUT_DIR, INPUT_FILE, OUTPUT_DIR, OUTPUT_FILE, Executor, TaskResult, declared_files

INSTALL_HINT = 'the ray executor needs Ray, which is not installed: pip install "pxp[ray]"'
FORWARDED_ENV = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "HF_HUB_OFFLINE", "PXP_STRICT_PLUGINS", "PXP_DISABLE_PLUGINS")
DEFAULT_RETRIES = 3  # Ray's own default max_retries for system failures
TOKEN_FILE = ".stages/cluster-token"  # under shared_root: a worker that can read the driver's token shares it
SHIP_ENV = "PXP_RAY_SHIP"  # "1": ship declared files even over a shared file system
NO_AUTH_WARNING = ("warning: connecting to a Ray cluster without token authentication (RAY_AUTH_MODE=token): "
                   "anyone who can reach its ports can run code on it; see docs/scaling.md")
NEEDS_FILES = "pxp: this worker does not see the driver's files"  # a worker's answer: ship them


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
class RayExecutor(Executor):
    """Runs tasks as Ray tasks declaring ``num_cpus`` (and ``num_gpus``) each.

    ``address``: a running cluster (``ray start --head`` prints it; ``auto`` finds the local one); None
    starts a single-node Ray on this machine (token authentication on, no dashboard), unless this process is
    already connected or RAY_ADDRESS is set. Connecting to a cluster without RAY_AUTH_MODE=token prints one
    warning line.
    """

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 retries: int = DEFAULT_RETRIES, timeout: float | None = None, window: int = 2, shared_root=None,
                 _shared=None):
        self.ray = require_ray()
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.retries, self.timeout, self.window = retries, timeout, window
        self.shared_root = None if shared_root is None else Path(shared_root)
        self._shared = _shared if _shared is not None else {"started": False}

    def with_options(self, **kw) -> "RayExecutor":
        """The same connection, other resources or limits (e.g. ``num_gpus=1`` for training)."""
        opts = dict(address=self.address, num_cpus=self.num_cpus, num_gpus=self.num_gpus, retries=self.retries,
                    timeout=self.timeout, window=self.window, shared_root=self.shared_root)
        return RayExecutor(**{**opts, **kw}, _shared=self._shared)

    # -- connection
    def connect(self):
        ray = self.ray
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            starts_local = self.address is None and not os.environ.get("RAY_ADDRESS")
            if not starts_local and os.environ.get("RAY_AUTH_MODE") != "token":
                print(NO_AUTH_WARNING, file=sys.stderr, flush=True)
            # A Ray started here listens on the node's address (Ray maps 127.0.0.1 to it), with token
            # authentication on (Ray's default for a cluster ray.init starts, since 2.59) and no dashboard.
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

    def _with_resources(self, resources: dict | None) -> "RayExecutor":
        if not resources:
            return self
        cpus = resources.get("cpus", self.num_cpus)
        return self.with_options(num_cpus=_node_cpus(self) if cpus == "node" else float(cpus),
                                 num_gpus=float(resources.get("gpus", self.num_gpus)))

    # -- running
    def run_tasks(self, fn: Callable, tasks, *, workers=None, progress=None, initializer: Callable | None = None,
                  initargs: tuple = (), timeout: float | None = None, retries: int | None = None, setup_timeout=None,
                  skip=None, resources=None) -> Iterator[TaskResult]:
        """``workers`` is not used: the cluster schedules by ``resources`` (default 1 CPU per task)."""
        if resources:
            yield from self._with_resources(resources).run_tasks(
                fn, tasks, progress=progress, initializer=initializer, initargs=initargs, timeout=timeout,
                retries=retries, skip=skip)
            return
        ray = self.connect()
        tasks = list(tasks)
        timeout = self.timeout if timeout is None else timeout
        remote = ray.remote(_run_in_worker).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.retries if retries is None else retries,
            retry_exceptions=False)
        slots = self.slots()
        clock = _StartClock(ray) if timeout else None  # when each task really began (after worker start-up)
        files = _Shipper(ray, self.shared_root)
        todo = iter(enumerate(tasks))
        pending: dict = {}  # ref → (index, task), in submission order
        seen: set[int] = set()

        def send(i, task):
            pending[remote.remote(fn, task, initializer, initargs, files.inputs(task), files.share(),
                                  clock and (clock.actor, i))] = (i, task)

        def submit():
            while len(pending) < slots * self.window:
                nxt = next(todo, None)
                if nxt is None:
                    return
                reason = skip(nxt[1]) if skip is not None else None
                if reason is None:
                    send(*nxt)
                    continue
                seen.add(nxt[0])
                local._advance(progress)
                yield TaskResult(nxt[0], nxt[1], None, reason, skipped=True)

        try:
            yield from submit()
            while pending:
                wait_s = None if clock is None else clock.wait_s(timeout)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
                for ref in ready:
                    i, task = pending.pop(ref)
                    result = self._result(ref, i, task, files)
                    if result is None:  # the worker needs the files shipped: from now on every task gets them
                        send(i, task)
                        continue
                    if clock is not None:
                        clock.forget(i)
                    if i not in seen:
                        seen.add(i)
                        local._advance(progress)
                        yield result
                for i in clock.expired(timeout) if clock else ():
                    ref = next((r for r, (j, _) in pending.items() if j == i), None)
                    if ref is None:  # it finished while the clock looked: its result was (or will be) yielded
                        continue
                    ray.cancel(ref, force=True)  # kills the worker: a hung simulator or policy does not come back
                    _, task = pending.pop(ref)
                    seen.add(i)
                    local._advance(progress)
                    yield TaskResult(i, task, None, f"TimeoutError: timed out after {timeout:g} s")
                yield from submit()
        finally:
            for ref in pending:  # stopped early (break, error, Ctrl-C): nothing keeps running for us
                ray.cancel(ref, force=False)

    def _result(self, ref, i, task, files: "_Shipper") -> TaskResult | None:
        try:
            value, err, tb, outputs = self.ray.get(ref)
        except Exception as exc:  # retries exhausted on dead workers, a lost node, an object that did not pickle
            err, tb = local._describe(exc)
            return TaskResult(i, task, None, err.splitlines()[0], tb)
        if err == NEEDS_FILES:
            files.ship_all = True
            return None
        files.write_outputs(outputs)  # the driver writes the run directory, whichever node ran the task
        return TaskResult(i, task, value, err, tb)


class _Shipper:
    """The driver's half of moving declared files: what to send with a task, and writing what comes back."""

    def __init__(self, ray, shared_root: Path | None):
        self.ray, self.shared_root = ray, shared_root
        self.ship_all = shared_root is None or os.environ.get(SHIP_ENV) == "1"
        self.sent: dict[str, tuple[str, list]] = {}  # input path → (digest, [ref]), once per call

    def share(self) -> tuple[str, str] | None:
        """(token path, token) a worker compares to tell whether it sees the driver's files."""
        if self.ship_all:
            return None
        path = self.shared_root / TOKEN_FILE
        if not path.exists():
            io.write_text(path, uuid.uuid4().hex)
        return str(path), path.read_text().strip()

    def inputs(self, task) -> list | None:
        """None: try the paths as they are; else [(field, role, commit, digest, [ref] or None)] for the declared files."""
        if not self.ship_all:
            return None
        out = []
        for name, role, commit in declared_files(task):
            path = getattr(task, name)
            if role in (INPUT_DIR, INPUT_FILE):
                if not Path(path).exists():  # e.g. "builtin:expert": nothing to ship
                    continue
                digest, ref = self._put(path, role)
                out.append((name, role, commit, digest, ref))
            elif role == OUTPUT_DIR:  # shipped in too, to resume from; never cached: it changes
                content = read_dir(path) if Path(path).is_dir() else {}
                out.append((name, role, commit, None, [self.ray.put(content)]))
            elif role == OUTPUT_FILE:  # nothing to send: the worker writes it locally and sends it back
                out.append((name, role, commit, None, None))
        return out

    def _put(self, path: str, role: str):
        if path not in self.sent:
            content = read_dir(path) if role == INPUT_DIR else {Path(path).name: Path(path).read_bytes()}
            digest = hashlib.sha256(b"".join(k.encode() + hashlib.sha256(v).digest() for k, v in sorted(content.items())))
            self.sent[path] = (digest.hexdigest()[:16], [self.ray.put(content)])  # in a list: resolved by the worker
        return self.sent[path]

    @staticmethod
    def write_outputs(outputs: dict | None) -> None:
        for path, (content, commit) in (outputs or {}).items():
            if commit is False:  # a file
                io.write_bytes(path, content)
                continue
            d = write_dir(path, content, commit=commit)
            for stale in set(read_dir(d)) - set(content):  # e.g. an older step's weights
                (d / stale).unlink()


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


def _run_in_worker(fn, task, initializer, initargs, inputs, share, clock=None):
    """One task in a (reused) Ray worker: initializer once per process, declared files used where they are when this
    node sees the driver's, else materialised from what was shipped and sent back as bytes."""
    if clock is not None:
        import ray

        actor, i = clock
        ray.get(actor.start.remote(i))  # recorded before the task runs, so never after the driver saw it end
    if inputs is None and declared_files(task) and not _sees(share):
        return None, NEEDS_FILES, None, None
    _init_once(initializer, initargs)
    with tempfile.TemporaryDirectory(prefix="pxp-ray-task-") as tmp:
        task, outputs = _localize(task, inputs or [], Path(tmp))
        value, err, tb = local._call(fn, task)
        sent = {}
        for real, (here, commit) in outputs.items():
            if commit is False and os.path.exists(here):
                sent[real] = (Path(here).read_bytes(), False)
            elif commit is not False and os.path.isdir(here):
                sent[real] = (read_dir(here), commit)
            if isinstance(value, dict):  # e.g. an episode's "video": the driver's path, not this node's
                value = {k: real if v == here else v for k, v in value.items()}
    return value, err, tb, sent


def _sees(share) -> bool:
    try:
        return share is not None and Path(share[0]).read_text().strip() == share[1]
    except OSError:
        return False


def _init_once(initializer, initargs) -> None:
    if not _INITIALIZED:
        atexit.register(local.close_worker_cache)  # renderers closed when Ray stops the worker
        _INITIALIZED.add(None)
    key = (getattr(initializer, "__module__", None), getattr(initializer, "__qualname__", None), repr(initargs))
    if initializer is not None and key not in _INITIALIZED:
        initializer(*initargs)
        _INITIALIZED.add(key)


def _localize(task, inputs, tmp: Path):
    """Point the task's declared fields at this node's copies; returns (task, {driver path: (local path,
    commit: False for a file)}) for the outputs to send back."""
    import ray

    changes, outputs = {}, {}
    for name, role, commit, digest, ref in inputs:
        real = getattr(task, name)
        if role in (INPUT_DIR, INPUT_FILE):
            here = _cached_input(digest, ref)
            changes[name] = str(here if role == INPUT_DIR else here / Path(real).name)
        elif role == OUTPUT_DIR:
            here = write_dir(tmp / f"{name}-{uuid.uuid4().hex}", ray.get(ref[0]), commit=commit)
            changes[name], outputs[real] = str(here), (str(here), commit)
        else:  # OUTPUT_FILE
            here = str(_mkdir(tmp / "out") / f"{uuid.uuid4().hex}{Path(real).suffix}")
            changes[name], outputs[real] = here, (here, False)
    return (replace(task, **changes) if changes else task), outputs


def _cached_input(digest: str, ref) -> Path:
    """This node's copy of a shipped input (written once per node and content)."""
    local_copy = INPUT_CACHE / digest
    if not (local_copy / ".complete").exists():
        import ray

        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=_mkdir(INPUT_CACHE)))
        write_dir(tmp, ray.get(ref[0]))
        (tmp / ".complete").touch()
        try:
            os.replace(tmp, local_copy)  # another worker on this node may have won the race: keep its copy
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return local_copy


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


def _node_cpus(executor: RayExecutor) -> float:
    """A task asking for a whole node (CPU training, as it takes the whole machine locally): the smallest's CPUs."""
    ray = executor.connect()
    cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return max(1.0, min(c for c in cpus if c > 0)) if any(cpus) else 1.0
