"""Where ramlab keeps downloaded and generated data: $RAMLAB_HOME, else the user's cache dir."""

import os
from pathlib import Path


def ramlab_home() -> Path:
    """The root of ramlab's cache (created on demand by the code that writes into it)."""
    env = os.environ.get("RAMLAB_HOME")
    if env:
        return Path(env).expanduser()
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or "").expanduser()
    base = xdg if xdg.is_absolute() else Path.home() / ".cache"  # the XDG spec: a relative one is ignored
    return base / "ramlab"
