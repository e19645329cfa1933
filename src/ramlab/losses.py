"""The RAM's hybrid loss (a pure function of a rollout, the labels and the boxes).

    L = CE(logits_T, y)                          [or the mean CE over every step]
      + w_b * mean_t (b_t - G_t)^2                 baseline regression (reaches only b)
      - w_r * mean_B sum_t (G_t - b_t) log pi(l_t) REINFORCE, baseline detached
      - w_e * mean_B sum_t H(pi_t)                 optional entropy bonus (learned std)
over the steps t where the policy chose l_t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ramlab.models.base import Objective
from ramlab.rewards import combined_reward, discounted_returns


def hybrid_loss(rollout, labels: torch.Tensor, bboxes: torch.Tensor, *, config, reward_weights) -> Objective:
    logits = rollout.step_logits  # (B, T, C)
    if config.ce_all_steps:
        classification = F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]))
    else:
        classification = F.cross_entropy(logits[:, -1], labels)

    rewards = combined_reward(reward_weights, rollout, labels, bboxes)  # (B, T)
    returns = discounted_returns(rewards, config.gamma)  # (B, T)
    acted = rollout.acted.float()  # (T,)
    n_acted = acted.sum().clamp(min=1.0)
    baseline = ((rollout.baselines - returns).square() * acted).sum(1).mean() / n_acted
    advantage = (returns - rollout.baselines.detach()) * acted
    reinforce = -(advantage * rollout.log_probs).sum(1).mean()
    entropy = (rollout.entropy * acted).sum(1).mean()

    loss = classification + config.baseline_weight * baseline + config.reinforce_weight * reinforce
    if config.entropy_weight:
        loss = loss - config.entropy_weight * entropy
    metrics = {
        "loss/classification": classification.detach(),
        "loss/baseline": baseline.detach(),
        "loss/reinforce": reinforce.detach(),
        "policy/reward": rewards.sum(1).mean(),
        "policy/entropy": entropy.detach() / n_acted,
        "policy/location_spread": rollout.locations.std(dim=0).mean(),
    }
    return Objective(loss=loss, metrics=metrics)
