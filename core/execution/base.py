"""What every executor takes and gives back: tasks with declared files, one :class:`TaskResult` per task."""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

# The files a task reads and writes, declared on its dataclass fields so that an executor whose workers do not
# see the driver's disk (a Ray node) can ship them: ``checkpoint: str = input_dir()``.
INPUT_DIR, INPUT_FILE, OUTPUT_DIR, OUTPUT_FILE = "input_dir", "input_file", "output_dir", "output_file"
_ROLE = "pxp_execution_role"


def _field(role: str, default, commit: str | None = None) -> Any:
    return dataclasses.field(default=default, metadata={_ROLE: role, "commit": commit})


def input_dir(default=dataclasses.MISSING) -> Any:
    """A field naming a directory the task reads (a checkpoint)."""
    return _field(INPUT_DIR, default)


def input_file(default=dataclasses.MISSING) -> Any:
    """A field naming a file the task reads (a dataset)."""
    return _field(INPUT_FILE, default)


def output_dir(default=dataclasses.MISSING, commit: str | None = None) -> Any:
    """A field naming a directory the task writes, and reads again when it resumes; ``commit``: the file that
    makes the others valid, written last when the directory is copied back."""
    return _field(OUTPUT_DIR, default, commit)


def output_file(default=dataclasses.MISSING) -> Any:
    """A field naming a file the task writes (a video)."""
    return _field(OUTPUT_FILE, default)


def declared_files(task) -> list[tuple[str, str, str | None]]:
    """[(field name, role, commit)] for the task's declared, set (not None) file fields."""
    if not dataclasses.is_dataclass(task):
        return []
    return [(f.name, f.metadata[_ROLE], f.metadata.get("commit")) for f in dataclasses.fields(task)
            if _ROLE in f.metadata and getattr(task, f.name) is not None]


@dataclass
class TaskResult:
    index: int  # position of the task in the input sequence
    task: Any
    value: Any = None
    error: str | None = None  # "ExcType: message (file:line in func)"; None on success
    traceback: str | None = None  # the full formatted traceback, for logs
    skipped: bool = False  # never run: ``skip(task)`` gave ``error`` as the reason
    exception: BaseException | None = None  # in-process runs only: the exception itself, for a caller to re-raise

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor(abc.ABC):
    """Where tasks run. Every kind of unit (dataset episodes, trainings, evaluation episodes) goes through
    :meth:`run_tasks`, on every executor; the failure semantics are the local pool's (``local.py``)."""

    name: str
    remote = False  # True: tasks run in other processes that may not see this machine's files

    @abc.abstractmethod
    def run_tasks(self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, workers: int | None = None,
                  progress: Any = None, initializer: Callable | None = None, initargs: tuple = (),
                  timeout: float | None = None, retries: int | None = None, setup_timeout: float | None = None,
                  skip: Callable[[Any], str | None] | None = None, resources: dict | None = None
                  ) -> Iterator[TaskResult]:
        """``fn(task)`` for every task (``fn`` importable, tasks picklable); a :class:`TaskResult` per task as
        each completes. ``workers``: parallel tasks at most (1: in this process, where the executor allows);
        ``retries``: runs again of a task whose worker died (None: the executor's default);
        ``resources``: what one task needs ({"cpus": n or "node", "gpus": n}), for executors that schedule by it."""

    def close(self) -> None:
        """Release what the executor holds (a cluster connection)."""
