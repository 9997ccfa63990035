"""Errors pxp reports to users as a message, not a traceback."""


class PxpError(Exception):
    """An error whose message is meant for the user; the CLI prints it without a traceback."""

    exit_code = 1  # 2 for input errors (specs, a locked run directory)


class PluginError(PxpError):
    """A plugin could not be loaded or registered."""


class FieldError(ValueError):
    """Raised by a config model's validator about one of its fields: the spec error then names
    ``<section path>.<field>`` instead of the whole section (see spec._format_loc)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class SpecError(PxpError):
    """A spec has problems; ``problems`` is a list of (field path, message)."""

    exit_code = 2

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{path or '<spec>'}: {msg}" for path, msg in self.problems]
        super().__init__(where + f"{len(self.problems)} problem(s)\n  " + "\n  ".join(lines))


def environment_message(exc: OSError) -> str | None:
    """One line for an OSError the environment caused (read-only or full disk, no permission), else None.

    h5py raises OSError without an errno and puts the C library's text in the message, hence both checks.
    """
    import errno

    kinds = {errno.ENOSPC: "the disk is full (free some space and rerun: finished work is kept)", errno.EDQUOT: "the disk quota is exceeded",
             errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
             errno.EPERM: "operation not permitted"}
    text = str(exc)
    why = kinds.get(exc.errno) or next((w for k, w in (("No space left", kinds[errno.ENOSPC]),
                                                        ("errno = 28", kinds[errno.ENOSPC]),
                                                        ("Read-only file system", kinds[errno.EROFS]),
                                                        ("Permission denied", kinds[errno.EACCES])) if k in text), None)
    if why is None:
        return None
    where = exc.filename or _path_in(text) or "a file"
    return f"cannot write {where}: {why}"


def _path_in(text: str) -> str | None:
    import re

    m = re.search(r"name = '([^']+)'", text)  # h5py: "Unable to create file (..., name = '/x.hdf5', ...)"
    return m.group(1) if m else None
