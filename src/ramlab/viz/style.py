"""Shared figure style: Agg backend, a colour-blind-safe palette (Okabe–Ito), print-size fonts."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

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

__all__ = ["PALETTE", "plt"]
