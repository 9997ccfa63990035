"""Atomic file writes and stable config hashes: a kill never leaves a half file that looks whole."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str | None = None):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``.

    The temporary name keeps the extension, so libraries that pick a format by it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + (suffix or path.suffix), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_json(path: Path | str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: Path | str, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def append_jsonl(path: Path | str, obj: Any) -> None:
    """Append one JSON line and flush it; readers skip a torn last line."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_jsonable) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path | str) -> list:
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a kill
    return out


def keep_jsonl(path: Path | str, keep) -> int:
    """Rewrite a JSONL file with only the rows for which ``keep(row)`` is true (and no torn last line);
    returns how many rows were dropped. Used on resume: rows written after the state resumed from
    would otherwise appear twice."""
    rows = read_jsonl(path)
    kept = [r for r in rows if keep(r)]
    if Path(path).exists() and (len(kept) != len(rows) or Path(path).read_text().count("\n") != len(rows)):
        write_text(path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in kept))
    return len(rows) - len(kept)


def remove_torn(directory: Path | str) -> int:
    """Delete the temporary files :func:`atomic_path` leaves behind when a writer is killed."""
    n = 0
    for p in Path(directory).glob(".*.tmp*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def config_hash(*parts: Any) -> str:
    """A stable short hash of JSON-able parts (pydantic models are dumped first)."""
    blob = json.dumps([_jsonable(p) if hasattr(p, "model_dump") else p for p in parts], sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
