"""Training diagnostics: the gradient norm reaching each part of a model.

Parts are the model's top-level modules (for the RAM: glimpse, core, policy, classifier,
baseline), so a part that receives no gradient shows as `grad/<part> = 0` in metrics.jsonl;
several public RAM re-implementations silently trained no location policy at all.
"""

from __future__ import annotations

import torch
from torch import nn


def grad_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """{"grad/<part>": L2 norm of the part's gradients} for every top-level module with
    parameters; a parameter without a gradient counts as zero."""
    norms = {}
    for name, part in model.named_children():
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        if not any(True for _ in part.parameters()):
            continue
        if grads:
            norms[f"grad/{name}"] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        else:
            norms[f"grad/{name}"] = torch.zeros(())
    return norms


def starved_parts(norm_sums: dict[str, float]) -> list[str]:
    """The parts whose gradient norm summed over an epoch's logged steps is zero."""
    return sorted(key.removeprefix("grad/") for key, total in norm_sums.items() if total == 0.0)
