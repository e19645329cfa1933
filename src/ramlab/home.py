"""Where ramlab keeps downloaded and generated data: $RAMLAB_HOME, else the user's cache dir."""

import os
from pathlib import Path


def ramlab_home() -> Path:
    """The root of ramlab's cache (created on demand by the code that writes into it)."""
    env = os.environ.get("RAMLAB_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ramlab"
