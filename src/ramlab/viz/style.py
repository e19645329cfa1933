"""Shared figure style: Agg backend, a colour-blind-safe palette (Okabe–Ito), print-size fonts."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.backend_bases import FigureCanvasBase

#: Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

plt.rcParams.update(
    {
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
        "font.size": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
    }
)


def check_figure_path(out, flag: str = "--out") -> Path:
    """`out` if matplotlib can write its format; else a clear error listing the ones it can."""
    out = Path(out)
    # pgf needs a TeX installation (xelatex), so it would fail after the work is done
    formats = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"})
    if out.suffix.lstrip(".").lower() not in formats:
        from ramlab.errors import RamlabError

        raise RamlabError(f"{flag} {out}: give a file name ending in one of .{', .'.join(formats)}")
    return out


def save_figure(fig, out) -> Path:
    """Save `fig` to `out` (folders created, written atomically: a killed process leaves no
    truncated image for a report to show) and close it."""
    from ramlab.files import atomic_write

    out = Path(out)
    try:
        atomic_write(out, lambda f: fig.savefig(f, format=out.suffix.lstrip(".").lower()))
    finally:
        plt.close(fig)
    return out


__all__ = ["PALETTE", "check_figure_path", "plt", "save_figure"]
