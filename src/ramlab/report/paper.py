"""The paper's numbers the report sets beside ours: Mnih et al. 2014 (final version), test error %."""

from __future__ import annotations

from ramlab.report.runs import Run

# Keyed by dataset then model row ("ram/<glimpses>" for the RAM, "ram-random/<glimpses>" for
# its glimpses at random places, `policy: random`).
PAPER: dict[str, dict[str, float]] = {
    "mnist": {"fc": 1.69, "convnet": 1.21, "ram/4": 1.54, "ram/6": 1.12, "ram/7": 1.07},
    "translated60": {"fc": 2.63, "convnet": 1.62, "ram/4": 1.54, "ram/6": 1.22, "ram/8": 1.2},
    "cluttered60": {
        "fc": 11.96,
        "convnet": 8.09,
        "ram/4": 4.96,
        "ram/6": 4.08,
        "ram/8": 4.04,
        "ram-random/8": 14.4,
    },
    "cluttered100": {"convnet": 14.35, "ram/4": 9.41, "ram/6": 8.31, "ram/8": 8.11, "ram-random/8": 28.4},
}
# The shape the paper's baselines had: a run of another shape is not the paper's model.
PAPER_SHAPES: dict[str, dict[str, int]] = {
    "fc": {"hidden": 256, "layers": 2},
    "convnet": {"filters": 8, "kernel": 10, "stride": 5, "hidden": 256},
}
# The order datasets appear in: the paper's, then ours, then any other by name.
DATA_ORDER = ("mnist", "translated60", "centred60", "cluttered60", "cluttered100")


def data_key(name: str) -> tuple[int, str]:
    """Sort key of a dataset name in DATA_ORDER."""
    return (DATA_ORDER.index(name) if name in DATA_ORDER else len(DATA_ORDER), name)


def paper_error(run: Run) -> float | None:
    """The paper's test error for this model (and number of glimpses) on this dataset; None
    for a baseline of another shape than the paper's (an FC net of 64 units is not its 256)."""
    table = PAPER.get(run.data, {})
    config = run.config.get("model_config") or {}
    if any(config.get(key, value) != value for key, value in PAPER_SHAPES.get(run.model, {}).items()):
        return None
    glimpses = config.get("glimpses")
    model = f"{run.model}-random" if config.get("policy") == "random" else run.model
    key = f"{model}/{glimpses}" if glimpses is not None else model
    return table.get(key)
