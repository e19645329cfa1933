"""Evaluation: error of the final prediction and of every step's (anytime) prediction.

Deterministic by default: the RAM looks where its policy's mean says (its first location,
when random, comes from a fixed-seed generator so two evaluations agree); `sample=True`
draws locations as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ramlab.data.loader import SceneLoader
from ramlab.models.base import Model

EVAL_SEED = 1234


@dataclass
class Evaluation:
    error: float  # % of wrong final predictions
    per_step_error: list[float]  # % wrong after each glimpse (one entry for a CNN)
    loss: float  # mean cross-entropy of the final prediction
    count: int

    def to_dict(self) -> dict:
        return {
            "error": self.error,
            "per_step_error": self.per_step_error,
            "loss": self.loss,
            "count": self.count,
        }


@torch.inference_mode()
def evaluate(model: Model, loader: SceneLoader, *, sample: bool = False, seed: int = EVAL_SEED) -> Evaluation:
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=loader.device).manual_seed(seed)
    wrong_steps = None
    loss_sum, count = 0.0, 0
    for batch in loader:
        out = model(batch.images, sample=sample, generator=generator)
        wrong = (out.step_logits.argmax(dim=2) != batch.labels[:, None]).sum(dim=0)  # (T,)
        wrong_steps = wrong if wrong_steps is None else wrong_steps + wrong
        loss_sum += F.cross_entropy(out.logits, batch.labels, reduction="sum").item()
        count += len(batch)
    model.train(was_training)
    per_step = (wrong_steps.double() * 100.0 / count).tolist()
    return Evaluation(error=per_step[-1], per_step_error=per_step, loss=loss_sum / count, count=count)
