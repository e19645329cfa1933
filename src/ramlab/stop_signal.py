"""A stop asked for by a signal, honoured at a safe point of the training loop.

SIGTERM (what `kill` sends, what Slurm sends before it preempts or times out a job, and what
the study's executors send to stop a command) and SIGINT (Ctrl-C) set a flag instead of
raising wherever the program happens to be. The trainer reads the flag at each step, before
the step's backward pass; once it is up, it finishes that step, writes last.pt there and stops
with the command that resumes it, so no finished step is lost (at an epoch's last step it
stops after the epoch's validation and checkpoint instead). A second signal raises KeyboardInterrupt at once (the run then
resumes from its last checkpoint). A signal that was ignored when the run started stays
ignored: a background job of a non-interactive shell ignores SIGINT, and Ctrl-C typed in
that shell is not meant for it. Python lets only the main thread set handlers; elsewhere
(a run inside a worker thread) the context installs nothing and the flag never rises.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """`with StopSignal() as stop:` ... `if stop.received is not None:` save and stop."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopSignal:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                previous = signal.getsignal(signum)
                if previous is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.received = signal.Signals(signum)

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process stopped by the signal: 128 + its number."""
        return 128 + int(self.received or signal.SIGINT)
