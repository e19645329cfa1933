"""How a number was measured, in words: the `protocol` every result file carries and the
report quotes. Pure, with no torch (`ramlab.sweeps` reads it back from the files)."""

from __future__ import annotations

ONE_PASS = "one forward pass"
"""The protocol of a model without a location policy (fc, convnet, resnet)."""


def protocol(*, sample: bool, rollouts: int, random_places: bool = False) -> str:
    """How a number was measured, in words (result files and the report quote it).
    `random_places`: a RAM whose glimpses go to random places (`policy: random`), sampled or
    not."""
    if random_places:
        if rollouts > 1:
            return f"random glimpse locations, class probabilities averaged over {rollouts} rollouts (Monte Carlo)"
        return "random glimpse locations, one rollout"
    if rollouts > 1:
        return f"sampled policy, class probabilities averaged over {rollouts} rollouts (Monte Carlo)"
    return "sampled policy, one rollout" if sample else "policy mean, one rollout"
