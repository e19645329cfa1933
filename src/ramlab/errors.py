"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class RamlabError(Exception):
    """An error caused by the user's input or environment, with a message that says the fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run or study: the message says what was kept and the exact
    command that resumes; the CLI prints it and exits with `exit_code` (128 + the signal's
    number: 130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, *, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def unknown_name(kind: str, name: str, valid) -> RamlabError:
    """The error for a name that is not one of `valid`, listing the valid ones."""
    return RamlabError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")
