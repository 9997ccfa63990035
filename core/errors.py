"""Errors pxp reports to users as a message, not a traceback."""


class PxpError(Exception):
    """An error whose message is meant for the user; the CLI prints it without a traceback."""


class PluginError(PxpError):
    """A plugin could not be loaded or registered."""


class SpecError(PxpError):
    """A spec has problems; ``problems`` is a list of (field path, message)."""

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{path or '<spec>'}: {msg}" for path, msg in self.problems]
        super().__init__(where + f"{len(self.problems)} problem(s)\n  " + "\n  ".join(lines))
