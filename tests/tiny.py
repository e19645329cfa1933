"""The tiny RAM the trainer, study, robustness, viz and CLI tests share: a 60×60 canvas,
8×8 glimpses at 2 scales, and layers small enough to train in milliseconds. Tests add the
glimpse count, core and reward they need."""

TINY_RAM = {"glimpse_size": 8, "scales": 2, "glimpse_hidden": 8, "location_hidden": 4, "hidden": 12}
TINY_RAM_COST = {key: value for key, value in TINY_RAM.items() if key != "scales"}
"""TINY_RAM as a study's `cost.configs` takes it: the cost job sets the scales at each side."""
