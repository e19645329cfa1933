"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class RamlabError(Exception):
    """An error caused by the user's input or environment, with a message that says the fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run or study: the message says what was kept and the exact command that
    resumes (the CLI prints it and exits 130)."""


def unknown_name(kind: str, name: str, valid) -> RamlabError:
    """The error for a name that is not one of `valid`, listing the valid ones."""
    return RamlabError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")
