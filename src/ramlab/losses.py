"""The RAM's hybrid loss (a pure function of a rollout, the labels and the boxes).

    L = CE(logits_T, y)                          [or the mean CE over every step; targets
                                                  smoothed with `label_smoothing` e > 0]
      + w_b * mean_t (b_t - G_t)^2                 baseline regression (reaches only b)
      - w_r * mean_B sum_t (G_t - b_t) log pi(l_t) REINFORCE, baseline detached
      - w_e * mean_B sum_t H(pi_t)                 optional entropy bonus (learned std)
      + w_c * mean_B KL(sg(p_bar) || p_T)          optional consistency of an image's rollouts
over the steps t where the policy chose l_t, and every mean over all B rollouts. With M
rollouts per image (rows i*M .. i*M+M-1 see image i) and `baseline: rollouts`, the advantage
uses b_t = the mean of G_t over the image's other M-1 rollouts instead of the learned b_t
(which is still regressed, so it stays comparable). p_bar is the mean of the final class
distributions p_T of the image's M rollouts, its gradient stopped (sg). A RAM with random
glimpse places (`policy: random`) chose none: its loss is the cross-entropy (and consistency)
alone, no reward is read, and only the spread of its places is logged of the policy's
figures (no reward, entropy, REINFORCE or baseline loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ramlab.models.base import Objective
from ramlab.rewards import reward_and_returns


def leave_one_out_mean(values: torch.Tensor, copies: int) -> torch.Tensor:
    """(B*M, T) with M consecutive rows per image -> (B*M, T): each row's mean over the
    other M-1 rows of its image."""
    grouped = values.view(-1, copies, values.shape[1])  # (B, M, T)
    others = grouped.sum(dim=1, keepdim=True) - grouped
    return (others / (copies - 1)).view_as(values)


def rollout_consistency(logits: torch.Tensor, copies: int) -> torch.Tensor:
    """(B*M, C) final logits with M consecutive rows per image -> the mean over all B*M rows
    of KL(p_bar || p), p_bar the mean class distribution of the row's image, held fixed."""
    log_p = torch.log_softmax(logits, dim=1)
    grouped = log_p.view(-1, copies, log_p.shape[1])  # (B, M, C)
    log_mean = grouped.detach().logsumexp(dim=1, keepdim=True) - math.log(copies)  # (B, 1, C)
    return (log_mean.exp() * (log_mean - grouped)).sum(dim=2).mean()


def hybrid_loss(
    rollout, labels: torch.Tensor, bboxes: torch.Tensor, *, config, reward_weights, reward_discounts=None
) -> Objective:
    logits = rollout.step_logits  # (B, T, C)
    smoothing = config.label_smoothing
    if config.ce_all_steps:
        classification = F.cross_entropy(
            logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]), label_smoothing=smoothing
        )
    else:
        classification = F.cross_entropy(logits[:, -1], labels, label_smoothing=smoothing)

    loss, policy = classification, {}
    if config.policy == "learned":  # a random policy chose no place: no reward, nothing to train
        rewards, returns = reward_and_returns(  # (B, T) each
            reward_weights, reward_discounts or {}, config.gamma, rollout, labels, bboxes
        )
        acted = rollout.acted.float()  # (T,)
        n_acted = acted.sum().clamp(min=1.0)
        baseline = ((rollout.baselines - returns).square() * acted).sum(1).mean() / n_acted
        reference = rollout.baselines.detach()
        if config.baseline == "rollouts":
            reference = leave_one_out_mean(returns, config.rollouts)
        advantage = (returns - reference) * acted
        reinforce = -(advantage * rollout.log_probs).sum(1).mean()
        entropy = (rollout.entropy * acted).sum(1).mean()
        loss = loss + config.baseline_weight * baseline + config.reinforce_weight * reinforce
        if config.entropy_weight:
            loss = loss - config.entropy_weight * entropy
        policy = {
            "loss/baseline": baseline.detach(),
            "loss/reinforce": reinforce.detach(),
            "policy/reward": rewards.sum(1).mean(),
            "policy/entropy": entropy.detach() / n_acted,
        }
    consistency = {}
    if config.consistency_weight:
        term = rollout_consistency(logits[:, -1], config.rollouts)
        loss = loss + config.consistency_weight * term
        consistency = {"loss/consistency": term.detach()}
    locations = rollout.locations.detach()
    # A batch of one rollout (an epoch's last, with M = 1) has no spread: 0, not std's NaN.
    spread = locations.std(dim=0).mean() if len(locations) > 1 else locations.new_zeros(())
    metrics = {
        "loss/classification": classification.detach(),
        **policy,
        "policy/location_spread": spread,
        **consistency,
    }
    return Objective(loss=loss, metrics=metrics)
